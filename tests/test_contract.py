"""The check machinery: verdicts, feedback, robustness against whatever learner code does, and
the three separable steps a grader relies on."""

import json
import pickle

import numpy as np
import pytest
import torch

from gptcourse import CheckResult, check
from gptcourse.exercises import Case, Exercise, Mistake, registry, run_cases
from gptcourse.exercises.compare import Tolerance, difference
from gptcourse.exercises.registration import UnknownExercise
from gptcourse.welcome import softmax as reference_softmax


def broken_softmax(x, temperature=1.0, axis=-1):
    scale = helper_that_divides(x, 0)
    return scale


def helper_that_divides(x, by):
    return {}[by]  # KeyError raised inside the learner's own helper


def test_a_learner_exception_fails_and_shows_the_learners_frames_only():
    result = check("welcome.softmax", broken_softmax)
    assert result.status == "failed"
    assert "raised KeyError: 0" in result.message
    assert "in broken_softmax" in result.details and "in helper_that_divides" in result.details
    assert "scale = helper_that_divides(x, 0)" in result.details
    assert "exercises/contract.py" not in result.details and "in run_cases" not in result.details


@pytest.mark.parametrize("returned", [
    None, "0.3", [0.1, 0.9], 42, object(), (x for x in range(3)), np.float64(1.0),
    torch.ones(3), np.ones((3, 1)), np.full(3, np.nan),
], ids=repr)
def test_whatever_the_learner_returns_the_check_gives_a_verdict(returned):
    result = check("welcome.softmax", lambda x, temperature=1.0, axis=-1: returned)
    assert result.status == "failed" and result.message


def test_an_object_whose_repr_and_comparison_raise_is_a_failed_verdict():
    class Hostile:
        def __repr__(self):
            raise RuntimeError("no repr for you")

        def __eq__(self, other):
            raise RuntimeError("no comparison either")

        def __array__(self, *args, **kwargs):
            raise RuntimeError("and no array")

    result = check("welcome.softmax", lambda x, temperature=1.0, axis=-1: Hostile())
    assert result.status == "failed"
    assert "repr failed" in result.message or "Hostile" in result.message


def test_sys_exit_in_learner_code_is_a_failed_verdict_not_an_exit():
    import sys

    result = check("welcome.softmax", lambda x, temperature=1.0, axis=-1: sys.exit(3))
    assert result.status == "failed" and "SystemExit" in result.message


def test_keyboard_interrupt_still_stops_the_check():
    def interrupted(x, temperature=1.0, axis=-1):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        check("welcome.softmax", interrupted)


def test_an_unknown_id_lists_the_valid_ones():
    with pytest.raises(UnknownExercise) as info:
        check("welcome.sofmax", reference_softmax)
    assert "welcome.sofmax" in str(info.value) and "welcome.softmax" in str(info.value)
    assert isinstance(info.value, KeyError)


def test_a_non_callable_says_what_was_expected():
    with pytest.raises(TypeError, match=r"expects your function itself.*without parentheses"):
        check("welcome.softmax", reference_softmax(np.ones(3)))


def test_the_three_steps_apart_give_the_same_verdict_as_check():
    exercise = registry["welcome.softmax"]
    cases = exercise.cases(seed=7)
    # cases and outcomes travel between processes: they must survive pickling
    outcomes = pickle.loads(pickle.dumps(run_cases(reference_softmax, pickle.loads(
        pickle.dumps(cases)))))
    apart = exercise.judge(cases, outcomes)
    assert apart == check("welcome.softmax", reference_softmax, seed=7)
    assert apart.passed


def test_running_cases_needs_no_reference_and_leaves_the_cases_untouched():
    cases = registry["welcome.softmax"].cases(0)
    before = pickle.dumps(cases)

    def in_place(x, temperature=1.0, axis=-1):
        x *= 0
        return x

    run_cases(in_place, cases)
    assert pickle.dumps(cases) == before


def test_a_right_answer_that_changes_its_input_fails():
    def right_but_mutating(x, temperature=1.0, axis=-1):
        out = reference_softmax(x, temperature, axis)
        if x.dtype.kind == "f":
            x[...] = 0
        return out

    result = check("welcome.softmax", right_but_mutating)
    assert result.status == "failed" and "changed its argument `x` in place" in result.message


def test_seeds_choose_different_random_cases():
    exercise = registry["welcome.softmax"]
    a, b = exercise.cases(0), exercise.cases(1)
    assert any(difference(x.args, y.args) for x, y in zip(a, b))
    assert all(difference(x.args, y.args) is None for x, y in zip(a, exercise.cases(0)))


