"""The exercise-check contract, as three steps a grader can run apart.

1. choose the inputs:      `exercise.cases(seed) -> list[Case]`
2. call the learner's fn:  `run_cases(fn, cases) -> list[Outcome]`   (needs no reference)
3. judge the outputs:      `exercise.judge(cases, outcomes) -> CheckResult`

In a notebook `check` runs all three in one process. A grader runs step 2 in the learner's
process and steps 1 and 3 in its own, so nothing the learner's code does can reach the
reference or the verdict. Cases and outcomes are plain picklable data for that reason.
"""

from __future__ import annotations

import copy
import inspect
import linecache
import re
import sys
import sysconfig
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from gptcourse.exercises.compare import Tolerance, array_dtypes, difference, kind, short_repr
from gptcourse.exercises.probes import PROBES
from gptcourse.exercises.result import FAILED, NOT_ATTEMPTED, PASSED, CheckResult
from gptcourse.exercises.watchdog import LimitReached, MemoryLimitReached, within_limits

# The slowest case of any exercise takes its reference 0.1 s on 2 busy CPU cores, and a
# plainer learner's version (Python loops where the reference vectorises) rarely ten times
# that; past these limits the learner's code is stopped and the case fails (see `watchdog`).
CASE_SECONDS = 5.0
CASE_MEMORY_BYTES = 1 << 30


@dataclass(frozen=True)
class Case:
    """One input to an exercise: a label the learner reads, the call's arguments, and the
    probe (see `probes`) that makes the call: "plain", or "gradients" to see gradients too."""

    label: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    probe: str = "plain"

    def call(self, fn: Callable) -> Any:
        """fn on a fresh copy of the arguments, through the probe; returns (value, args, kwargs)
        with the arguments as they were after the call."""
        args, kwargs = copy.deepcopy(self.args), copy.deepcopy(self.kwargs)
        return PROBES[self.probe](fn, args, kwargs), args, kwargs


@dataclass(frozen=True)
class LearnerError:
    """An exception raised by learner code, reduced to text (picklable, no live frames)."""

    type_name: str
    message: str
    frames: str

    @classmethod
    def from_exception(cls, exc: BaseException) -> "LearnerError":
        return cls(type(exc).__name__, str(exc), learner_frames(exc.__traceback__))


@dataclass
class Outcome:
    """What the learner's function did on one case: its value or its error, the arguments
    as they were after the call (to catch in-place changes) and any warnings it raised."""

    value: Any = None
    error: LearnerError | None = None
    args_after: tuple = ()
    kwargs_after: dict = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def not_implemented(self) -> bool:
        return self.error is not None and self.error.type_name == "NotImplementedError"


def run_cases(fn: Callable, cases: Sequence[Case], *, seconds: float | None = None,
              memory_bytes: int | None = None) -> list[Outcome]:
    """Call `fn` on a fresh copy of every case's arguments; never raises for what `fn` does.

    Each call is stopped after `seconds` (default CASE_SECONDS), or once the process holds
    `memory_bytes` (default CASE_MEMORY_BYTES) more than before it (see `watchdog`): an endless
    loop becomes a failed case, in a notebook and in the grader's kernel alike. Stops at the
    first exception: the verdict is decided there, and later cases would only repeat it (or
    take long).
    """
    seconds = CASE_SECONDS if seconds is None else seconds
    memory_bytes = CASE_MEMORY_BYTES if memory_bytes is None else memory_bytes
    outcomes = []
    for case in cases:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                value, args, kwargs = within_limits(lambda: case.call(fn), seconds,
                                                    memory_bytes)
            except (Exception, SystemExit, LimitReached) as exc:
                error = LearnerError.from_exception(exc)
                if isinstance(exc, LimitReached):
                    error = _stopped(error, exc, seconds, memory_bytes)
                outcomes.append(Outcome(error=error, warnings=_warning_texts(caught)))
                break
        outcomes.append(Outcome(value=value, args_after=args, kwargs_after=kwargs,
                                warnings=_warning_texts(caught)))
    return outcomes


def _stopped(error: LearnerError, exc: LimitReached, seconds: float,
             memory_bytes: int | None) -> LearnerError:
    """The error of a call the watchdog stopped, saying which limit and how large it was."""
    if isinstance(exc, MemoryLimitReached):
        message = (f"kept taking memory, {(memory_bytes or 0) >> 20} MiB more than it started "
                   f"with, so the check stopped it")
    else:
        message = f"did not finish within {seconds:g} s, so the check stopped it"
    return LearnerError(type(exc).__name__, message, error.frames)


