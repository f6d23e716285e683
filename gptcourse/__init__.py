"""gptcourse: build a GPT piece by piece in JupyterLab, with instant feedback.

`check(exercise_id, fn)` checks a learner's function against the reference of that exercise;
the reference implementations live in one module per lesson (`gptcourse.welcome`, ...).
"""

from gptcourse.exercises import CheckResult, check

__version__ = "0.1.0"
__all__ = ["CheckResult", "check"]
