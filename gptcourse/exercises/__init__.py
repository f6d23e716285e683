"""Exercise checks: `check(exercise_id, fn)` and the registry of exercises.

See `contract` for the three steps (cases, calls, judgement) that `check` runs and that a
grader runs apart.
"""

from __future__ import annotations

from typing import Callable

from gptcourse.exercises.contract import Case, Exercise, Mistake, Outcome, run_cases
from gptcourse.exercises.registration import registry
from gptcourse.exercises.result import CheckResult

__all__ = ["Case", "CheckResult", "Exercise", "Mistake", "Outcome", "check", "registry",
           "run_cases"]


def check(exercise_id: str, fn: Callable, *, seed: int = 0) -> CheckResult:
    """Check the learner's `fn` against the reference of exercise `exercise_id`.

    Returns a CheckResult, shown as a coloured verdict in a notebook. Never raises for what
    `fn` does; raises KeyError for an unknown id (listing the valid ones) and TypeError when
    `fn` is not a function.
    """
    exercise = registry[exercise_id]
    if not callable(fn):
        raise TypeError(f"check({exercise_id!r}, ...) expects your function itself, for example "
                        f"check({exercise_id!r}, {exercise.name}) without parentheses after "
                        f"{exercise.name}; got {type(fn).__name__}: {fn!r:.80}")
    cases = exercise.cases(seed)
    return exercise.judge(cases, run_cases(fn, cases))
