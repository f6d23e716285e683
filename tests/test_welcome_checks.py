"""welcome.softmax: the check rejects plausible wrong softmaxes, each with a hint that names the
mistake, and accepts differently written correct ones."""

import json

import numpy as np
import pytest

from gptcourse import check


# --- plausible wrong implementations, as a learner might write them -------------------------

def no_max_subtraction(x, temperature=1.0, axis=-1):
    e = np.exp(x / temperature)
    return e / e.sum(axis=axis, keepdims=True)


def wrong_axis(x, temperature=1.0, axis=-1):
    z = x / temperature
    e = np.exp(z - z.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def ignores_axis_argument(x, temperature=1.0, axis=-1):
    z = x / temperature
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def temperature_multiplied(x, temperature=1.0, axis=-1):
    z = x * temperature
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def temperature_ignored(x, temperature=1.0, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def exp_without_normalising(x, temperature=1.0, axis=-1):
    z = x / temperature
    return np.exp(z - z.max(axis=axis, keepdims=True))


def log_softmax(x, temperature=1.0, axis=-1):
    z = x / temperature
    z = z - z.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def mutates_input(x, temperature=1.0, axis=-1):
    x = np.asarray(x, dtype=float) if x.dtype.kind != "f" else x
    x /= temperature
    x -= x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def sum_over_whole_array(x, temperature=1.0, axis=-1):
    z = x / temperature
    e = np.exp(z - z.max())
    return e / e.sum()


def sum_without_keepdims(x, temperature=1.0, axis=-1):
    z = x / temperature
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis)


def max_of_the_whole_array(x, temperature=1.0, axis=-1):
    z = x / temperature
    e = np.exp(z - z.max())
    return e / e.sum(axis=axis, keepdims=True)


def in_float16(x, temperature=1.0, axis=-1):
    z = np.asarray(x, dtype=np.float16) / temperature
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def forgets_return(x, temperature=1.0, axis=-1):
    z = x / temperature
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    e / e.sum(axis=axis, keepdims=True)


def missing_temperature_parameter(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# wrong implementation -> words its hint must contain (the mistake, named)
WRONG = {
    no_max_subtraction: ["overflow", "largest"],
    wrong_axis: ["axis"],
    ignores_axis_argument: ["axis"],
    temperature_multiplied: ["divides", "Multiplying"],
    temperature_ignored: ["ignores `temperature`"],
    exp_without_normalising: ["divide them by their sum"],
    log_softmax: ["log-softmax"],
    mutates_input: ["`x -= m`"],
    sum_over_whole_array: ["sum of the whole array"],
    sum_without_keepdims: ["keepdims=True"],
    max_of_the_whole_array: ["largest score of the whole array", "each slice"],
    in_float16: ["float16", "input's dtype"],
    forgets_return: ["return"],
    missing_temperature_parameter: ["softmax(x, temperature=1.0, axis=-1)"],
}


@pytest.mark.parametrize("wrong", WRONG, ids=lambda f: f.__name__)
def test_wrong_softmax_is_rejected_with_a_hint_that_names_the_mistake(wrong):
    result = check("welcome.softmax", wrong)
    assert result.status == "failed" and not result.passed and result.score == 0
    for words in WRONG[wrong]:
        assert words in result.hint, f"hint for {wrong.__name__}: {result.hint!r}"


def test_a_failure_says_which_input_and_expected_versus_got():
    result = check("welcome.softmax", no_max_subtraction)
    assert "large scores" in result.message
    assert "softmax(x=array([1000., 1001., 1002.]" in result.message
    assert "expected 0.0900" in result.message and "got nan" in result.message


def test_a_dtype_that_loses_precision_is_named_in_the_message():
    assert "expected dtype float64, got dtype float16" in check("welcome.softmax",
                                                               in_float16).message


def upcasts_to_float64(x, temperature=1.0, axis=-1):
    z = np.asarray(x, dtype=float) / temperature
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def via_torch_in_float64(x, temperature=1.0, axis=-1):
    import torch

    return torch.softmax(torch.as_tensor(x, dtype=torch.float64) / temperature, axis).numpy()


def float32_for_integer_input(x, temperature=1.0, axis=-1):
    z = np.asarray(x) / temperature
    z = z.astype(np.float32) if x.dtype.kind != "f" else z
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("harmless", [upcasts_to_float64, via_torch_in_float64,
                                      float32_for_integer_input], ids=lambda f: f.__name__)
def test_a_harmless_dtype_passes_with_a_one_line_note(harmless):
    for seed in range(3):
        result = check("welcome.softmax", harmless, seed=seed)
        assert result.passed, str(result)
        note = result.message.split("\n")[1]
        assert note.startswith("Note:") and "input's dtype" in note, result.message
        assert len(result.message.split("\n")) == 2


# --- correct implementations, written differently ---------------------------------------------

def via_logsumexp(x, temperature=1.0, axis=-1):
    z = np.asarray(x) / temperature
    if z.dtype.kind != "f":
        z = z.astype(np.float64)
    m = np.max(z, axis=axis, keepdims=True)
    lse = m + np.log(np.sum(np.exp(z - m), axis=axis, keepdims=True))
    return np.exp(z - lse)


def by_moving_the_axis_last(x, temperature=1.0, axis=-1):
    z = np.moveaxis(np.asarray(x, dtype=np.result_type(x, np.float32)), axis, -1)
    z = z * (1.0 / temperature)
    out = np.empty_like(z)
    for index in np.ndindex(z.shape[:-1]):
        row = np.exp(z[index] - z[index].max())
        out[index] = row / row.sum()
    return np.moveaxis(out, -1, axis)


def with_torch(x, temperature=1.0, axis=-1):
    import torch

    t = torch.from_numpy(np.asarray(x))
    if not t.is_floating_point():
        t = t.double()
    return torch.softmax(t / temperature, dim=axis).numpy()


CORRECT = [via_logsumexp, by_moving_the_axis_last, with_torch]


@pytest.mark.parametrize("correct", CORRECT, ids=lambda f: f.__name__)
def test_correct_softmax_variants_pass(correct):
    result = check("welcome.softmax", correct)
    assert result.passed, str(result)
    assert result.score == result.points == 1


def test_correct_variants_pass_on_other_seeds_too():
    for seed in range(1, 6):
        for correct in CORRECT:
            assert check("welcome.softmax", correct, seed=seed).passed


def test_the_stub_is_not_attempted():
    def softmax(x, temperature=1.0, axis=-1):
        # YOUR CODE HERE
        raise NotImplementedError("Replace this line with your code, then run the check below.")

    result = check("welcome.softmax", softmax)
    assert result.status == "not_attempted" and result.score == 0
    assert "NotImplementedError" in result.message


def test_every_result_is_json_serialisable():
    for fn in [*WRONG, *CORRECT]:
        data = json.loads(json.dumps(check("welcome.softmax", fn).to_dict()))
        assert data["status"] in ("passed", "failed", "not_attempted")


def test_the_reference_refuses_a_temperature_that_is_not_positive():
    from gptcourse.welcome import softmax

    for bad in (0, -1.0):
        with pytest.raises(ValueError, match="temperature must be a number above 0"):
            softmax(np.ones(3), temperature=bad)
