"""solutions/ → lessons/: one source, two notebooks.

In a solution notebook, solution code sits between `### BEGIN SOLUTION` and
`### END SOLUTION`. The lesson notebook is the same notebook with each such region replaced by
a stub that raises NotImplementedError, outputs cleared and cell ids kept. A solution cell
belongs to the exercise named by the `check("lesson.name", ...)` call in the cell after it;
both cells are tagged with that id, in nbgrader's metadata and in ours.

For instructors who grade with nbgrader, `write_nbgrader_course` writes an nbgrader course:
one source assignment per lesson, in which each check cell is also an autograder test worth
the exercise's points, and an nbgrader_config.py that makes nbgrader's release the same
notebook as lessons/.
"""

from __future__ import annotations

import ast
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
# nbgrader removes this region from the release and puts it back before autograding.
HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
# Seconds per cell when nbgrader autogrades: a whole lesson runs in at most 180 on 2 cores (its
# slowest cell, in lesson 07, about 50), graders are often slower, and nbgrader's default of
# 30 cuts lesson 07 short. The same margin as `gptcourse grade --timeout`.
NBGRADER_CELL_TIMEOUT = 300
# What nbgrader_config.py must set for the course's lessons.
NBGRADER_SETTINGS = f"""\
# The stub that lessons/ has, so that nbgrader's release is the course's lesson, cell for cell.
c.ClearSolutions.code_stub = {{"python": {STUB!r}}}
# Seconds per cell when autograding: a lesson runs in at most 180 s on 2 cores, and nbgrader's
# default of 30 s stops lesson 07's training cell.
c.Execute.timeout = {NBGRADER_CELL_TIMEOUT}
"""
NBGRADER_CONFIG = f"""\
# nbgrader's settings for the gptcourse lessons, written by `gptcourse build-lessons
# --nbgrader-source`. Add your own (CourseDirectory.course_id, Exchange.root, ...) below.
c = get_config()  # noqa: F821 (nbgrader defines get_config when it reads this file)

{NBGRADER_SETTINGS}"""


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


def check_call(source: str, exercise: str, where: str = "") -> str:
    """The text of the `check("<exercise>", ...)` call in a check cell's source."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise AuthoringError(f"{where}the check cell is not plain Python: {exc}") from None
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == "check" and node.args
                and isinstance(node.args[0], ast.Constant) and node.args[0].value == exercise):
            return ast.get_source_segment(source, node)
    raise AuthoringError(f"{where}no check({exercise!r}, ...) call in the check cell")


def graded_check(source: str, exercise: str, where: str = "") -> str:
    """A check cell's source followed by nbgrader's hidden test, which fails (and so gives the
    cell's points only) unless the same check passes, with the verdict as its message.

    The test calls the course's check by its full name: a learner's own variable called check
    must not decide the points. It is hidden, so the learner's release shows the lesson's cell.
    """
    call = check_call(source, exercise, where)
    return "\n".join([
        source,
        HIDDEN_BEGIN,
        "from gptcourse.exercises import check as _course_check",
        f"_verdict = _course_check{call[len('check'):]}",
        'assert _verdict.passed, f"\\n{_verdict}"',
        HIDDEN_END,
    ])


def nbgrader_source(solution, name: str = "notebook"):
    """The nbgrader source notebook of a solution notebook: the solutions kept between their
    markers (nbgrader's generate_assignment turns them into stubs), outputs cleared, and every
    check cell an autograder test worth its exercise's points (see `graded_check`)."""
    from gptcourse.exercises import registry

    nb = lesson_from_solution(solution, name, stubs=False)
    for _, check_index, exercise in exercise_cells(solution):
        where = f"{name}: cell {check_index}: "
        if exercise not in registry:
            raise AuthoringError(f"{where}checks {exercise!r}, which is no registered exercise")
        cell = nb.cells[check_index]
        cell.source = graded_check(cell.source, exercise, where)
        cell.metadata.nbgrader.update(grade=True, points=registry[exercise].points)
    return nb


def lesson_sources(solutions: Path, lesson: str | None = None) -> list[Path]:
    """The solution notebooks, or only lesson `lesson`'s ("07", "7", "pretraining" or
    "07_pretraining")."""
    sources = sorted(solutions.glob("*.ipynb"))
    if lesson is None:
        return sources
    wanted = lesson.zfill(2) if lesson.isdigit() else lesson
    chosen = [p for p in sources if wanted in (p.stem, *p.stem.split("_", 1))]
    if not chosen:
        raise ValueError(f"no lesson {lesson!r} in {solutions}/; the lessons are "
                         f"{', '.join(p.stem for p in sources)}")
    return chosen


@dataclass(frozen=True)
class NbgraderCourse:
    """What write_nbgrader_course wrote: one source notebook per assignment, and the config,
    written only when there was none; `config_lacks_settings` when an instructor's own config
    does not contain NBGRADER_SETTINGS."""

    notebooks: list[Path]
    config: Path
    config_written: bool
    config_lacks_settings: bool


def write_nbgrader_course(solutions: Path, course: Path, lesson: str | None = None
                          ) -> NbgraderCourse:
    """An nbgrader course in `course`: source/NN_topic/NN_topic.ipynb, one assignment per
    lesson (or only `lesson`'s, see `lesson_sources`), and nbgrader_config.py. An existing
    nbgrader_config.py is the instructor's and is never overwritten."""
    notebooks = []
    for source in lesson_sources(solutions, lesson):
        nb = nbgrader_source(read_notebook(source), source.name)
        folder = course / "source" / source.stem
        folder.mkdir(parents=True, exist_ok=True)
        write_atomically(folder / source.name, notebook_text(nb))
        notebooks.append(folder / source.name)
    config = course / "nbgrader_config.py"
    if config.exists():
        lacks = NBGRADER_SETTINGS not in config.read_text(encoding="utf-8")
        return NbgraderCourse(notebooks, config, config_written=False,
                              config_lacks_settings=lacks)
    write_atomically(config, NBGRADER_CONFIG)
    return NbgraderCourse(notebooks, config, config_written=True, config_lacks_settings=False)


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