def _warning_texts(caught) -> tuple[str, ...]:
    return tuple(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))


@dataclass(frozen=True)
class Mistake:
    """A known misconception and the hint that answers it.

    It is recognised on a failing case by `wrong` (a function with the reference's signature
    that computes what a learner with this misconception would return: the learner's output
    matching it identifies the mistake) or by `symptom(case, outcome)` returning True.
    """

    hint: str
    wrong: Callable | None = None
    symptom: Callable[[Case, Outcome], bool] | None = None

    def recognised(self, case: Case, outcome: Outcome, exercise: "Exercise") -> bool:
        try:
            if self.symptom is not None and self.symptom(case, outcome):
                return True
            if self.wrong is None or outcome.error is not None:
                return False
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                predicted, _, _ = case.call(self.wrong)
            return exercise.difference(predicted, outcome.value, case) is None
        except Exception:
            return False


def error_says(*phrases: str) -> Callable[["Case", Outcome], bool]:
    """A symptom: the learner's code raised an error whose message contains one of `phrases`."""
    def symptom(case: Case, outcome: Outcome) -> bool:
        return outcome.error is not None and any(p in outcome.error.message for p in phrases)
    return symptom


# Shared by every exercise with a "gradients" case: autograd's own words when nothing flows.
NO_GRADIENT = Mistake(
    "The gradient does not flow back to the inputs: use torch operations only, and avoid "
    ".detach(), .numpy(), .item(), torch.tensor(...) of a result and torch.no_grad() inside "
    "the function, so that training can adjust what it computes.",
    symptom=error_says("does not require grad", "does not have a grad_fn"))


def mutation_hint(name: str, value: Any) -> str:
    """What to do instead of changing the caller's `name` in place, in the terms of its type."""
    if isinstance(value, list):
        return (f"Build a new list instead of changing the caller's: `{name} = {name} + [t]`, "
                f"or a new list filled in a loop, leaves the one you were given alone, while "
                f"`{name}.append(...)`, `{name}[i] = ...` or `del {name}[i]` change the "
                f"caller's list, which the caller may still need.")
    if isinstance(value, dict):
        return (f"Build a new dict instead of changing the caller's: `{{**{name}, key: value}}` "
                f"or dict({name}) makes a copy to change, while `{name}[key] = ...` or "
                f"`{name}.pop(key)` change the dict you were given, which the caller may "
                f"still need.")
    return (f"Work on new values instead of changing the caller's: `{name} = {name} - m` makes "
            f"a new array, while `{name} -= m` (or `{name}[...] = ...`) overwrites the array "
            f"you were given, which the caller may still need.")


LIMIT_HINTS = {
    "TimeLimitReached": "An endless loop? Look for a `while` whose condition never becomes "
                        "false (a variable the loop should change but does not), or a loop "
                        "over a list that grows as it runs. The last lines above show where "
                        "your code was when it was stopped.",
    "MemoryLimitReached": "Something keeps growing: a list appended to in a loop that does not "
                          "end, or a tensor that doubles each time round. The last lines above "
                          "show where your code was when it was stopped.",
}


