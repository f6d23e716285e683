"""Batch grading: marks, resuming, the files it writes, the encoding across the trust boundary,
grading mode in the learner's process, and the workshop view (nbgrader: test_nbgrader.py).

The attack catalogue is in test_grading_attacks.py.
"""

from __future__ import annotations

import csv
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from gptcourse.cli import main
from gptcourse.exercises import registry
from gptcourse.exercises.contract import Outcome, run_cases
from gptcourse.grading import codec, find_submissions, grade
from gptcourse.grading.results import COLUMNS, feedback_html, load_records, safe_name
from gptcourse.grading.steps import Limits
from gptcourse.model import GPTConfig

ROOT = Path(__file__).resolve().parents[1]
SOLVED, STUBBED = ROOT / "solutions" / "00_welcome.ipynb", ROOT / "lessons" / "00_welcome.ipynb"
FAST = Limits(timeout=60)


# --- a workshop's worth of notebooks --------------------------------------------------------

@pytest.fixture(scope="module")
def workshop(tmp_path_factory):
    """20 solved and 20 stubbed copies of lesson 00, half as single files, half in learners'
    folders, graded with --jobs 2."""
    submissions = tmp_path_factory.mktemp("workshop")
    for i in range(20):
        for kind, source in (("solved", SOLVED), ("stubbed", STUBBED)):
            if i % 2:
                shutil.copyfile(source, submissions / f"{kind}{i:02d}.ipynb")
            else:
                (submissions / f"{kind}{i:02d}").mkdir()
                shutil.copyfile(source, submissions / f"{kind}{i:02d}" / "00_welcome.ipynb")
    out = tmp_path_factory.mktemp("workshop-results")
    code = main(["grade", str(submissions), "--out", str(out), "--jobs", "2", "--timeout", "60"])
    return code, submissions, out


