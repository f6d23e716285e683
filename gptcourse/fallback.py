"""Demo cells that need a piece the learner writes: theirs when it is written, else the
course's, with a one-line note, so that nobody is stuck behind an unfinished exercise."""

from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T")


def yours_or_course(yours: Callable[[], T], course: Callable[[], T], what: str) -> T:
    """yours(), or course() when yours still raises NotImplementedError (a stub), saying so.

    Any other error in the learner's code is raised as usual: it is theirs to see.
    """
    try:
        result = yours()
    except NotImplementedError:
        print(f"(Your {what} is not written yet, so this cell uses the course's.)")
        return course()
    print(f"(This cell uses your {what}.)")
    return result


def yours_if_written(yours: Callable, course: Callable, what: str, *example) -> Callable:
    """The function a demo runs: `yours` once it runs on `example` (the arguments of one
    small call), `course` while yours is still a stub, with the same one-line note."""
    return yours_or_course(lambda: (yours(*example), yours)[1], lambda: course, what)
