"""What grading costs: `gptcourse grade` against running the same notebooks with plain nbclient
(one fresh kernel each, one at a time), and --jobs 2 against --jobs 1 on 20 notebooks.

Grading mode blocks the lesson's reference module, so lesson 00's demo cells that draw with
it raise at once instead of plotting: the grader runs less of the notebook than nbclient does.
The "same cells" figure removes those cells from both sides, so both run exactly the same code.
The grader's kernel also differs from a default one in ways that make it cheaper: the Agg
matplotlib backend (no inline PNGs), no IPython history database, one OpenMP thread.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from pathlib import Path

import nbformat
from run import Figure

from gptcourse.execution import execute
from gptcourse.grading import grade
from gptcourse.grading.steps import Limits

ROOT = Path(__file__).resolve().parents[1]
SOLVED = ROOT / "solutions" / "00_welcome.ipynb"


def _folder(nb, count: int) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="bench-grading-"))
    for i in range(count):
        nbformat.write(nb, str(folder / f"learner{i:02d}.ipynb"))
    return folder


def _plain_seconds(folder: Path) -> float:
    start = time.perf_counter()
    for path in sorted(folder.glob("*.ipynb")):
        execute(nbformat.read(str(path), as_version=4), folder, timeout=120)
    return time.perf_counter() - start


def _grade_seconds(folder: Path, jobs: int) -> float:
    out = Path(tempfile.mkdtemp(prefix="bench-grading-out-"))
    try:
        start = time.perf_counter()
        batch = grade(folder, out, jobs=jobs, limits=Limits(timeout=120), progress=False)
        seconds = time.perf_counter() - start
        assert all(r["status"] == "passed" for r in batch.rows), [r["error"] for r in batch.records]
        return seconds
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _without_reference_cells(nb):
    nb = nbformat.from_dict(nb)
    # welcome.plot_temperature(...) and the like; not check("welcome.softmax", ...)
    uses_reference = re.compile(r"\bwelcome\.\w+\(")
    nb.cells = [c for c in nb.cells
                if not (c.cell_type == "code" and uses_reference.search(c.source))]
    return nb


def run() -> list[Figure]:
    solved = nbformat.read(str(SOLVED), as_version=4)
    figures = []
    for label, nb in (("lesson 00 solved, as is", solved),
                      ("same cells (demo cells using the reference removed)",
                       _without_reference_cells(solved))):
        folder = _folder(nb, 10)
        try:
            plain = _plain_seconds(folder)
            graded = _grade_seconds(folder, jobs=1)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        figures += [
            Figure(f"grade, 10 notebooks, --jobs 1: {label}", graded, "s"),
            Figure("  plain nbclient on the same notebooks, one after another", plain, "s"),
            Figure("  grading overhead: grade / plain nbclient", graded / plain, "x",
                   "target <= 1.5x"),
        ]
    folder = _folder(solved, 20)
    try:
        one, two = _grade_seconds(folder, jobs=1), _grade_seconds(folder, jobs=2)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    figures += [
        Figure("grade, 20 solved lesson-00 notebooks, --jobs 1", one, "s"),
        Figure("grade, the same 20, --jobs 2", two, "s"),
        Figure("  speed-up of --jobs 2 over --jobs 1", one / two, "x", "2 cores: at most 2x"),
    ]
    return figures
