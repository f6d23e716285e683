"""Grading mode inside the learner's process: the only gptcourse code that runs there.

`install(lessons)` runs before any learner code (see `kernel`). From then on:

- the modules that hold the references of each lesson being graded (`gptcourse.<lesson>`, or
  those its `course.Lesson` names, such as `gptcourse.model` for lesson 05) are stand-ins:
  importing one works (so a notebook's `from gptcourse import welcome` does not stop the
  rest), but every name in it is a `BlockedReference` that raises `ReferenceUnavailable` when
  called and records the call; only plain data (`PLAIN_DATA`) stays real.
- `gptcourse.exercises.<lesson>` (the checks, which hold the references) cannot be imported.
- `check(...)` shows a one-line note instead of a verdict: the grader decides, not this process.

`evaluate(name, cases_json, nonce)` is what the grader runs in the kernel once the notebook has
executed: it calls the learner's function `name` on the cases the grader sent, with the
contract's `run_cases`, and displays the outcomes under `REPLY_MIME`. It imports no reference.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types

REPLY_MIME = "application/vnd.gptcourse.outcomes+json"
CALLED: set[str] = set()  # references the learner's code tried to call, by qualified name


class ReferenceUnavailable(RuntimeError):
    """Raised by a reference implementation called while grading."""


class BlockedReference:
    def __init__(self, qualname: str) -> None:
        self._qualname = qualname

    def __call__(self, *args, **kwargs):
        CALLED.add(self._qualname)
        raise ReferenceUnavailable(f"{self._qualname} is the course's reference "
                                   f"implementation, which is not available while grading")

    def __getattr__(self, name: str) -> "BlockedReference":
        if name.startswith("__"):
            raise AttributeError(name)
        return BlockedReference(f"{self._qualname}.{name}")

    def __repr__(self) -> str:
        return f"<{self._qualname}: not available while grading>"


# Plain data that a blocked reference module also offers, served from a module of its own that
# holds no reference code: the cases of lesson 05 carry a GPTConfig.
PLAIN_DATA = {("gptcourse.model", "GPTConfig"): "gptcourse.config"}


class _StandIn(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        home = PLAIN_DATA.get((self.__name__, name))
        if home is not None:
            return getattr(importlib.import_module(home), name)
        return BlockedReference(f"{self.__name__}.{name}")


class _Guard(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, stand_ins: set[str], refused: set[str]) -> None:
        self.stand_ins, self.refused = stand_ins, refused

    def find_spec(self, fullname, path=None, target=None):
        if fullname in self.stand_ins:
            return importlib.machinery.ModuleSpec(fullname, self)
        if fullname in self.refused:
            raise ImportError(f"{fullname} is not available while grading")
        return None

    def create_module(self, spec):
        return _StandIn(spec.name)

    def exec_module(self, module) -> None:
        module.__doc__ = "Not available while grading."


def _check_while_grading(exercise_id=None, fn=None, *args, **kwargs):
    from IPython.display import display

    display({"text/plain": f"check({exercise_id!r}, ...): checks run in the grader while "
                           f"grading; this notebook's own verdicts count for nothing."}, raw=True)


def install(lessons: list[str]) -> None:
    """Grading mode for a notebook of these lessons; call before any learner code runs."""
    # Importing the package loads the contract and the registry, never a lesson's module
    # (those load lazily), so no reference is in this process before the guard is in place.
    from gptcourse.course import LESSONS, lesson_named

    stand_ins = {module for lesson in lessons
                 for module in lesson_named(lesson).reference_modules}
    refused = {f"gptcourse.exercises.{lesson.name}" for lesson in LESSONS}
    for name in list(sys.modules):
        if name in stand_ins or name in refused:
            del sys.modules[name]
    sys.meta_path.insert(0, _Guard(stand_ins, refused))
    import gptcourse
    import gptcourse.exercises

    for module in (gptcourse, gptcourse.exercises):
        module.check = _check_while_grading
        for name in lessons + [m.rsplit(".", 1)[1] for m in stand_ins]:
            module.__dict__.pop(name, None)


def evaluate(name: str, cases_json: str, nonce: str) -> None:
    """Run the learner's `name` on the cases; display the outcomes (or why there are none)."""
    import json

    from IPython import get_ipython
    from IPython.display import display

    from gptcourse.exercises.contract import run_cases
    from gptcourse.grading.codec import dumps_outcomes, loads_cases

    CALLED.clear()
    fn = get_ipython().user_ns.get(name)
    if fn is None:
        reply = {"nonce": nonce, "missing": True}
    elif not callable(fn):
        reply = {"nonce": nonce, "not_callable": type(fn).__name__}
    else:
        outcomes = run_cases(fn, loads_cases(cases_json))
        reply = {"nonce": nonce, "outcomes": dumps_outcomes(outcomes),
                 "reference_called": sorted(CALLED)}
    display({REPLY_MIME: json.dumps(reply)}, raw=True)