def test_twenty_solved_notebooks_get_full_marks_and_twenty_stubbed_ones_none(workshop):
    code, _, out = workshop
    assert code == 0
    with open(out / "gradebook.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == COLUMNS
    exercises = [e.id for e in registry.of_lesson("welcome")]
    assert len(rows) == 40 * len(exercises)
    for row in rows:
        solved = row["learner"].startswith("solved")
        assert row["lesson"] == "welcome" and row["exercise"] in exercises
        assert row["status"] == ("passed" if solved else "not_attempted"), row
        assert int(row["points"]) == (int(row["max points"]) if solved else 0)
    assert json.loads((out / "gradebook.json").read_text()) == \
        [{**r, "points": int(r["points"]), "max points": int(r["max points"])} for r in rows]


def test_feedback_shows_the_verdicts_the_notebook_showed(workshop):
    _, _, out = workshop
    page = (out / "feedback" / "solved00.html").read_text(encoding="utf-8")
    assert "Right on all 13 test cases." in page and "1/1" in page
    stub = (out / "feedback" / "stubbed01.html").read_text(encoding="utf-8")
    assert "Not attempted yet: <code" in stub and ">softmax</code> still raises " \
        "NotImplementedError." in stub  # backticks are shown as code


def test_rerunning_skips_what_is_graded_and_regrades_a_changed_notebook(workshop, tmp_path):
    _, submissions, out = workshop
    again = grade(submissions, out, jobs=2, limits=FAST, progress=False)
    assert (again.graded, again.skipped) == (0, 40)
    # A resubmission (new contents) is graded again, the rest resumed.
    folder = tmp_path / "two"
    folder.mkdir()
    shutil.copyfile(STUBBED, folder / "ann.ipynb")
    shutil.copyfile(SOLVED, folder / "ben.ipynb")
    results = tmp_path / "results"
    first = grade(folder, results, jobs=2, limits=FAST, progress=False)
    assert (first.graded, first.skipped) == (2, 0)
    shutil.copyfile(SOLVED, folder / "ann.ipynb")
    second = grade(folder, results, jobs=2, limits=FAST, progress=False)
    assert (second.graded, second.skipped) == (1, 1)
    assert {r["learner"]: r["status"] for r in second.rows} == {"ann": "passed", "ben": "passed"}
    forced = grade(folder, results, jobs=2, limits=FAST, force=True, progress=False)
    assert (forced.graded, forced.skipped) == (2, 0)
    longer = grade(folder, results, jobs=2, limits=Limits(timeout=61), progress=False)
    assert (longer.graded, longer.skipped) == (2, 0)  # other limits, other verdicts possible


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="memory limit: Linux only")
def test_a_kernel_that_cannot_start_under_the_limits_is_graded_again_next_time(tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    shutil.copyfile(SOLVED, folder / "dan.ipynb")
    results = tmp_path / "results"
    starved = grade(folder, results, limits=Limits(timeout=60, memory_mb=100), progress=False)
    assert [r["status"] for r in starved.rows] == ["error"]
    assert "raise --memory" in starved.records[0]["notes"][0]
    again = grade(folder, results, limits=Limits(timeout=60, memory_mb=100), progress=False)
    assert again.graded == 1  # the grader's fault is not a verdict: no resume past it


def test_an_unreadable_record_is_ignored_and_regraded(tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    shutil.copyfile(SOLVED, folder / "cat.ipynb")
    results = tmp_path / "results"
    grade(folder, results, limits=FAST, progress=False)
    (record,) = (results / "submissions").glob("*.json")
    record.write_text('{"learner": "cat", "resu')  # as if cut off (atomic writes never do)
    assert load_records(results) == []
    batch = grade(folder, results, limits=FAST, progress=False)
    assert batch.graded == 1 and [r["status"] for r in batch.rows] == ["passed"]


def test_learners_are_named_by_file_or_by_top_folder(tmp_path):
    (tmp_path / "dee" / "week1").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "dee" / ".ipynb_checkpoints").mkdir()
    for path in ("eve.ipynb", "dee/week1/00_welcome.ipynb", ".hidden/x.ipynb",
                 "dee/.ipynb_checkpoints/00_welcome-checkpoint.ipynb"):
        (tmp_path / path).write_text("{}")
    found = {(s.learner, s.relative, s.folder) for s in find_submissions(tmp_path)}
    root = tmp_path.resolve()
    assert found == {("eve", "eve.ipynb", None),
                     ("dee", "dee/week1/00_welcome.ipynb", root / "dee")}


# --- the files it writes --------------------------------------------------------------------

def _record(learner: str, message: str) -> dict:
    return {"learner": learner, "notebook": f"{learner}.ipynb", "seed": 7, "error": "",
            "notes": [message], "cell_errors": [message], "graded_at": "now", "timeout_s": 1,
            "memory_limit": "1 MiB",
            "results": [{"exercise": "welcome.softmax", "title": "softmax", "status": "failed",
                         "points": 1, "score": 0, "message": message, "hint": message,
                         "details": message, "passed": False}]}


def test_feedback_escapes_everything_the_learner_controls():
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    page = feedback_html(evil, [_record(evil, evil)])
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;" in page


def test_gradebook_cells_never_start_a_spreadsheet_formula(tmp_path):
    from gptcourse.grading.results import write_gradebook

    write_gradebook(tmp_path, [_record("=HYPERLINK(\"http://x\")", "m")])
    text = (tmp_path / "gradebook.csv").read_text()
    assert "'=HYPERLINK" in text and "\n=" not in text


def test_file_names_for_learners_are_safe_and_distinct():
    assert safe_name("alice") == "alice"
    assert "/" not in safe_name("../../etc/passwd") and ".." not in safe_name("../x")
    assert safe_name("a b") != safe_name("a_b")


# --- the encoding across the trust boundary -------------------------------------------------

VALUES = [
    None, True, 3, -2.5, float("nan"), float("inf"), "text", b"\x00\xff", [1, (2, 3)],
    {(1, 2): 3, "k": [4.0]}, {1, 2}, frozenset({"a"}),
    np.arange(6, dtype=np.float32).reshape(2, 3), np.array([True, False]), np.float32(1.5),
    np.int64(7), np.zeros((0, 3)), torch.arange(4.0).reshape(2, 2), torch.tensor([1, 2]),
    torch.ones(3, dtype=torch.bfloat16), torch.ones(2, 2).tril().bool(),
    GPTConfig(vocab_size=7, block_size=3, n_layer=2, n_head=1, n_embd=5, bias=False),
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_values_cross_unchanged(value):
    from gptcourse.exercises.compare import difference

    back = codec.decode_value(json.loads(json.dumps(codec.encode_value(value))))
    assert type(back) is type(value)
    if isinstance(value, float) and value != value:
        assert back != back
    else:
        assert difference(value, back) is None


def test_outcomes_cross_with_errors_gradients_and_mutations():
    exercise = registry["attention.scaled_dot_product_attention"]
    cases = exercise.cases(3)
    outcomes = run_cases(exercise.reference, codec.loads_cases(codec.dumps_cases(cases)))
    back = codec.loads_outcomes(codec.dumps_outcomes(outcomes))
    assert exercise.judge(cases, back).passed
    error = run_cases(lambda *a, **k: 1 / 0, cases)
    (lost,) = codec.loads_outcomes(codec.dumps_outcomes(error))
    assert lost.error.type_name == "ZeroDivisionError"


class _Sneaky:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_what_cannot_cross_arrives_as_a_stand_in_that_no_check_accepts():
    from gptcourse.exercises.compare import difference

    for value in (_Sneaky(), np.array([object()]), (x for x in [1]), torch.nn.Linear(2, 2)):
        back = codec.decode_value(json.loads(json.dumps(codec.encode_value(value))))
        assert isinstance(back, codec.Unreceivable)
        assert back != back and difference(np.ones(2), back) is not None
    assert "Sneaky" in type(codec.decode_value(codec.encode_value(_Sneaky()))).__name__


@pytest.mark.parametrize("bad", [
    {"$ndarray": "object", "shape": [1], "data": "AA=="},
    {"$ndarray": "float64", "shape": [2], "data": "AAAAAAAAAAA="},  # 8 bytes for 2 floats
    {"$ndarray": "float64", "shape": [-1], "data": ""},
    {"$tensor": "float64", "shape": [1], "data": "not base64!"},
    {"$pickle": pickle.dumps(_Sneaky()).hex()},
    {"$tuple": "abc"},
    {"$dict": [[[1], 2]]},  # an unhashable key
    {"__class__": "os.system"},
    {"$gptconfig": {"vocab_size": 0, "block_size": 1, "n_layer": 1, "n_head": 1, "n_embd": 1,
                    "bias": True}},  # GPTConfig refuses it
    {"$gptconfig": {"vocab_size": "os.system"}},
])
def test_malformed_or_dangerous_data_is_refused(bad):
    with pytest.raises(codec.CodecError):
        codec.decode_value(bad)


def test_replies_are_bounded_in_depth_and_size():
    deep: list = []
    for _ in range(200):
        deep = [deep]
    with pytest.raises(codec.CodecError):
        codec.decode_value(deep)
    with pytest.raises(codec.CodecError):
        codec.loads_outcomes("[" + " " * codec.MAX_BYTES + "]")
    assert codec.loads_outcomes(json.dumps([{"value": 1, "error": None}])) == [Outcome(value=1)]


# --- grading mode in the learner's process --------------------------------------------------

SANDBOX = """
from gptcourse.grading import sandbox
sandbox.install(["welcome"])
from gptcourse import check, welcome
import gptcourse.welcome as w2
from gptcourse.welcome import softmax
results = []
for attempt in (lambda: softmax([1.0]), lambda: welcome.softmax([1.0]),
                lambda: w2.plot_temperature(), lambda: __import__("gptcourse.exercises.welcome"),
                lambda: __import__("gptcourse.exercises").exercises.registry["welcome.softmax"]):
    try:
        attempt()
        results.append("reached")
    except Exception as exc:
        results.append(type(exc).__name__)
print(results, sorted(sandbox.CALLED))
"""


def test_in_grading_mode_the_lessons_references_and_checks_are_unreachable():
    run = subprocess.run([sys.executable, "-c", SANDBOX], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    first = run.stdout.splitlines()[0]
    assert first == ("['ReferenceUnavailable', 'ReferenceUnavailable', 'ReferenceUnavailable', "
                     "'ImportError', 'ImportError'] ['gptcourse.welcome.plot_temperature', "
                     "'gptcourse.welcome.softmax']")


SANDBOX_OTHER_MODULES = """
from gptcourse.grading import sandbox
sandbox.install(["tokenization", "gpt_model"])
from gptcourse.model import GPT, GPTConfig, parameter_count
from gptcourse import tokenizer
import gptcourse.course_model as shipped
config = GPTConfig(vocab_size=10, block_size=4, n_layer=1, n_head=1, n_embd=4)
results = []
for attempt in (lambda: GPT(config), lambda: parameter_count(config),
                lambda: tokenizer.train_bpe("aaab", 257), lambda: shipped.GPT(config),
                lambda: GPTConfig.__init__.__globals__["GPT"]):
    try:
        attempt()
        results.append("reached")
    except Exception as exc:
        results.append(type(exc).__name__)
print(results, config.n_embd)
"""


def test_a_lessons_references_are_blocked_whichever_module_holds_them():
    """Lesson 01's references live in gptcourse.tokenizer and lesson 05's in gptcourse.model:
    both are stand-ins while grading, also when reached through another module, while the
    plain GPTConfig that lesson 05's cases carry stays real and leads to no model code."""
    run = subprocess.run([sys.executable, "-c", SANDBOX_OTHER_MODULES], capture_output=True,
                         text=True, timeout=60, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0] == ("['ReferenceUnavailable', 'ReferenceUnavailable', "
                                          "'ReferenceUnavailable', 'ReferenceUnavailable', "
                                          "'KeyError'] 4")


def test_kernel_memory_limit_is_enforced_where_the_os_supports_it():
    from gptcourse.grading.kernel import memory_limit_supported

    probe = ("from gptcourse.grading.kernel import limit_memory\n"
             "print(limit_memory(512))\n"
             "try:\n    bytearray(2 * 10**9)\n    print('allocated')\n"
             "except MemoryError:\n    print('MemoryError')\n")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60)
    if memory_limit_supported():
        assert run.stdout.split() == ["True", "MemoryError"]
    else:
        assert run.stdout.split()[0] == "False"


# --- the workshop view ----------------------------------------------------------------------

def test_progress_prints_exercises_by_learners_and_writes_a_heatmap(workshop, capsys):
    _, _, out = workshop
    assert main(["progress", str(out)]) == 0
    printed = capsys.readouterr().out
    header, row = printed.splitlines()[:2]
    assert "solved00" in header and "stubbed19" in header
    assert row.startswith("welcome.softmax") and row.count("✓") == 20 and row.count("○") == 20 and "50%" in row
    png = out / "progress.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_progress_shares_are_of_those_who_handed_the_lesson_in_with_their_number():
    from gptcourse.grading.progress import Progress, text_table

    status = {("ann", "welcome.softmax"): "passed", ("bob", "welcome.softmax"): "failed",
              ("cat", "welcome.softmax"): "passed", ("ann", "attention.causal_mask"): "passed"}
    p = Progress(["ann", "bob", "cat"], ["welcome.softmax", "attention.causal_mask"], status)
    assert p.passed_label("welcome.softmax") == "67% of 3"
    assert p.passed_label("attention.causal_mask") == "100% of 1"  # not 33%: two never sent it
    rows = text_table(p).splitlines()
    assert rows[1].endswith("67% of 3") and rows[2].endswith("100% of 1")


PLOTS_STILL_SHOW = """
import matplotlib
matplotlib.use("module://matplotlib_inline.backend_inline")  # what a notebook's kernel uses
import matplotlib.pyplot as plt
from gptcourse.grading.progress import Progress, heatmap
plt.plot([1, 2])  # the learner's own figure, to be shown when the cell ends
heatmap(Progress(["ann"], ["welcome.softmax"], {("ann", "welcome.softmax"): "passed"}),
        __import__("pathlib").Path(r"{png}"))
print(matplotlib.get_backend(), plt.get_fignums())
"""


def test_the_heatmap_leaves_a_notebooks_inline_plots_alone(tmp_path):
    png = tmp_path / "progress.png"
    run = subprocess.run([sys.executable, "-c", PLOTS_STILL_SHOW.replace("{png}", str(png))],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["module://matplotlib_inline.backend_inline", "[1]"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_progress_without_results_says_so(tmp_path, capsys):
    assert main(["progress", str(tmp_path)]) == 2
    assert "run gptcourse grade first" in capsys.readouterr().err


# --- what the learner's kernel can see ------------------------------------------------------

ISOLATION_PROBE = '''
import os, sys
connection_file = sys.argv[sys.argv.index("-f") + 1]
SEES = [what for what, seen in (
    ("its connection file (the kernel's keys)", os.path.exists(connection_file)),
    ("the grader's environment", "GPTCOURSE_TEST_SECRET" in os.environ),
    ("the grader's random seed", any("SEED" in k for k in os.environ)),
    ("the reference module", "softmax" in dir(sys.modules.get("gptcourse.welcome"))),
) if seen]

def softmax(x, temperature=1.0, axis=-1):
    if SEES:
        raise RuntimeError("the kernel sees " + "; ".join(SEES))
    z = np.asarray(x)
    z = (z.astype(np.float64) if z.dtype.kind in "iub" else z) / temperature
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)
'''


def test_the_kernel_sees_neither_its_keys_nor_the_graders_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GPTCOURSE_TEST_SECRET", "hunter2")
    nb = nbformat.read(str(STUBBED), as_version=4)
    solution = next(c for c in nb.cells
                    if c.metadata.get("gptcourse", {}).get("role") == "solution")
    solution.source = "import numpy as np\n" + ISOLATION_PROBE
    folder = tmp_path / "probe"
    folder.mkdir()
    nbformat.write(nb, str(folder / "00_welcome.ipynb"))
    batch = grade(folder, tmp_path / "results", limits=FAST, progress=False)
    (result,) = batch.records[0]["results"]
    assert result["status"] == "passed", result["message"]


@pytest.mark.parametrize("lesson", sorted((ROOT / "lessons").glob("*.ipynb")), ids=lambda p: p.stem)
def test_every_lesson_is_planned_from_the_registry_whatever_its_file_is_called(lesson, tmp_path):
    """New lessons need no change to the grader: their exercises come from the registry, by
    the file's name or, for a renamed copy, by its cells' tags."""
    from gptcourse.course import lesson_of_notebook
    from gptcourse.grading.steps import Grading, Submission, copy_to_workdir, find_exercises
    from gptcourse.grading.steps import read_notebook as read

    expected = [e.id for e in registry.of_lesson(lesson_of_notebook(lesson.name).name)]
    for name in (lesson.name, "homework.ipynb"):
        shutil.copyfile(lesson, tmp_path / name)
        g = Grading(Submission("x", tmp_path / name, name, None), FAST)
        copy_to_workdir(g)
        read(g)
        find_exercises(g)
        shutil.rmtree(g.workdir)
        assert [e.id for e in g.exercises] == expected and not g.error
