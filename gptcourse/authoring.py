"""solutions/ → lessons/: one source, two notebooks.

In a solution notebook, solution code sits between `### BEGIN SOLUTION` and
`### END SOLUTION`. The lesson notebook is the same notebook with each such region replaced by
a stub that raises NotImplementedError, outputs cleared and cell ids kept. A solution cell
belongs to the exercise named by the `check("lesson.name", ...)` call in the cell after it;
both cells are tagged with that id, in nbgrader's metadata and in ours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

from gptcourse.atomic import write_atomically

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = ("# YOUR CODE HERE\n"
        "raise NotImplementedError(\"Replace this line with your code, then run the check below.\")")
CHECK_CALL = re.compile(r"""\bcheck\(\s*["']([A-Za-z_]\w*\.[A-Za-z_]\w*)["']""")
# Tags about stored outputs mean nothing once outputs are cleared.
SOLUTION_ONLY_TAGS = {"nbval-check-output", "nbval-ignore-output"}
KEPT_METADATA = ("kernelspec", "language_info")


class AuthoringError(ValueError):
    """A solution notebook that cannot be turned into a lesson; says which file and cell."""


def stub_source(source: str, where: str = "") -> str:
    """The cell's source with every solution region replaced by an indented stub."""
    out: list[str] = []
    indent: str | None = None
    for number, line in enumerate(source.splitlines(), start=1):
        marker = line.strip()
        if marker == BEGIN:
            if indent is not None:
                raise AuthoringError(f"{where}line {number}: {BEGIN} inside another solution")
            indent = line[: len(line) - len(line.lstrip())]
            out.extend(indent + stub_line for stub_line in STUB.splitlines())
        elif marker == END:
            if indent is None:
                raise AuthoringError(f"{where}line {number}: {END} without {BEGIN}")
            indent = None
        elif indent is None:
            out.append(line)
    if indent is not None:
        raise AuthoringError(f"{where}{BEGIN} is never closed by {END}")
    return "\n".join(out)


def has_solution(cell) -> bool:
    return cell.cell_type == "code" and any(
        line.strip() == BEGIN for line in cell.source.splitlines())


def checked_exercise(cell) -> str | None:
    """The exercise id of the first check("...") call in a code cell, if any."""
    match = CHECK_CALL.search(cell.source) if cell.cell_type == "code" else None
    return match.group(1) if match else None


def exercise_cells(nb) -> list[tuple[int, int, str]]:
    """(solution cell index, check cell index, exercise id) for every exercise."""
    found = []
    for i, cell in enumerate(nb.cells):
        if has_solution(cell):
            nxt = nb.cells[i + 1] if i + 1 < len(nb.cells) else None
            exercise = checked_exercise(nxt) if nxt is not None else None
            if exercise is None:
                raise AuthoringError(f"cell {i} has a solution but the next cell calls no "
                                     f"check(\"lesson.name\", ...)")
            found.append((i, i + 1, exercise))
    return found


def exercises_in(nb) -> list[str]:
    """The exercise ids that a generated lesson's cells are tagged with, in order."""
    return [cell.metadata["gptcourse"]["exercise"] for cell in nb.cells
            if cell.metadata.get("gptcourse", {}).get("role") == "solution"]


def _nbgrader(grade_id: str, *, solution: bool) -> dict:
    return {"grade": False, "grade_id": grade_id, "locked": not solution,
            "schema_version": 3, "solution": solution, "task": False}


def lesson_from_solution(solution, name: str = "notebook", *, stubs: bool = True):
    """The learner's notebook made from a solution notebook (which is left unchanged).

    With stubs=False the solution code and its markers stay: that is an nbgrader *source*
    notebook, from which nbgrader's generate_assignment makes its own release.
    """
    nb = nbformat.from_dict(solution)
    nb.metadata = nbformat.from_dict({k: v for k, v in nb.metadata.items() if k in KEPT_METADATA})
    for i, cell in enumerate(nb.cells):
        if "id" not in cell:
            raise AuthoringError(f"{name}: cell {i} has no id; save the notebook with a current "
                                 f"JupyterLab (nbformat 4.5 or later), which gives every cell one")
        tags = [t for t in cell.metadata.get("tags", []) if t not in SOLUTION_ONLY_TAGS]
        cell.metadata = nbformat.from_dict({k: v for k, v in cell.metadata.items()
                                            if k not in ("tags", "execution", "collapsed",
                                                         "scrolled", "nbgrader", "gptcourse")})
        if tags:
            cell.metadata.tags = tags
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            if stubs:
                cell.source = stub_source(cell.source, f"{name}: cell {i}: ")
    for solution_index, check_index, exercise in exercise_cells(solution):
        grade_id = exercise.replace(".", "_")
        nb.cells[solution_index].metadata.nbgrader = _nbgrader(grade_id, solution=True)
        nb.cells[solution_index].metadata.gptcourse = {"exercise": exercise, "role": "solution"}
        nb.cells[check_index].metadata.nbgrader = _nbgrader(grade_id + "_check", solution=False)
        nb.cells[check_index].metadata.gptcourse = {"exercise": exercise, "role": "check"}
    return nb


def read_notebook(path: Path):
    """Read a notebook, or raise a ValueError that names the file and what is wrong."""
    try:
        nb = nbformat.read(str(path), as_version=4)
        nbformat.validate(nb)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except Exception as exc:  # JSON errors, schema errors, binary files
        raise ValueError(f"{path} is not a valid Jupyter notebook "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    return nb


def notebook_text(nb) -> str:
    return nbformat.writes(nb) + "\n"


@dataclass(frozen=True)
class Build:
    """What build_lessons found: lesson files written (or stale, with check=True) and
    lesson files that no solution generates."""

    changed: list[Path]
    orphans: list[Path]


def write_nbgrader_source(solutions: Path, folder: Path) -> list[Path]:
    """Write every solution notebook, tagged and with outputs cleared, into `folder`: an
    nbgrader source assignment (source/<assignment>/) for instructors who grade with nbgrader."""
    written = []
    for source in sorted(solutions.glob("*.ipynb")):
        nb = lesson_from_solution(read_notebook(source), source.name, stubs=False)
        folder.mkdir(parents=True, exist_ok=True)
        write_atomically(folder / source.name, notebook_text(nb))
        written.append(folder / source.name)
    return written


def build_lessons(solutions: Path, lessons: Path, *, check: bool = False) -> Build:
    """Write lessons/NN_topic.ipynb for every solutions/NN_topic.ipynb.

    With check=True nothing is written: the result lists what is out of date.
    """
    changed = []
    sources = sorted(solutions.glob("*.ipynb"))
    for source in sources:
        target = lessons / source.name
        text = notebook_text(lesson_from_solution(read_notebook(source), source.name))
        if target.exists() and target.read_text(encoding="utf-8") == text:
            continue
        changed.append(target)
        if not check:
            lessons.mkdir(parents=True, exist_ok=True)
            write_atomically(target, text)
    names = {s.name for s in sources}
    orphans = sorted(p for p in lessons.glob("*.ipynb") if p.name not in names)
    return Build(changed, orphans)