def test_a_result_shows_itself_in_notebooks_terminals_and_json():
    result = check("welcome.softmax", lambda x, temperature=1.0, axis=-1: "<script>x</script>")
    bundle = result._repr_mimebundle_()
    assert "<script>" not in bundle["text/html"] and "&lt;script&gt;" in bundle["text/html"]
    assert bundle["text/plain"].startswith("✗ welcome.softmax")
    assert CheckResult.from_dict(json.loads(json.dumps(bundle["application/vnd.gptcourse.check+json"]))) == result
    assert str(check("welcome.softmax", reference_softmax)).startswith("✓ welcome.softmax")


def test_a_result_refuses_an_unknown_status():
    with pytest.raises(ValueError, match="status must be one of"):
        CheckResult("a.b", "t", "maybe", 1, "")


def test_warnings_raised_by_learner_code_are_reported_not_printed(recwarn):
    def warns(x, temperature=1.0, axis=-1):
        return np.exp(x * 1000.0) * 0

    result = check("welcome.softmax", warns)
    assert "overflow encountered in exp" in result.details
    assert not [w for w in recwarn if "overflow" in str(w.message)]


def test_mistakes_are_recognised_by_wrong_output_or_symptom_and_never_raise():
    exercise = Exercise(
        id="welcome.double", title="double", points=1, reference=lambda x: 2 * x,
        make_cases=lambda seed: [Case("three", (3,))],
        mistakes=[Mistake("boom", wrong=lambda x: 1 / 0),
                  Mistake("added instead", wrong=lambda x: x + 2),
                  Mistake("never", symptom=lambda case, outcome: False)])
    cases = exercise.cases(0)
    assert exercise.judge(cases, run_cases(lambda x: x + 2, cases)).hint == "added instead"
    assert exercise.judge(cases, run_cases(lambda x: x * 3, cases)).hint == ""
    assert exercise.judge(cases, run_cases(lambda x: 2 * x, cases)).passed


# --- comparison ------------------------------------------------------------------------------

@pytest.mark.parametrize("expected, got, says", [
    (np.zeros((2, 3)), np.zeros((3, 2)), "expected shape (2, 3), got shape (3, 2)"),
    (np.zeros(3, np.float32), np.zeros(3), "expected dtype float32, got dtype float64"),
    (np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.5, 3.0]), "first at index [1]: expected 2, got 2.5"),
    (np.zeros(2), [0.0, 0.0], "expected a numpy array, got a list"),
    (torch.zeros(2), np.zeros(2), "expected a torch tensor, got a numpy array"),
    (torch.tensor([True, False]), torch.tensor([True, True]), "first at index [1]"),
    (torch.zeros(2, dtype=torch.float64), torch.zeros(2), "expected dtype float64, got dtype float32"),
    ([1, 2, 3], [1, 2], "expected 3 items, got 2"),
    ({(1, 2): 3}, {(1, 2): 4}, "at [(1, 2)]: expected 3, got 4"),
    ({(1, 2): 3}, {(2, 1): 3}, "missing key [(1, 2)] and unexpected key [(2, 1)]"),
    ("héllo", "hello", "first difference at position 1"),
    (7, 7.0, "expected the integer 7, got a float"),
    (0.5, 0.6, "expected 0.5, got 0.6"),
    (True, 1, "expected True, got 1"),
    (None, 0, "expected None, got 0"),
])
def test_difference_describes_the_first_difference(expected, got, says):
    assert says in difference(expected, got)


def test_ordered_dicts_must_keep_the_order():
    a, b = {(1, 2): 256, (3, 4): 257}, {(3, 4): 257, (1, 2): 256}
    assert difference(a, b) is None
    assert "different order" in difference(a, b, ordered=True)


def test_tolerance_fits_dtype_and_size_of_values():
    assert difference(np.float32([1.0]), np.float32([1.0 + 5e-6])) is None
    assert difference(np.float64([1.0]), np.float64([1.0 + 5e-6])) is not None
    assert difference(np.array([1e6, 0.0]), np.array([1e6, 5e-5])) is None  # atol scales
    assert difference(np.array([np.nan, 1.0]), np.array([np.nan, 1.0])) is None
    assert difference(np.array([1.0]), np.array([1.0001]), Tolerance(rtol=1e-3)) is None
    assert "NaN in your result" in difference(np.array([1.0, 2.0]), np.array([np.nan, 2.0]))


