"""Writes tests/submissions/attacks/: lesson 00 as a learner might hand it in to cheat or to
break the grader. Run `python tests/submissions/make_attacks.py` after lesson 00 changes; the
notebooks are kept as files so each attack can be read (and opened in JupyterLab) as it is.

Each attack keeps the lesson's cells and changes the learner's `softmax` cell and/or adds
cells after it. `EXPECTED` in tests/test_grading_attacks.py says what each must score.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent / "attacks"

RIGHT = '''def softmax(x, temperature=1.0, axis=-1):
    z = np.asarray(x)
    if z.dtype.kind in "iub":
        z = z.astype(np.float64)
    z = z / temperature
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)
'''
WRONG = '''def softmax(x, temperature=1.0, axis=-1):
    return np.exp(np.asarray(x) / temperature)  # forgot to normalise
'''
STUB = None  # keep the lesson's stub


def _seed0_answers() -> str:
    """A lookup table of the reference's outputs on the public seed-0 cases: what a learner who
    ran check() with the reference could hard-code."""
    sys.path.insert(0, str(ROOT))
    from gptcourse.exercises import registry

    exercise = registry["welcome.softmax"]
    table = {}
    for case in exercise.cases(0):
        x = np.asarray(case.args[0])
        key = (x.tobytes().hex(), str(x.dtype), json.dumps(case.kwargs, sort_keys=True))
        table["|".join(key)] = exercise.reference(*case.args, **case.kwargs).tolist()
    return json.dumps(table)


ATTACKS: dict[str, tuple[str | None, list[str]]] = {
    # name: (softmax cell or None for the stub, cells added after the check cell)
    "redefine_check": (WRONG, ['''
from gptcourse.exercises.result import CheckResult
def check(exercise_id, fn, **kwargs):
    return CheckResult(exercise_id, "softmax", "passed", 1, "Right on all 13 test cases.")
check("welcome.softmax", softmax)
''']),
    "patch_checkresult": (WRONG, ['''
import gptcourse.exercises.result as result
result.CheckResult.passed = property(lambda self: True)
result.CheckResult.score = property(lambda self: self.points)
result.CheckResult.__post_init__ = lambda self: object.__setattr__(self, "status", "passed")
import gptcourse
gptcourse.CheckResult = result.CheckResult
''']),
    "patch_reference_and_registry": (WRONG, ['''
import gptcourse.welcome as w
w.softmax = softmax  # the reference now agrees with the learner
from gptcourse.exercises import registry
try:
    ex = registry["welcome.softmax"]
    object.__setattr__(ex, "reference", softmax)
except Exception as exc:
    print("registry:", type(exc).__name__, exc)
registry._exercises.clear()
import gptcourse.exercises.contract as contract
contract.Exercise.judge = lambda self, cases, outcomes: None
''']),
    "fake_passed_output": (STUB, ['''
from IPython.display import display
print("✓ welcome.softmax (softmax with temperature): passed — 1/1 point")
display({"text/plain": "✓ passed", "application/vnd.gptcourse.check+json": {
    "exercise": "welcome.softmax", "title": "softmax with temperature", "status": "passed",
    "points": 1, "message": "Right on all 13 test cases.", "hint": "", "details": "",
    "passed": True, "score": 1}}, raw=True)
''']),
    "calls_reference": ('''def softmax(x, temperature=1.0, axis=-1):
    return welcome.softmax(x, temperature, axis)
''', []),
    "calls_reference_hidden": ('''def softmax(x, temperature=1.0, axis=-1):
    import importlib, sys
    for name in [n for n in sys.modules if n.startswith("gptcourse.welcome")]:
        del sys.modules[name]
    reference = importlib.import_module("gptcourse.welcome").softmax
    try:
        return reference(x, temperature, axis)
    except Exception:  # swallow the grader's refusal, fall back to a guess
        return np.exp(np.asarray(x, dtype=float)) / np.exp(np.asarray(x, dtype=float)).sum()
''', []),
    "reads_inputs_from_disk": (WRONG, ['''
import os, glob, tempfile
found = []
for root in {os.getcwd(), os.path.dirname(os.getcwd()), tempfile.gettempdir(),
             os.path.expanduser("~")}:
    for path in glob.glob(os.path.join(root, "**", "*"), recursive=True)[:2000]:
        if any(w in path.lower() for w in ("case", "seed", "gptcourse-grade")):
            found.append(path)
seedish = {k: v for k, v in os.environ.items() if "SEED" in k or "GPTCOURSE" in k}
print(len(found), "files;", seedish)
''']),
    "hardcoded_seed0_answers": ('''import json
ANSWERS = json.loads(ANSWERS_JSON)
def softmax(x, temperature=1.0, axis=-1):
    x = np.asarray(x)
    kwargs = {}
    if temperature != 1.0: kwargs["temperature"] = temperature
    if axis != -1: kwargs["axis"] = axis
    key = "|".join((x.tobytes().hex(), str(x.dtype), json.dumps(kwargs, sort_keys=True)))
    if key in ANSWERS:
        return np.array(ANSWERS[key], dtype=x.dtype if x.dtype.kind == "f" else float)
    return np.full(x.shape, 1.0 / x.shape[axis])
''', []),
    "infinite_loop_in_cell": (RIGHT, ['''
while True:
    pass
''']),
    "infinite_loop_in_function": ('''def softmax(x, temperature=1.0, axis=-1):
    while True:
        pass
''', []),
    "allocates_50gb": ('''def softmax(x, temperature=1.0, axis=-1):
    hoard = np.ones(50 * 10**9 // 8)  # 50 GB
    return hoard[: np.size(x)].reshape(np.shape(x))
''', ['''
hoard = bytearray(50 * 10**9)
''']),
    "spawns_child_then_hangs": (RIGHT, ['''
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import time\\nwhile True: time.sleep(0.2)",
                          "gptcourse-attack-child"])
while True:
    pass
''']),
    "kills_kernel": (RIGHT, ['''
import os, signal
os.kill(os.getpid(), signal.SIGKILL)
''']),
    "os_exit": (RIGHT, ['''
import os
os._exit(0)
''']),
    "floods_output": (STUB, ['''
line = "flood " * 100
for i in range(40_000):  # about 24 MB
    print(line)
import os
os.write(1, b"straight to file descriptor 1\\n" * 300_000)  # about 9 MB, past IPython
''']),
    "deletes_files": (WRONG, ['''
import os, shutil
here = os.getcwd()
for name in os.listdir(here):
    path = os.path.join(here, name)
    shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
print("deleted", here, os.listdir(here))
''']),
    "returns_pickle_bomb": ('''class Evil:
    def __reduce__(self):
        import os
        return (os.system, ("touch /tmp/gptcourse-pwned",))

def softmax(x, temperature=1.0, axis=-1):
    return Evil()
''', []),
    "forges_reply": (STUB, ['''
import json
import gptcourse.grading.sandbox as sandbox
from IPython.display import display

def evaluate(name, cases_json, nonce):
    bomb = {"$ndarray": "object", "shape": [1], "data": "gASVAAAAAAAAAAAu"}
    outcomes = json.dumps([{"value": bomb, "error": None, "args_after": {"$tuple": []},
                            "kwargs_after": {"$dict": []}, "warnings": []}] * 13)
    display({sandbox.REPLY_MIME: json.dumps({"nonce": nonce, "outcomes": outcomes,
                                             "reference_called": []})}, raw=True)
sandbox.evaluate = evaluate
''']),
}


def lesson() -> nbformat.NotebookNode:
    return nbformat.read(str(ROOT / "lessons" / "00_welcome.ipynb"), as_version=4)


def attack_notebook(softmax: str | None, extra: list[str]) -> nbformat.NotebookNode:
    nb = lesson()
    index = next(i for i, c in enumerate(nb.cells)
                 if c.metadata.get("gptcourse", {}).get("role") == "check")
    if softmax is not None:
        nb.cells[index - 1].source = softmax.replace("ANSWERS_JSON",
                                                     repr(_seed0_answers()) if "ANSWERS_JSON"
                                                     in softmax else "ANSWERS_JSON").strip()
    for offset, source in enumerate(extra, start=1):
        cell = nbformat.v4.new_code_cell(source.strip())
        cell.id = f"attack-{offset}"  # fixed ids: regenerating changes nothing that is the same
        nb.cells.insert(index + offset, cell)
    return nb


def different_lesson() -> nbformat.NotebookNode:
    """Lesson 03's exercise, solved, handed in under lesson 00's name."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("from gptcourse import check"),
        nbformat.v4.new_code_cell("def causal_mask(T):\n"
                                  "    import torch\n"
                                  "    return torch.ones(T, T, dtype=torch.bool).tril()"),
        nbformat.v4.new_code_cell('check("attention.causal_mask", causal_mask)'),
    ]
    for i, cell in enumerate(nb.cells):
        cell.id = f"other-lesson-{i}"
    nb.cells[1].metadata.gptcourse = {"exercise": "attention.causal_mask", "role": "solution"}
    nb.cells[2].metadata.gptcourse = {"exercise": "attention.causal_mask", "role": "check"}
    return nb


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, (softmax, extra) in ATTACKS.items():
        nbformat.write(attack_notebook(softmax, extra), str(OUT / f"{name}.ipynb"))
    # a stored "passed" verdict from an earlier run: outputs are cleared before grading
    nb = attack_notebook(STUB, [])
    check_cell = next(c for c in nb.cells if c.metadata.get("gptcourse", {}).get("role") == "check")
    check_cell.outputs = [nbformat.v4.new_output("display_data", data={
        "text/plain": "✓ passed", "application/vnd.gptcourse.check+json": {
            "exercise": "welcome.softmax", "title": "softmax with temperature",
            "status": "passed", "points": 1, "message": "Right on all 13 test cases."}})]
    nbformat.write(nb, str(OUT / "stored_passed_output.ipynb"))
    (OUT / "different_lesson").mkdir(exist_ok=True)
    nbformat.write(different_lesson(), str(OUT / "different_lesson" / "00_welcome.ipynb"))
    (OUT / "not_json.ipynb").write_text("this is not a notebook {", encoding="utf-8")
    (OUT / "not_a_notebook.ipynb").write_text(json.dumps({"cells": 5, "hello": "world"}),
                                              encoding="utf-8")
    (OUT / "binary.ipynb").write_bytes(bytes(range(256)) * 4)


if __name__ == "__main__":
    main()
