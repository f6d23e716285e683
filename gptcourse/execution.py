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
    return Run(nb, time.perf_counter() - start, verdicts(nb), cell_errors(nb))


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
