"""The per-case time limit inside the grading kernel: one hanging function scores 0 and costs
the notebook nothing else; and a function that calls an unfinished one is reported by the
grader as it is by `check`, naming the stub."""

from __future__ import annotations

import nbformat
import pytest

from gptcourse import check
from gptcourse.exercises.contract import CASE_SECONDS
from gptcourse.grading import grade
from gptcourse.grading.steps import Limits

NOTEBOOK_LIMIT = 120.0  # seconds for the whole notebook, its functions included

IMPORTS = "import math\nimport torch\nfrom gptcourse import check"

LOOPING_GELU = '''
def gelu(x):
    y = x
    while True:  # the learner's endless loop
        y = y * 1.0
    return y
'''

STUB_GELU = '''
def gelu(x):
    raise NotImplementedError("Replace this line with your code, then run the check below.")
'''

MLP_WITHOUT_GELU = '''
def mlp(x, w_fc, b_fc, w_proj, b_proj):
    h = x @ w_fc.T + b_fc
    h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))
    return h @ w_proj.T + b_proj
'''

MLP_CALLING_GELU = '''
def mlp(x, w_fc, b_fc, w_proj, b_proj):
    return gelu(x @ w_fc.T + b_fc) @ w_proj.T + b_proj
'''

LAYER_NORM = '''
def layer_norm(x, weight, bias, eps=1e-5):
    mean = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, unbiased=False)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias
'''


def _notebook(path, *cells: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(IMPORTS)]
    for source, name in zip(cells, ("gelu", "mlp", "layer_norm")):
        nb.cells += [nbformat.v4.new_code_cell(source.strip()),
                     nbformat.v4.new_code_cell(f'check("feedforward.{name}", {name})')]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def _namespace(*cells: str) -> dict:
    namespace: dict = {}
    for source in (IMPORTS, *cells):
        exec(source, namespace)
    return namespace


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Two lesson-04 submissions graded side by side: one whose gelu never returns, one whose
    gelu is still the stub while its mlp calls it."""
    submissions = tmp_path_factory.mktemp("submissions")
    _notebook(submissions / "looper" / "04_feedforward.ipynb",
              LOOPING_GELU, MLP_WITHOUT_GELU, LAYER_NORM)
    _notebook(submissions / "stubber" / "04_feedforward.ipynb",
              STUB_GELU, MLP_CALLING_GELU, LAYER_NORM)
    batch = grade(submissions, tmp_path_factory.mktemp("results"), jobs=2,
                  limits=Limits(timeout=NOTEBOOK_LIMIT), progress=False)
    return {r["learner"]: r for r in batch.records}


def _results(record: dict) -> dict:
    return {r["exercise"].split(".")[1]: r for r in record["results"]}


def test_a_looping_gelu_scores_0_and_the_other_functions_keep_their_points(graded):
    record = graded["looper"]
    results = _results(record)
    assert not record["error"], record
    gelu = results["gelu"]
    assert gelu["status"] == "failed" and gelu["score"] == 0
    assert f"did not finish within {CASE_SECONDS:g} s" in gelu["message"]
    assert "endless loop" in gelu["hint"].lower()
    assert "in gelu" in gelu["details"] and "while True:" in gelu["details"]  # where it was
    for name in ("mlp", "layer_norm"):
        assert results[name]["status"] == "passed", results[name]
        assert results[name]["score"] == results[name]["points"] > 0
    # the limit is per case and stops the first: the notebook's own limit is far away
    assert record["seconds"] < NOTEBOOK_LIMIT / 3, record["seconds"]


def test_the_grader_names_the_stub_a_finished_function_calls_as_check_does(graded):
    results = _results(graded["stubber"])
    assert results["gelu"]["status"] == "not_attempted"
    mlp = results["mlp"]
    assert mlp["status"] == "failed" and mlp["score"] == 0
    assert "your `mlp` calls `gelu`, which is not written yet" in mlp["message"]
    assert results["layer_norm"]["status"] == "passed"

    learner = _namespace(STUB_GELU, MLP_CALLING_GELU)
    in_notebook = check("feedforward.mlp", learner["mlp"])
    assert in_notebook.status == "failed"
    assert "your `mlp` calls `gelu`, which is not written yet" in in_notebook.message
    assert in_notebook.hint == mlp["hint"]