def test_the_gradients_probe_sees_gradients_that_stop_or_miss_an_input():
    scaled_sum = Exercise(
        id="welcome.scaled_sum", title="a * b + a", points=1,
        reference=lambda a, b: a * b + a,
        make_cases=lambda seed: [Case("two vectors", (torch.arange(3.0), torch.ones(3)),
                                      probe="gradients")])
    cases = scaled_sum.cases(0)
    judge = lambda fn: scaled_sum.judge(cases, run_cases(fn, cases))  # noqa: E731
    assert judge(lambda a, b: a * b + a).passed
    assert judge(lambda a, b: torch.addcmul(a, a, b)).passed
    detached = judge(lambda a, b: (a * b + a).detach())
    assert detached.status == "failed" and "does not require grad" in detached.message
    missed = judge(lambda a, b: a * b.detach() + a)  # right values, no gradient to b
    assert missed.status == "failed" and "at [1][1]: expected a torch tensor, got None" \
        in missed.message


@pytest.mark.parametrize("expected, got, inputs, passes", [
    (np.zeros(3, np.float32), np.zeros(3), ("float32",), True),  # float64 for float32 input
    (np.zeros(3), np.zeros(3, np.float32), ("int64",), True),  # float32 for integer input
    (np.zeros(3), np.zeros(3, np.float32), ("float64",), False),  # loses the input's precision
    (np.zeros(3, np.float32), np.zeros(3, np.float16), ("float32",), False),
    (np.zeros(3), np.zeros(3, np.float16), ("int64",), False),
    (torch.zeros(3), torch.zeros(3, dtype=torch.float64), ("float32",), True),
    (torch.zeros(3), torch.zeros(3, dtype=torch.int64), ("float32",), False),
    (torch.zeros(3), torch.zeros(3, dtype=torch.float64), (), False),  # the learner's choice
])
def test_a_harmless_dtype_passes_with_a_note_and_a_lossy_one_does_not(expected, got, inputs,
                                                                    passes):
    notes = []
    found = difference(expected, got, input_dtypes=inputs, notes=notes)
    assert (found is None) == passes, found
    assert len(notes) == passes and difference(expected, got) is not None  # strict by default


def test_a_harmless_dtype_is_compared_at_the_coarser_tolerance():
    expected = np.float64([1.0 / 3.0])
    assert difference(expected, expected.astype(np.float32), input_dtypes=("int64",)) is None
    assert difference(expected, np.float32([0.3334]), input_dtypes=("int64",)) is not None


def test_a_tensor_where_a_number_is_expected_is_named_and_near_numbers_show_every_digit():
    says = difference(0.0006, torch.tensor(0.0006))
    assert "expected a plain number (a Python float)" in says and ".item()" in says
    assert difference(0.0006, 0.0006 * (1 + 3e-7)) == \
        f"expected {0.0006!r}, got {0.0006 * (1 + 3e-7)!r}"


# --- time and memory limits ------------------------------------------------------------------

def loops_forever(x, temperature=1.0, axis=-1):
    while True:
        pass


def swallows_exceptions(x, temperature=1.0, axis=-1):
    while True:
        try:
            while True:
                pass
        except Exception:  # the watchdog's stop is a BaseException: it gets through
            pass


def keeps_growing(x, temperature=1.0, axis=-1):
    grown = []
    while True:
        grown.append(np.ones(10_000))


@pytest.mark.parametrize("fn", [loops_forever, swallows_exceptions], ids=lambda f: f.__name__)
def test_an_endless_loop_gets_a_verdict_after_the_stated_time(fn, monkeypatch):
    import time

    from gptcourse.exercises import contract

    monkeypatch.setattr(contract, "CASE_SECONDS", 1.0)
    start = time.monotonic()
    result = check("welcome.softmax", fn)
    assert time.monotonic() - start < 4.0
    assert result.status == "failed" and "did not finish within 1 s" in result.message
    assert f"in {fn.__name__}" in result.details and "endless loop" in result.hint.lower()
    # the limit is lifted once the call is over: the next check runs as usual
    assert check("welcome.softmax", reference_softmax).passed


def test_memory_that_keeps_growing_is_stopped():
    cases = registry["welcome.softmax"].cases(0)
    outcomes = run_cases(keeps_growing, cases, seconds=60, memory_bytes=200 << 20)
    assert len(outcomes) == 1 and outcomes[0].error.type_name == "MemoryLimitReached"
    result = registry["welcome.softmax"].judge(cases, outcomes)
    assert "kept taking memory, 200 MiB" in result.message and "keeps growing" in result.hint


def test_the_time_limit_works_when_the_checked_callable_is_a_class():
    class Spins:
        def __init__(self, x):
            while True:
                pass

    exercise = Exercise(id="welcome.spins", title="a class", points=1, reference=lambda x: x,
                        make_cases=lambda seed: [Case("one", (1,))])
    cases = exercise.cases(0)
    result = exercise.judge(cases, run_cases(Spins, cases, seconds=0.5))
    assert "did not finish within 0.5 s" in result.message and "Spins.__init__" in result.details


