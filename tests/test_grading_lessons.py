"""The grader gives a solved copy of a lesson full marks and a stubbed copy none, for the
lessons whose exercises came after the grader was written: their references, and the course
model the demos load, must work the same across the grader's trust boundary."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from gptcourse.cli import main
from gptcourse.course import lesson_of_notebook
from gptcourse.exercises import registry

ROOT = Path(__file__).resolve().parents[1]
LESSONS = ["09_rlhf.ipynb", "10_preference_optimisation.ipynb"]


@pytest.mark.parametrize("notebook", LESSONS)
def test_a_solved_copy_gets_full_marks_and_a_stubbed_copy_none(notebook, tmp_path):
    submissions, out = tmp_path / "submissions", tmp_path / "results"
    for learner, folder in (("solved", "solutions"), ("stubbed", "lessons")):
        (submissions / learner).mkdir(parents=True)
        shutil.copyfile(ROOT / folder / notebook, submissions / learner / notebook)
    assert main(["grade", str(submissions), "--out", str(out), "--timeout", "300"]) == 0
    with open(out / "gradebook.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    exercises = [e.id for e in registry.of_lesson(lesson_of_notebook(notebook).name)]
    assert sorted(r["exercise"] for r in rows) == sorted(exercises * 2)
    for row in rows:
        solved = row["learner"] == "solved"
        assert row["status"] == ("passed" if solved else "not_attempted"), row
        assert int(row["points"]) == (int(row["max points"]) if solved else 0)
