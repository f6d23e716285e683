"""`gptcourse check NOTEBOOK`: runs the notebook and prints its verdicts, with exit codes an
instructor's script can use. Also: every lesson notebook runs with its stubs untouched."""

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from gptcourse.authoring import exercises_in, lesson_from_solution, notebook_text
from gptcourse.course import LESSONS
from gptcourse.exercises import registry

ROOT = Path(__file__).resolve().parents[1]


def gptcourse(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "gptcourse", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda lesson: lesson.name)
def test_every_lesson_runs_with_its_stubs_untouched_and_reports_not_attempted(lesson):
    run = gptcourse("check", f"lessons/{lesson.notebook}")
    assert run.returncode == 0, run.stdout + run.stderr
    for exercise in registry.of_lesson(lesson.name):
        assert f"{exercise.id}" in run.stdout
    rows = [line for line in run.stdout.splitlines() if line.startswith(f"{lesson.name}.")]
    assert rows and all("not attempted" in row for row in rows), run.stdout
    assert "raised" not in run.stdout


def welcome_with(tmp_path, softmax_source):
    """lesson 00 with the learner's softmax cell replaced by `softmax_source`."""
    nb = nbformat.read(ROOT / "lessons" / "00_welcome.ipynb", 4)
    cell = next(c for c in nb.cells if c.metadata.get("gptcourse", {}).get("role") == "solution")
    cell.source = softmax_source
    path = tmp_path / "00_welcome.ipynb"
    path.write_text(notebook_text(nb))
    return path


def test_a_solved_notebook_passes_with_exit_0(tmp_path):
    path = welcome_with(tmp_path, "from gptcourse.welcome import softmax")
    run = gptcourse("check", str(path))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "welcome.softmax  passed" in run.stdout and "total" in run.stdout


def test_a_wrong_answer_fails_with_exit_1_and_the_feedback(tmp_path):
    path = welcome_with(tmp_path, "def softmax(x, temperature=1.0, axis=-1):\n"
                                  "    return np.exp(x) / np.exp(x).sum(axis=axis, keepdims=True)")
    run = gptcourse("check", str(path))
    assert run.returncode == 1
    assert "welcome.softmax  failed" in run.stdout and "Hint:" in run.stdout


def test_a_cell_that_raises_is_reported_with_exit_1(tmp_path):
    path = welcome_with(tmp_path, "def softmax(x, temperature=1.0, axis=-1):\n    return x\n"
                                  "undefined_name")
    run = gptcourse("check", str(path))
    assert run.returncode == 1 and "raised NameError" in run.stdout


def test_only_the_last_verdict_of_an_exercise_counts():
    # lesson 00 shows a failing check as a demonstration before the exercise itself
    solution = ROOT / "solutions" / "00_welcome.ipynb"
    run = gptcourse("check", str(solution))
    assert run.returncode == 0 and "welcome.softmax  passed" in run.stdout


@pytest.mark.parametrize("content", ["{not json", "", '{"cells": 3}', "\x00\x01binary"])
def test_a_malformed_notebook_is_named_exit_2_and_nothing_is_written(tmp_path, content):
    path = tmp_path / "broken.ipynb"
    path.write_text(content)
    run = gptcourse("check", str(path), cwd=tmp_path)
    assert run.returncode == 2
    assert f"{path} is not a valid Jupyter notebook" in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.ipynb"]
    assert path.read_text() == content


def test_a_missing_notebook_is_named():
    run = gptcourse("check", "no/such.ipynb")
    assert run.returncode == 2 and "no/such.ipynb: no such file" in run.stderr


def test_lessons_and_solutions_are_paired_by_lesson_name():
    for lesson in LESSONS:
        solution = nbformat.read(ROOT / "solutions" / lesson.notebook, 4)
        assert exercises_in(lesson_from_solution(solution)) == \
            [e.id for e in registry.of_lesson(lesson.name)]


def test_a_renamed_copy_still_lists_exercises_it_never_checked(tmp_path):
    nb = nbformat.read(ROOT / "lessons" / "00_welcome.ipynb", 4)
    nb.cells = [c for c in nb.cells if c.metadata.get("gptcourse", {}).get("role") != "check"
                and "check(" not in c.source]
    path = tmp_path / "00_welcome-Copy1.ipynb"
    path.write_text(notebook_text(nb))
    run = gptcourse("check", str(path))
    assert run.returncode == 0 and "welcome.softmax  never checked  0/1" in run.stdout
