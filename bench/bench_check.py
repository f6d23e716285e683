"""How long learners wait for feedback: one check() call on a correct softmax."""

from __future__ import annotations

from run import Figure, median_seconds

from gptcourse import check
from gptcourse.exercises import registry
from gptcourse.welcome import softmax


def run() -> list[Figure]:
    exercise = registry["welcome.softmax"]
    cases = exercise.cases(0)

    def direct() -> None:  # the work itself: the reference on every case, no checking
        for case in cases:
            softmax(*case.args, **case.kwargs)

    checked = median_seconds(lambda: check("welcome.softmax", softmax), repeat=50)
    bare = median_seconds(direct, repeat=50)
    return [
        Figure("check('welcome.softmax', correct softmax): median latency", checked * 1e3, "ms",
               "target < 200 ms"),
        Figure("  ratio to running the reference on the same cases", checked / bare, "x"),
    ]
