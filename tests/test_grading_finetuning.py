"""The grader grades lesson 08: the solved notebook gets every point, the generated lesson with
its stubs untouched gets none (every exercise "not attempted"), and a notebook with one
plausible mistake loses that exercise's point only, with the hint that names the mistake."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

from gptcourse.exercises import registry
from gptcourse.grading import grade
from gptcourse.grading.steps import Limits

ROOT = Path(__file__).resolve().parents[1]
NAME = "08_finetuning.ipynb"

# The learner's sft_example with the mask off by one: the first answer token is not trained.
OFF_BY_ONE = '''def sft_example(prompt_ids, answer_ids, end_id):
    sequence = prompt_ids + answer_ids + [end_id]
    return sequence[:-1], [-100] * len(prompt_ids) + sequence[1:][len(prompt_ids):]
'''


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    submissions = tmp_path_factory.mktemp("lesson08")
    for learner, source in (("solved", ROOT / "solutions" / NAME),
                            ("stubbed", ROOT / "lessons" / NAME)):
        (submissions / learner).mkdir()
        shutil.copyfile(source, submissions / learner / NAME)
    nb = nbformat.read(ROOT / "solutions" / NAME, as_version=4)
    cell = next(c for c in nb.cells if c.get("id") == "sft-example")
    cell.source = OFF_BY_ONE
    (submissions / "mistaken").mkdir()
    nbformat.write(nb, str(submissions / "mistaken" / NAME))
    out = tmp_path_factory.mktemp("lesson08-results")
    batch = grade(submissions, out, jobs=1, limits=Limits(timeout=240), progress=False)
    return {(row["learner"], row["exercise"]): row for row in batch.rows}, batch


def test_solved_lesson_08_gets_every_point_and_the_stubbed_one_none(graded):
    rows, _ = graded
    exercises = [e.id for e in registry.of_lesson("finetuning")]
    assert exercises == ["finetuning.render_chat", "finetuning.sft_example", "finetuning.collate"]
    for exercise in exercises:
        solved, stubbed = rows[("solved", exercise)], rows[("stubbed", exercise)]
        assert solved["status"] == "passed", solved
        assert int(solved["points"]) == int(solved["max points"]) > 0
        assert stubbed["status"] == "not_attempted" and int(stubbed["points"]) == 0, stubbed


def test_a_mistake_costs_its_exercise_only_and_is_named(graded):
    rows, batch = graded
    assert rows[("mistaken", "finetuning.sft_example")]["status"] == "failed"
    assert rows[("mistaken", "finetuning.render_chat")]["status"] == "passed"
    assert rows[("mistaken", "finetuning.collate")]["status"] == "passed"
    record = next(r for r in batch.records if r["learner"] == "mistaken")
    (result,) = [r for r in record["results"] if r["exercise"] == "finetuning.sft_example"]
    assert "off by one" in result["hint"]
