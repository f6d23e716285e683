"""Run a notebook top to bottom, as the learner would, and read back its check verdicts.

Every `check(...)` output carries its CheckResult under result.MIME_TYPE, so a run notebook
says which exercises passed without any side channel. When an exercise is checked more than
once, the last verdict counts (a learner re-runs a check after fixing their code).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from gptcourse.exercises.result import MIME_TYPE, CheckResult


@dataclass(frozen=True)
class CellError:
    cell: int  # index in the notebook, counting markdown cells too
    name: str
    message: str

    def __str__(self) -> str:
        return f"cell {self.cell} raised {self.name}: {self.message}"


@dataclass(frozen=True)
class Run:
    notebook: object  # the executed nbformat notebook
    seconds: float
    results: dict[str, CheckResult]
    errors: list[CellError]


def execute(nb, folder: Path, *, timeout: int = 600, allow_errors: bool = True) -> Run:
    """Execute `nb` (in place) in a fresh kernel whose working folder is `folder`.

    timeout: seconds allowed per cell. With allow_errors=False the first failing cell raises
    nbclient's CellExecutionError.
    """
    from nbclient import NotebookClient

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            allow_errors=allow_errors, record_timing=False,
                            # the kernel's start-up chatter is not the learner's business
                            extra_arguments=["--IPKernelApp.log_level=ERROR"],
                            resources={"metadata": {"path": str(folder)}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    settle_widget_text(nb)
    return Run(nb, seconds, verdicts(nb), cell_errors(nb))


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def settle_widget_text(nb) -> None:
    """Give each widget output (a progress bar) the plain text of its final state.

    A widget's plain-text stand-in is written when the widget first appears, so a stored
    notebook shown without its widgets (or before they load) would show a finished bar as
    "0/300". The final state is in the notebook's saved widget state; this rewrites the
    stand-in from it, for the widgets made of HTML labels and progress bars (tqdm's)."""
    import html

    states = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})

    def text(model_id: str, depth: int = 0) -> str:
        model = states.get(model_id, {})
        state, name = model.get("state", {}), model.get("model_name", "")
        if depth > 8:
            return ""
        if name == "HTMLModel":
            return html.unescape(str(state.get("value", ""))).replace("\u2007", " ")
        if name in ("FloatProgressModel", "IntProgressModel"):
            done = state.get("value", 0) / (state.get("max") or 1)
            filled = max(0, min(10, round(10 * done)))
            return "|" + "█" * filled + " " * (10 - filled) + "|"
        children = state.get("children", [])
        return "".join(text(str(c).removeprefix("IPY_MODEL_"), depth + 1) for c in children)

    for cell in nb.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view and view.get("model_id") in states:
                settled = text(view["model_id"]).strip()
                if settled:
                    output["data"]["text/plain"] = settled


def verdicts(nb) -> dict[str, CheckResult]:
    """The last CheckResult shown for each exercise, in the order first checked."""
    found: dict[str, CheckResult] = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if MIME_TYPE in data:
                result = CheckResult.from_dict(data[MIME_TYPE])
                found[result.exercise] = result
    return found


def cell_errors(nb) -> list[CellError]:
    return [CellError(i, output.get("ename", "Error"), output.get("evalue", ""))
            for i, cell in enumerate(nb.cells)
            for output in cell.get("outputs", []) if output.get("output_type") == "error"]
