"""A small class graded three ways (one run; two shards at the same time into one folder, then
merged) gives the same gradebooks; and what those gradebooks say: a syntax error is an error
with its line, one row per learner for an LMS, the instructor's notes kept off learners' pages.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from gptcourse.cli import main
from gptcourse.exercises import registry
from gptcourse.grading import find_submissions, in_shard, parse_shard
from gptcourse.grading.results import learners_table, write_results

ROOT = Path(__file__).resolve().parents[1]
SOLVED, STUBBED = ROOT / "solutions" / "00_welcome.ipynb", ROOT / "lessons" / "00_welcome.ipynb"
GRADEBOOKS = ("gradebook.csv", "gradebook.json", "gradebook_learners.csv", "instructor_log.txt")
UNCLOSED = "def softmax(x, temperature=1.0, axis=-1):\n    e = np.exp(x\n    return e / e.sum()\n"


def with_softmax(source: str) -> nbformat.NotebookNode:
    nb = nbformat.read(str(STUBBED), as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("gptcourse", {}).get("role") == "solution")
    cell.source = source
    return nb


@pytest.fixture(scope="module")
def classroom(tmp_path_factory):
    """Six notebooks of lesson 00: solved, stubbed, wrong, a syntax error, and two learners'
    folders; graded once, and again as two shards run at the same time into one folder."""
    submissions = tmp_path_factory.mktemp("class")
    shutil.copyfile(SOLVED, submissions / "ann.ipynb")
    shutil.copyfile(STUBBED, submissions / "bob.ipynb")
    nbformat.write(with_softmax(UNCLOSED), str(submissions / "cat.ipynb"))
    nbformat.write(with_softmax("def softmax(x, temperature=1.0, axis=-1):\n    return x\n"),
                   str(submissions / "dan.ipynb"))
    for learner, source in (("eve", SOLVED), ("fay", STUBBED)):
        (submissions / learner).mkdir()
        shutil.copyfile(source, submissions / learner / "00_welcome.ipynb")
    one_run = tmp_path_factory.mktemp("one-run")
    assert main(["grade", str(submissions), "--out", str(one_run), "--timeout", "60"]) == 0
    sharded = tmp_path_factory.mktemp("sharded")
    shards = [subprocess.Popen([sys.executable, "-m", "gptcourse", "grade", str(submissions),
                                "--out", str(sharded), "--timeout", "60", "--shard", f"{k}/2"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True) for k in (1, 2)]
    outputs = [shard.communicate(timeout=600) for shard in shards]
    assert [shard.returncode for shard in shards] == [0, 0], outputs
    return submissions, one_run, sharded, [out for out, _ in outputs]


def test_two_shards_at_once_then_a_merge_give_the_gradebooks_of_one_run(classroom, capsys):
    submissions, one_run, sharded, printed = classroom
    found = find_submissions(submissions)
    counts = [sum(in_shard(s, (k, 2)) for s in found) for k in (1, 2)]
    assert sum(counts) == len(found) == 6 and min(counts) > 0  # both shards had work
    for k, out in zip((1, 2), printed):
        assert f"shard {k}/2: graded {counts[k - 1]} notebook(s)" in out
        assert f"gptcourse grade --merge {sharded}" in out
    assert len(list((sharded / "submissions").glob("*.json"))) == 6  # no record lost
    assert not any((sharded / name).exists() for name in GRADEBOOKS)  # shards write none
    assert main(["grade", "--merge", str(sharded)]) == 0
    assert "merged 6 record(s) of 6 learner(s)" in capsys.readouterr().out
    for name in GRADEBOOKS:
        assert (sharded / name).read_text() == (one_run / name).read_text(), name
    assert sorted(p.name for p in (sharded / "feedback").iterdir()) == \
        sorted(p.name for p in (one_run / "feedback").iterdir())


def test_a_plain_run_after_the_shards_also_writes_every_gradebook(classroom, tmp_path):
    submissions, one_run, sharded, _ = classroom
    copy = tmp_path / "results"
    shutil.copytree(sharded, copy)
    for name in GRADEBOOKS:
        (copy / name).unlink(missing_ok=True)
    assert main(["grade", str(submissions), "--out", str(copy), "--timeout", "60"]) == 0
    for name in GRADEBOOKS:
        assert (copy / name).read_text() == (one_run / name).read_text(), name


def test_shards_are_stable_and_cover_every_notebook_once(tmp_path):
    for i in range(40):
        (tmp_path / f"learner{i:02d}.ipynb").write_text("{}")
    found = find_submissions(tmp_path)
    for n in (1, 3, 7):
        owners = [[k for k in range(1, n + 1) if in_shard(s, (k, n))] for s in found]
        assert all(len(o) == 1 for o in owners)
    before = {s.relative for s in found if in_shard(s, (2, 3))}
    (tmp_path / "late.ipynb").write_text("{}")  # a late submission moves no one else
    after = {s.relative for s in find_submissions(tmp_path) if in_shard(s, (2, 3))}
    assert after - {"late.ipynb"} == before


@pytest.mark.parametrize("text", ["0/2", "3/2", "2", "a/b", "1/0", "1/-2"])
def test_a_shard_that_is_not_k_of_n_is_refused(text, capsys, tmp_path):
    with pytest.raises(ValueError, match="--shard takes K/N"):
        parse_shard(text)
    assert main(["grade", str(tmp_path), "--out", str(tmp_path / "r"), "--shard", text]) == 2
    assert "--shard takes K/N" in capsys.readouterr().err


def test_merge_refuses_what_it_does_not_use_and_a_folder_without_records(tmp_path, capsys):
    assert main(["grade", "--merge", str(tmp_path)]) == 2
    assert "holds no grading records" in capsys.readouterr().err
    assert main(["grade", str(tmp_path), "--merge", str(tmp_path)]) == 2
    assert "leave out SUBMISSIONS_DIR" in capsys.readouterr().err
    assert main(["grade", str(tmp_path)]) == 2
    assert "--out RESULTS_DIR" in capsys.readouterr().err


# --- what the gradebooks say ------------------------------------------------------------------

def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_a_syntax_error_in_the_solution_cell_is_an_error_with_its_line(classroom):
    _, one_run, _, _ = classroom
    statuses = {r["learner"]: r["status"] for r in _rows(one_run / "gradebook.csv")}
    assert statuses == {"ann": "passed", "bob": "not_attempted", "cat": "error",
                        "dan": "failed", "eve": "passed", "fay": "not_attempted"}
    page = (one_run / "feedback" / "cat.html").read_text(encoding="utf-8")
    assert "has a SyntaxError at line 2 of that cell: &#x27;(&#x27; was never closed" in page
    assert "Python ran none of that cell" in page


def test_one_row_per_learner_with_a_column_per_exercise_and_a_total(classroom):
    _, one_run, _, _ = classroom
    rows = _rows(one_run / "gradebook_learners.csv")
    exercises = [e.id for e in registry.of_lesson("welcome")]
    assert list(rows[0]) == ["learner", *exercises, "total"]
    points = {r["learner"]: r["total"] for r in rows}
    full = str(sum(e.points for e in registry.of_lesson("welcome")))
    assert points == {"ann": full, "bob": "0", "cat": "0", "dan": "0", "eve": full, "fay": "0"}


def test_a_lesson_not_handed_in_is_blank_not_zero_and_the_best_attempt_counts(tmp_path):
    def record(learner, notebook, scores):
        return {"learner": learner, "notebook": notebook, "error": "", "notes": [],
                "results": [{"exercise": e, "title": e, "status": "passed" if s else "failed",
                             "score": s, "points": 1, "message": "", "hint": "", "details": ""}
                            for e, s in scores.items()]}

    records = [record("ann", "ann/00_welcome.ipynb", {"welcome.softmax": 1}),
               record("ann", "ann/00_welcome_v2.ipynb", {"welcome.softmax": 0}),
               record("bob", "bob/03_attention.ipynb", {"attention.causal_mask": 1})]
    columns, rows = learners_table(write_results(tmp_path, records))
    assert columns == ["learner", "welcome.softmax", "attention.causal_mask", "total"]
    assert rows == [{"learner": "ann", "welcome.softmax": 1, "total": 1},
                    {"learner": "bob", "attention.causal_mask": 1, "total": 1}]
    lines = (tmp_path / "gradebook_learners.csv").read_text().splitlines()
    assert lines == ["learner,welcome.softmax,attention.causal_mask,total", "ann,1,,1",
                     "bob,,1,1"]


def test_the_reference_note_goes_to_the_instructor_not_to_the_learner(classroom):
    _, one_run, _, _ = classroom
    record = json.loads((one_run / "submissions" / "ann.ipynb.json").read_text())
    assert record["notes"] == [] and record["instructor_notes"]
    note = record["instructor_notes"][0]
    assert "used the lesson's reference implementation" in note
    log = (one_run / "instructor_log.txt").read_text().splitlines()
    assert f"ann.ipynb: {note}" in log
    page = (one_run / "feedback" / "ann.html").read_text(encoding="utf-8")
    assert "reference implementation" not in page