def test_the_watchdog_never_fires_after_the_call_returned():
    import time

    from gptcourse.exercises.watchdog import within_limits

    assert within_limits(lambda: sum(range(1000)), seconds=0.05) == 499500
    time.sleep(0.3)  # a late raise would land here and fail the test


# --- a stub called from finished code --------------------------------------------------------

def gelu(x):
    raise NotImplementedError("Replace this line with your code, then run the check below.")


def mlp_calling_the_stub(x, w_fc, b_fc, w_proj, b_proj):
    return gelu(x @ w_fc.T + b_fc) @ w_proj.T + b_proj


def mlp_stub(x, w_fc, b_fc, w_proj, b_proj):
    raise NotImplementedError


def mlp_with_its_own_unfinished_helper(x, w_fc, b_fc, w_proj, b_proj):
    def hidden(h):
        raise NotImplementedError

    return hidden(x @ w_fc.T + b_fc) @ w_proj.T + b_proj


def test_a_stub_called_from_a_finished_function_is_named():
    result = check("feedforward.mlp", mlp_calling_the_stub)
    assert result.status == "failed"
    assert "your `mlp` calls `gelu`, which is not written yet" in result.message
    assert "Write `gelu` first" in result.hint
    # code of its own that is unfinished is the function not attempted, as a stub itself is
    assert check("feedforward.mlp", mlp_with_its_own_unfinished_helper).status == "not_attempted"
    assert check("feedforward.mlp", mlp_stub).status == "not_attempted"


def split_heads(x, n_head):
    raise NotImplementedError


class Unfinished(torch.nn.Module):
    def __init__(self, n):
        super().__init__()
        raise NotImplementedError


class UnfinishedForward(torch.nn.Module):
    def __init__(self, n):
        super().__init__()

    def forward(self, x):
        return self.attend(x)

    def attend(self, x):
        raise NotImplementedError


class CallsTheStub(torch.nn.Module):
    def __init__(self, n):
        super().__init__()

    def forward(self, x):
        return split_heads(x, 2)


class BuildsAnUnfinishedPart(torch.nn.Module):
    def __init__(self, n):
        super().__init__()
        self.part = Unfinished(n)


def _construct_and_forward(cls, args, kwargs):
    return cls(*args, **kwargs)(torch.ones(2, 4))


@pytest.mark.parametrize("cls, status, named", [
    (Unfinished, "not_attempted", None),
    (UnfinishedForward, "not_attempted", None),
    (CallsTheStub, "failed", "calls `split_heads`"),
    (BuildsAnUnfinishedPart, "failed", "calls `Unfinished`"),
])
def test_a_class_is_not_attempted_while_its_own_code_is_a_stub(cls, status, named, monkeypatch):
    from gptcourse.exercises import probes

    monkeypatch.setitem(probes.PROBES, "module", _construct_and_forward)
    exercise = Exercise(id="welcome.module", title="a module", points=1,
                        reference=lambda n: (lambda x: x),
                        make_cases=lambda seed: [Case("n=4", (4,), probe="module")])
    cases = exercise.cases(0)
    result = exercise.judge(cases, run_cases(cls, cases))
    assert result.status == status, str(result)
    if named:
        assert named in result.message


def test_a_deep_recursion_shows_its_first_and_last_frames_only():
    def recurse(x, temperature=1.0, axis=-1):
        return recurse(x, temperature, axis)

    details = check("welcome.softmax", recurse).details
    assert "more frames like these" in details and details.count("in ") < 30


# --- the verdict box in a notebook -----------------------------------------------------------

def test_backticks_show_as_code_and_learner_text_stays_escaped():
    result = CheckResult("welcome.softmax", "softmax", "failed", 1,
                         message="raised ValueError: `<script>alert(1)</script>` and `axis`",
                         hint="Sum along `axis`.", details="File x, line 1, in f\n    `x` <b>")
    page = result._repr_html_()
    assert "`" not in page.split("<pre")[0]  # no literal backticks in message or hint
    assert ">axis</code>" in page and "<script>" not in page
    assert ">&lt;script&gt;alert(1)&lt;/script&gt;</code>" in page
    assert "`x` &lt;b&gt;" in page  # tracebacks are shown as they are, escaped
    assert "`axis`" in str(result)  # the plain text keeps them


def test_every_part_of_the_box_has_a_colour_that_follows_the_theme():
    page = check("feedforward.mlp", mlp_calling_the_stub)._repr_html_()
    assert "var(--jp-content-font-color1" in page and "var(--jp-error-color1" in page
    # the traceback and the id chip take the box's text colour over a translucent tint, which
    # reads on a light and on a dark background alike; no light colour is fixed anywhere
    assert page.count("color:inherit") >= 2 and "#ffebe9" not in page and "#f6f8fa" not in page
    assert "rgba(" in page.split("<pre")[1].split(">")[0]
