"""The three tests every lesson's wrong-implementation catalogue runs, made once.

In a test module:  (test_wrong_..., test_correct_..., test_the_stub_...) = catalogue_tests(
WRONG, CORRECT), with WRONG = {exercise id: {wrong fn: [words the feedback must contain]}} and
CORRECT = {exercise id: [correct fns]}.
"""

import pytest

from gptcourse import check


def _name(x):
    return getattr(x, "__name__", x)


def catalogue_tests(wrong: dict, correct: dict, *, feedback=lambda result: result.hint,
                    seeds=(0, 1, 2)):
    """feedback: the part of a failed result that must name the mistake (the hint, unless a
    lesson's mistakes are named in its message)."""

    @pytest.mark.parametrize("exercise, fn", [(e, f) for e in wrong for f in wrong[e]], ids=_name)
    def test_wrong_implementation_is_rejected_with_feedback_naming_the_mistake(exercise, fn):
        result = check(exercise, fn)
        assert result.status == "failed", str(result)
        for words in wrong[exercise][fn]:
            assert words in feedback(result), f"{fn.__name__}: {result}"

    @pytest.mark.parametrize("exercise, fn", [(e, f) for e in correct for f in correct[e]],
                             ids=_name)
    def test_correct_variants_pass(exercise, fn):
        for seed in seeds:
            result = check(exercise, fn, seed=seed)
            assert result.passed, str(result)

    @pytest.mark.parametrize("exercise", list(correct))
    def test_the_stub_is_not_attempted(exercise):
        def stub(*args, **kwargs):
            raise NotImplementedError

        assert check(exercise, stub).status == "not_attempted"

    return (test_wrong_implementation_is_rejected_with_feedback_naming_the_mistake,
            test_correct_variants_pass, test_the_stub_is_not_attempted)
