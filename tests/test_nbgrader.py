"""nbgrader's own round on lesson 00, the quickest lesson: `gptcourse build-lessons
--nbgrader-source`, then nbgrader's generate_assignment, release_assignment, three submitted
copies of the release (correct, wrong, blank) and autograde. nbgrader's gradebook must give
1/1, 0/1 and 0/1, and the learner's release must be lessons/00_welcome.ipynb cell for cell."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from gptcourse.authoring import BEGIN, END
from gptcourse.cli import main
from gptcourse.exercises import registry

ROOT = Path(__file__).resolve().parents[1]
LESSON = ROOT / "lessons" / "00_welcome.ipynb"
ASSIGNMENT = "00_welcome"
# a plausible mistake from lesson 00's catalogue: the exponentials, never normalised
WRONG = "def softmax(x, temperature=1.0, axis=-1):\n    return np.exp(np.asarray(x) / temperature)"


def nbgrader(course: Path, *args: str) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.root={course}",
         f"--CourseDirectory.db_url=sqlite:///{course / 'gradebook.db'}"],
        capture_output=True, text=True, timeout=600, cwd=course, env=env)
    assert done.returncode == 0, done.stdout + done.stderr


def solution_code() -> str:
    solved = nbformat.read(str(ROOT / "solutions" / LESSON.name), as_version=4)
    answer = next(c.source for c in solved.cells if BEGIN in c.source)
    return "\n".join(line for line in answer.splitlines() if line.strip() not in (BEGIN, END))


def answered(release: Path, code: str | None):
    """The released notebook with the learner's answer in its solution cell (None: blank)."""
    nb = nbformat.read(str(release), as_version=4)
    for cell in nb.cells:
        if code is not None and cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = code
    return nb


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = tmp_path_factory.mktemp("course")
    assert main(["build-lessons", "--nbgrader-source", str(course), "--lesson", "00",
                 "--solutions", str(ROOT / "solutions"),
                 "--lessons", str(course / "lessons")]) == 0
    nbgrader(course, "generate_assignment", ASSIGNMENT)
    exchange = course / "exchange"
    exchange.mkdir()
    nbgrader(course, "release_assignment", ASSIGNMENT, "--CourseDirectory.course_id=gptcourse",
             f"--Exchange.root={exchange}")
    fetched = exchange / "gptcourse" / "outbound" / ASSIGNMENT / LESSON.name  # what learners get
    for learner, code in (("correct", solution_code()), ("wrong", WRONG), ("blank", None)):
        submitted = course / "submitted" / learner / ASSIGNMENT
        submitted.mkdir(parents=True)
        nbformat.write(answered(fetched, code), str(submitted / LESSON.name))
    nbgrader(course, "autograde", ASSIGNMENT)
    return course


def test_nbgrader_gives_correct_full_points_and_wrong_and_blank_none(course):
    points = registry["welcome.softmax"].points
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        scores = {learner: (submission.score, submission.max_score)
                  for learner in ("correct", "wrong", "blank")
                  for submission in [gradebook.find_submission(ASSIGNMENT, learner)]}
    assert scores == {"correct": (points, points), "wrong": (0, points), "blank": (0, points)}


def test_the_autograder_says_why_in_the_courses_words(course):
    def failure(learner):
        nb = nbformat.read(str(course / "autograded" / learner / ASSIGNMENT / LESSON.name), 4)
        graded = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
        return [o for c in graded for o in c.outputs if o.output_type == "error"]

    assert failure("correct") == []
    [wrong] = failure("wrong")
    assert wrong.ename == "AssertionError" and "not yet right" in wrong.evalue
    assert "divide them by their sum" in wrong.evalue  # the catalogue's hint for this mistake
    [blank] = failure("blank")
    assert "not attempted yet" in blank.evalue


def test_the_learners_release_is_the_lesson_cell_for_cell(course):
    released = nbformat.read(str(course / "release" / ASSIGNMENT / LESSON.name), 4)
    lesson = nbformat.read(str(LESSON), 4)
    assert [(c.cell_type, c.source) for c in released.cells] == \
        [(c.cell_type, c.source) for c in lesson.cells]
    graded = [c.metadata.nbgrader for c in released.cells
              if c.metadata.get("nbgrader", {}).get("grade")]
    assert [(g["grade_id"], g["points"]) for g in graded] == \
        [("welcome_softmax_check", registry["welcome.softmax"].points)]


def test_nbgrader_generate_assignment_accepts_a_lesson_as_it_is(tmp_path):
    """lessons/ itself carries nbgrader's metadata (ungraded): an instructor may start there."""
    source = tmp_path / "source" / "welcome"
    source.mkdir(parents=True)
    shutil.copyfile(LESSON, source / LESSON.name)
    nbgrader(tmp_path, "generate_assignment", "welcome")
    released = nbformat.read(str(tmp_path / "release" / "welcome" / LESSON.name), 4)
    lesson = nbformat.read(str(LESSON), 4)
    tagged = [(c.metadata.nbgrader["grade_id"], c.metadata.nbgrader["locked"]) for c in
              released.cells if "nbgrader" in c.metadata]
    assert tagged == [(c.metadata.nbgrader["grade_id"], c.metadata.nbgrader["locked"])
                      for c in lesson.cells if "nbgrader" in c.metadata]
    checks = [c for c in released.cells if c.metadata.get("gptcourse", {}).get("role") == "check"]
    assert checks and all(c.source.startswith("check(") for c in checks)