@dataclass(frozen=True)
class Exercise:
    """One exercise: its stable id `lesson.name`, what it is worth, its reference
    implementation, how to choose its cases, and the mistakes its hints recognise."""

    id: str
    title: str
    points: int
    reference: Callable
    make_cases: Callable[[int], list[Case]]
    mistakes: Sequence[Mistake] = ()
    hint: str = ""
    tolerance: Tolerance = Tolerance()
    ordered: bool = False  # dicts must keep the reference's key order

    @property
    def lesson(self) -> str:
        return self.id.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.id.split(".", 1)[1]

    @property
    def signature(self) -> str:
        """The call as the learner writes it, without type annotations: `softmax(x, axis=-1)`."""
        sig = inspect.signature(self.reference)
        plain = sig.replace(parameters=[p.replace(annotation=inspect.Parameter.empty)
                                        for p in sig.parameters.values()],
                            return_annotation=inspect.Signature.empty)
        return f"{self.name}{plain}"

    def cases(self, seed: int = 0) -> list[Case]:
        return self.make_cases(seed)

    def difference(self, expected: Any, got: Any, case: Case | None = None,
                   notes: list[str] | None = None) -> str | None:
        """The first difference between the reference's value and the learner's on `case`.

        With a case, a floating result in another dtype than the reference's passes when it
        keeps the precision of the case's input arrays (float64 for float32 input; float32 or
        float64 for integer input; see `compare.harmless_dtype`); `notes` collects what to
        say about it.
        """
        inputs = None if case is None else array_dtypes((case.args, case.kwargs))
        return difference(expected, got, self.tolerance, ordered=self.ordered,
                          input_dtypes=inputs, notes=notes)

    def call_text(self, case: Case) -> str:
        """How the case reads as a call: `softmax(x=array([1., 2.]), temperature=2.0)`."""
        try:
            bound = inspect.signature(self.reference).bind(*case.args, **case.kwargs)
            parts = [f"{k}={short_repr(v, 70)}" for k, v in bound.arguments.items()]
        except TypeError:
            parts = [short_repr(a, 70) for a in case.args] + \
                    [f"{k}={short_repr(v, 70)}" for k, v in case.kwargs.items()]
        return f"{self.name}({', '.join(parts)})"

    def judge(self, cases: Sequence[Case], outcomes: Sequence[Outcome]) -> CheckResult:
        """The verdict on outcomes that `run_cases` produced for these cases."""
        if not outcomes or (outcomes[0].not_implemented and
                            unfinished_callee(outcomes[0].error) is None):
            return self._result(
                NOT_ATTEMPTED,
                f"Not attempted yet: `{self.name}` still raises NotImplementedError. Replace "
                f"that line with your code, run its cell, then run this check again.")
        notes: list[str] = []
        for case, outcome in zip(cases, outcomes):
            verdict = self._judge_case(case, outcome, notes)
            if verdict is not None:
                return verdict
        if len(outcomes) < len(cases):
            return self._result(FAILED, f"Only {len(outcomes)} of {len(cases)} cases ran.")
        # one note is enough: the same dtype habit shows on every case it touches
        note = f"\nNote: {notes[0]}" if notes else ""
        return self._result(PASSED, f"Right on all {len(cases)} test cases.{note}")

    def _judge_case(self, case: Case, outcome: Outcome, notes: list[str]) -> CheckResult | None:
        where = f"On the case “{case.label}”:\n  {self.call_text(case)}\n"
        noted = "".join(f"\nPython warned: {w}" for w in outcome.warnings)
        if outcome.error is not None:
            return self._error_verdict(where, case, outcome, noted)
        try:
            with np.errstate(all="ignore"):
                expected, _, _ = case.call(self.reference)
            found = self.difference(expected, outcome.value, case, notes)
        except Exception as exc:  # a learner's value that cannot even be compared
            found = f"could not compare your result ({kind(outcome.value)}): {exc}"
        if found:
            if outcome.value is None:
                hint = "Your function returned None: did you forget the `return` statement?"
            else:
                hint = self._diagnose(case, outcome) or self.hint
            return self._result(FAILED, f"{where}{found}", hint=hint, details=noted.strip())
        changed = self._changed_argument(case, outcome)
        if changed:
            name, before = changed
            return self._result(
                FAILED, f"{where}the result is right, but your function changed its "
                        f"argument `{name}` in place.", hint=mutation_hint(name, before))
        return None

    def _error_verdict(self, where: str, case: Case, outcome: Outcome,
                       noted: str) -> CheckResult:
        error = outcome.error
        callee = unfinished_callee(error)
        if callee is not None:
            return self._result(
                FAILED, f"{where}your `{self.name}` calls `{callee}`, which is not written yet "
                        f"(it still raises NotImplementedError).",
                hint=f"Write `{callee}` first and run its cell (its own check tells you when "
                     f"it is right), then run this check again.",
                details=error.frames + noted)
        if error.type_name in LIMIT_HINTS:
            return self._result(FAILED, f"{where}your function {error.message}.",
                                hint=LIMIT_HINTS[error.type_name], details=error.frames + noted)
        return self._result(
            FAILED, f"{where}raised {error.type_name}: {error.message}",
            hint=self._diagnose(case, outcome) or self._error_hint(error),
            details=error.frames + noted)

    def _changed_argument(self, case: Case, outcome: Outcome) -> tuple[str, Any] | None:
        """The name and the value before the call of an argument the call changed, if any."""
        exact = Tolerance(rtol=0.0, atol=0.0)
        names = list(inspect.signature(self.reference).parameters)
        for i, (before, after) in enumerate(zip(case.args, outcome.args_after)):
            if difference(before, after, exact) is not None:
                return (names[i] if i < len(names) else f"#{i + 1}"), before
        for name, before in case.kwargs.items():
            if difference(before, outcome.kwargs_after.get(name), exact) is not None:
                return name, before
        return None

    def _diagnose(self, case: Case, outcome: Outcome) -> str:
        return next((m.hint for m in self.mistakes if m.recognised(case, outcome, self)), "")

    def _error_hint(self, error: LearnerError) -> str:
        if error.type_name == "TypeError" and "argument" in error.message:
            return f"Check the function's parameters: it should be `{self.signature}`."
        return self.hint

    def _result(self, status: str, message: str, hint: str = "", details: str = "") -> CheckResult:
        return CheckResult(exercise=self.id, title=self.title, status=status,
                           points=self.points, message=message, hint=hint, details=details)


