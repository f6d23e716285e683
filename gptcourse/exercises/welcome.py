"""Checks for lesson 00, welcome."""

from __future__ import annotations

import numpy as np

from gptcourse import welcome
from gptcourse.exercises.contract import Case, Exercise, Mistake, Outcome
from gptcourse.exercises.registration import register


def _softmax_cases(seed: int) -> list[Case]:
    rng = np.random.default_rng(seed)
    normal = lambda *shape: rng.normal(0.0, 2.0, size=shape)  # noqa: E731
    return [
        Case("a small vector", (np.array([1.0, 2.0, 3.0]),)),
        Case("a single score", (np.array([5.0]),)),
        Case("equal scores", (np.zeros(4),)),
        Case("rows of scores (2-D, along the last axis)", (normal(3, 5),)),
        Case("columns (2-D, axis=0)", (normal(3, 5),), {"axis": 0}),
        Case("a 3-D array along axis=1", (normal(2, 3, 4),), {"axis": 1}),
        Case("temperature 0.5 (sharper)", (normal(6),), {"temperature": 0.5}),
        Case("temperature 3 (flatter), 2-D", (normal(2, 6),), {"temperature": 3.0}),
        Case("large scores", (np.array([1000.0, 1001.0, 1002.0]),)),
        # A row of large negative scores under a row of large positive ones: exp underflows
        # unless each row's own max is subtracted (the whole array's max is not enough).
        Case("rows on very different scales: large positive and large negative scores",
             (np.array([[1000.0, 1002.0, 1001.0], [-1000.0, -1003.0, -1001.0]]),)),
        Case("float32 scores", (normal(4, 7).astype(np.float32),), {"temperature": 0.7}),
        Case("integer scores", (np.array([3, 1, 2]),)),
        Case("a score of -inf (a token ruled out)", (np.array([0.5, -np.inf, 1.5]),)),
    ]


def _kwargs(temperature: float = 1.0, axis: int = -1) -> dict:
    return {"temperature": temperature, "axis": axis}


def _overflowed(case: Case, outcome: Outcome) -> bool:
    x = np.asarray(case.args[0])
    got = np.asarray(outcome.value, dtype=float) if outcome.value is not None else None
    large = np.isfinite(x) & (np.abs(x) >= 700)
    return bool(large.any()) and got is not None and not np.isfinite(got).all()


def _not_normalised(case: Case, outcome: Outcome) -> bool:
    """Right up to a constant factor along the axis: the normalising division is missing."""
    k = _kwargs(**case.kwargs)
    expected = welcome.softmax(*case.args, **k)
    got = np.asarray(outcome.value, dtype=float)
    if got.shape != expected.shape or not np.isfinite(got).all():
        return False
    ratio = got / expected
    return bool(np.allclose(ratio, ratio.max(axis=k["axis"], keepdims=True), rtol=1e-5)
                and not np.allclose(got.sum(axis=k["axis"]), 1.0))


def _other_axis(x, temperature=1.0, axis=-1):
    x = np.asarray(x)
    other = 0 if axis % x.ndim != 0 else -1
    return welcome.softmax(x, temperature, other)


def _whole_array(x, temperature=1.0, axis=-1):
    e = np.exp(np.asarray(x, dtype=float) / temperature)
    return (e / e.sum()).astype(welcome.softmax(x).dtype)


def _global_max(x, temperature=1.0, axis=-1):
    z = np.asarray(x, dtype=welcome.softmax(x).dtype) / temperature
    e = np.exp(z - z.max())
    return e / e.sum(axis=axis, keepdims=True)


def _float16(case: Case, outcome: Outcome) -> bool:
    return getattr(outcome.value, "dtype", None) == np.float16


# Tried in order on the first failing case; the first one recognised gives the hint, so exact
# predictions of a wrong output come before looser symptoms that several mistakes share.
MISTAKES = (
    Mistake("You subtracted the largest score of the whole array, not of each slice along "
            "`axis`. Where slices sit on very different scales (one row near 1000, another "
            "near -1000) every exp of the lower one underflows to 0, and 0 / 0 is nan: take "
            "the max along `axis` with keepdims=True.", wrong=_global_max),
    Mistake("exp of a large score overflows to inf, and inf / inf is nan. Subtract the largest "
            "score first: softmax(x) equals softmax(x - max(x)), and then exp never sees a "
            "number above 0.", symptom=_overflowed),
    Mistake("The temperature divides the scores: softmax(x / T). Multiplying makes T = 2 "
            "sharper instead of flatter.",
            wrong=lambda x, temperature=1.0, axis=-1: welcome.softmax(np.asarray(x) * temperature,
                                                                       1.0, axis)),
    Mistake("Your result ignores `temperature`: divide the scores by it before the exp.",
            wrong=lambda x, temperature=1.0, axis=-1: welcome.softmax(x, 1.0, axis)),
    Mistake("You divided by the sum of the whole array. Sum along `axis` only (with "
            "keepdims=True), so that each slice along that axis adds up to 1.",
            wrong=_whole_array),
    Mistake("These are the exponentials, not yet probabilities: divide them by their sum along "
            "`axis` so that they add up to 1.", symptom=_not_normalised),
    Mistake("This looks like log-softmax (log-probabilities, all ≤ 0). Softmax returns the "
            "probabilities themselves: exp(z) / sum(exp(z)).",
            wrong=lambda x, temperature=1.0, axis=-1: np.log(welcome.softmax(x, temperature,
                                                                              axis))),
    Mistake("You normalised along a different axis than `axis`. Take the max and the sum with "
            "axis=axis, keepdims=True, so that each slice along `axis` adds up to 1.",
            wrong=_other_axis),
    Mistake("float16 keeps only about 3 significant digits, too few for probabilities that "
            "must add up to 1: keep the input's dtype (float64 in, float64 out; float32 in, "
            "float32 out).",
            symptom=_float16),
    Mistake("The shapes did not line up: `x.sum(axis=axis)` drops that axis. Use "
            "keepdims=True so the sums broadcast back against x.",
            symptom=lambda case, outcome: outcome.error is not None
            and "broadcast" in outcome.error.message),
)

register(Exercise(
    id="welcome.softmax",
    title="softmax with temperature",
    points=1,
    reference=welcome.softmax,
    make_cases=_softmax_cases,
    mistakes=MISTAKES,
    hint="Steps: divide x by the temperature, subtract the max along `axis` (keepdims=True), "
         "exponentiate, divide by the sum along `axis` (keepdims=True).",
))
