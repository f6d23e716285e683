"""Grading the lessons where the learner assembles the model (03, 05, 06, 07): a solved copy
gets every point and a stubbed copy none, with the class and loop exercises judged across the
trust boundary like every other; their cases and outcomes cross the JSON codec within its
limits."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from gptcourse.exercises import registry, run_cases
from gptcourse.grading import codec, grade
from gptcourse.grading.steps import Limits

ROOT = Path(__file__).resolve().parents[1]
LESSONS = ["03_attention", "05_gpt_model", "06_generation", "07_pretraining"]
OWN_MODEL = ["attention.MultiHeadAttention", "gpt_model.Block", "gpt_model.GPT",
             "generation.generate", "pretraining.train_step"]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """A solved and a stubbed copy of each lesson, in learners' folders, graded with 2 jobs."""
    submissions = tmp_path_factory.mktemp("own-model")
    for name in LESSONS:
        for kind, folder in (("solved", "solutions"), ("stubbed", "lessons")):
            learner = submissions / f"{kind}-{name}"
            learner.mkdir()
            shutil.copyfile(ROOT / folder / f"{name}.ipynb", learner / f"{name}.ipynb")
    out = tmp_path_factory.mktemp("own-model-results")
    batch = grade(submissions, out, jobs=2, limits=Limits(timeout=600), progress=False)
    with open(out / "gradebook.csv", newline="", encoding="utf-8") as f:
        return batch, list(csv.DictReader(f))


@pytest.mark.parametrize("name", LESSONS)
def test_a_solved_copy_gets_every_point_and_a_stubbed_copy_none(graded, name):
    _, rows = graded
    lesson = name.split("_", 1)[1]
    expected = {e.id for e in registry.of_lesson(lesson)}
    for kind, status in (("solved", "passed"), ("stubbed", "not_attempted")):
        mine = [r for r in rows if r["learner"] == f"{kind}-{name}"]
        assert {r["exercise"] for r in mine} == expected
        for row in mine:
            assert row["status"] == status, row


def test_the_new_exercises_were_judged_on_values_sent_back(graded):
    batch, _ = graded
    results = {r["exercise"]: r for record in batch.records
               if record["learner"].startswith("solved") for r in record["results"]}
    for exercise in OWN_MODEL:
        assert results[exercise]["status"] == "passed", results[exercise]
        assert "Right on all" in results[exercise]["message"]


@pytest.mark.parametrize("exercise_id", OWN_MODEL)
def test_cases_and_outcomes_cross_the_codec_and_judge_alike(exercise_id):
    import test_own_model_checks as learner

    answer = {"attention.MultiHeadAttention": learner.Attention, "gpt_model.Block": learner.Block,
              "gpt_model.GPT": learner.GPT, "generation.generate": learner.generate,
              "pretraining.train_step": learner.train_step}[exercise_id]
    exercise = registry[exercise_id]
    cases = exercise.cases(12345)
    sent = codec.dumps_cases(cases)
    assert len(sent) < 1 << 20  # weights travel as plain data, far below the limits
    received = codec.loads_cases(sent)
    outcomes = run_cases(answer, received)
    reply = codec.dumps_outcomes(outcomes)
    assert len(reply) < codec.MAX_BYTES
    result = exercise.judge(cases, codec.loads_outcomes(reply))
    assert result.passed, str(result)