# Frames from these folders are library code, not the learner's.
_LIBRARY_DIRS = tuple({str(Path(sysconfig.get_paths()[k]).resolve())
                       for k in ("stdlib", "platstdlib", "purelib", "platlib")})
_CHECKER_DIR = str(Path(__file__).resolve().parent)


# A deep recursion shows its first and last frames only; the middle repeats itself.
FRAMES_SHOWN = (3, 6)


def learner_frames(tb) -> str:
    """The traceback frames that belong to the learner, formatted like IPython's, each named by
    its qualified name (`Block.forward`, so that `frame_names` can tell whose code it is)."""
    lines = []
    probes = {getattr(probe, "__code__", None) for probe in PROBES.values()}
    for frame, lineno in traceback.walk_tb(tb):
        code = frame.f_code
        filename = code.co_filename
        path = str(Path(filename).resolve()) if not filename.startswith("<") else filename
        if path.startswith(_CHECKER_DIR) or path.startswith(_LIBRARY_DIRS) or code in probes:
            continue
        name = getattr(code, "co_qualname", code.co_name)  # Python 3.11+: Class.method
        line = linecache.getline(filename, lineno, frame.f_globals).strip()
        lines.append(f"{_place(filename)}, line {lineno}, in {name}" +
                     (f"\n    {line}" if line else ""))
    head, tail = FRAMES_SHOWN
    if len(lines) > head + tail + 1:
        lines[head:-tail] = [f"... {len(lines) - head - tail} more frames like these ..."]
    return "\n".join(lines)


_FRAME_LINE = re.compile(r"^\S.*, line \d+, in (\S+)$", re.MULTILINE)


def frame_names(frames: str) -> list[str]:
    """The qualified function names in text made by `learner_frames`, outermost first. It
    reads the text rather than live frames because text is what a grader receives."""
    return _FRAME_LINE.findall(frames)


def unfinished_callee(error: LearnerError) -> str | None:
    """The name of another function of the learner's that raised NotImplementedError (a stub
    the checked function calls), or None when the checked function raised it itself.

    The outermost learner frame is the checked function, or a method of the checked class;
    code defined inside it (a nested helper, another method of the same class) counts as its
    own. A name like `Block.forward` or `Block.__init__` is shown as the class, `Block`.
    """
    names = frame_names(error.frames)
    if error.type_name != "NotImplementedError" or len(names) < 2:
        return None
    outer, inner = names[0], names[-1]
    # `f.<locals>.g` is a function g defined inside f; `A.forward` is a method of class A
    method_of_a_class = "." in outer.rsplit("<locals>.", 1)[-1]
    own = outer.rsplit(".", 1)[0] if method_of_a_class else outer
    if inner == own or inner.startswith(own + "."):
        return None
    owner, _, method = inner.rsplit("<locals>.", 1)[-1].rpartition(".")
    return owner if owner and method in ("__init__", "forward", "__call__") else \
        inner.rsplit("<locals>.", 1)[-1]


def _place(filename: str) -> str:
    """'Cell In[5]' for notebook cells (as IPython names them), else the file's name."""
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    try:
        name = shell.compile.format_code_name(filename) if shell else None
    except Exception:
        name = None
    return " ".join(name) if name else f'File "{filename}"'
