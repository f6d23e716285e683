"""The attack catalogue: submitted notebooks that try to cheat or to break the grader.

The notebooks live in tests/submissions/attacks/ (made by make_attacks.py from lesson 00).
They are graded in one batch, as an instructor would, with `gptcourse grade --jobs 2`; each
must score what EXPECTED says, for the reason it says, and the batch must finish.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest

from gptcourse.cli import main

ATTACKS = Path(__file__).parent / "submissions" / "attacks"
TIMEOUT = 15  # seconds per notebook: the others need about 2 to 4 with --jobs 2 on 2 cores

# learner → (status of welcome.softmax, words its message or notes must contain)
EXPECTED = {
    "redefine_check": ("failed", "entries differ"),
    "patch_checkresult": ("failed", "entries differ"),
    "patch_reference_and_registry": ("failed", "entries differ"),
    "fake_passed_output": ("not_attempted", "NotImplementedError"),
    "stored_passed_output": ("not_attempted", "NotImplementedError"),
    "calls_reference": ("failed", "calls the course's reference implementation"),
    "calls_reference_hidden": ("failed", "calls the course's reference implementation"),
    "reads_inputs_from_disk": ("failed", "entries differ"),
    "hardcoded_seed0_answers": ("failed", "entries differ"),
    "infinite_loop_in_cell": ("error", "timed out while running the notebook's cell"),
    # the per-case limit stops it inside the kernel: a failed exercise, not a lost notebook
    "infinite_loop_in_function": ("failed", "did not finish within 5 s"),
    "spawns_child_then_hangs": ("error", "timed out"),
    "allocates_50gb": ("failed", "MemoryError"),
    "kills_kernel": ("error", "kernel died"),
    "os_exit": ("error", "kernel died"),
    "floods_output": ("not_attempted", "keeps none of a notebook's output"),
    "deletes_files": ("failed", "entries differ"),
    "returns_pickle_bomb": ("failed", "got a Evil"),
    "forges_reply": ("failed", "could not read what `softmax` returned"),
    "different_lesson": ("not_attempted", "file name says lesson welcome"),
}
NOT_NOTEBOOKS = ("not_json", "not_a_notebook", "binary")
PWNED = Path("/tmp/gptcourse-pwned")


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    submissions = tmp_path_factory.mktemp("submitted") / "attacks"
    shutil.copytree(ATTACKS, submissions)
    before = _digests(submissions)
    out = tmp_path_factory.mktemp("results")
    if PWNED.exists():
        PWNED.unlink()
    code = main(["grade", str(submissions), "--out", str(out), "--jobs", "2",
                 "--timeout", str(TIMEOUT)])
    records = {r["learner"]: r for r in
               (json.loads(p.read_text()) for p in (out / "submissions").glob("*.json"))}
    return code, out, records, before, _digests(submissions)


def test_the_batch_completes_with_a_record_and_a_gradebook_row_for_every_notebook(batch):
    code, out, records, _, _ = batch
    assert code == 0
    assert set(records) == set(EXPECTED) | set(NOT_NOTEBOOKS)
    rows = json.loads((out / "gradebook.json").read_text())
    assert {r["learner"] for r in rows} == set(records)
    assert (out / "gradebook.csv").read_text().splitlines()[0] == \
        "learner,lesson,exercise,status,points,max points"
    assert sorted(p.stem for p in (out / "feedback").glob("*.html")) == sorted(records)


@pytest.mark.parametrize("learner", sorted(EXPECTED))
def test_no_attack_earns_a_point_and_each_fails_for_its_own_reason(batch, learner):
    _, _, records, _, _ = batch
    if learner == "allocates_50gb" and not sys.platform.startswith("linux"):
        pytest.skip("the memory limit is enforced on Linux only")
    record = records[learner]
    (result,) = record["results"]
    status, words = EXPECTED[learner]
    assert result["exercise"] == "welcome.softmax"
    assert (result["status"], result["score"], result["points"]) == (status, 0, 1)
    assert words in result["message"] + " ".join(record["notes"])


@pytest.mark.parametrize("learner", NOT_NOTEBOOKS)
def test_a_file_that_is_no_notebook_is_recorded_as_an_error_for_that_learner(batch, learner):
    _, _, records, _, _ = batch
    record = records[learner]
    assert "is not a valid Jupyter notebook" in record["error"]
    assert [r["status"] for r in record["results"]] == ["error"]


def test_the_grader_never_unpickles_what_a_notebook_returns(batch):
    assert not PWNED.exists()


def test_nothing_of_a_timed_out_notebook_keeps_running(batch):
    if not Path("/proc").is_dir():
        pytest.skip("needs /proc to list processes")
    alive = []
    for status in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"gptcourse-attack-child" in status.read_bytes():
                alive.append(status.parent.name)
        except OSError:
            pass
    assert alive == []


def test_submitted_files_are_left_as_they_were(batch):
    _, _, _, before, after = batch
    assert after == before  # deletes_files deleted its own copy only


def test_the_seed_differs_per_notebook_and_is_recorded(batch):
    _, _, records, _, _ = batch
    seeds = [r["seed"] for r in records.values() if r["seed"] is not None]
    assert len(seeds) >= 10 and len(set(seeds)) == len(seeds)


def test_the_hardcoded_answers_do_pass_the_notebooks_own_check():
    """So that the attack is real: its lookup table fools check() with the public seed."""
    import nbformat

    from gptcourse import check

    nb = nbformat.read(str(ATTACKS / "hardcoded_seed0_answers.ipynb"), as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("gptcourse", {}).get("role") == "solution")
    import numpy as np

    namespace = {"np": np}
    exec(cell.source, namespace)
    assert check("welcome.softmax", namespace["softmax"]).passed
    assert not check("welcome.softmax", namespace["softmax"], seed=12345).passed


def test_feedback_names_the_reference_call_and_escapes_what_the_learner_wrote(batch):
    _, out, _, _, _ = batch
    page = (out / "feedback" / "calls_reference.html").read_text()
    assert "calls the course&#x27;s reference implementation" in page
    assert "<script" not in (out / "feedback" / "returns_pickle_bomb.html").read_text()


def test_memory_limit_is_reported_in_each_record(batch):
    _, _, records, _, _ = batch
    expected = "2048 MiB" if sys.platform.startswith("linux") else "not enforced on this OS"
    assert {r["memory_limit"] for r in records.values() if not r["error"]} == {expected}
