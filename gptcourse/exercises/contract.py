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
import sys
import sysconfig
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from gptcourse.exercises.compare import Tolerance, difference, kind, short_repr
from gptcourse.exercises.probes import PROBES
from gptcourse.exercises.result import FAILED, NOT_ATTEMPTED, PASSED, CheckResult


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


def run_cases(fn: Callable, cases: Sequence[Case]) -> list[Outcome]:
    """Call `fn` on a fresh copy of every case's arguments; never raises for what `fn` does.

    Stops at the first exception: the verdict is decided there, and later cases would only
    repeat it (or take long).
    """
    outcomes = []
    for case in cases:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                value, args, kwargs = case.call(fn)
            except (Exception, SystemExit) as exc:
                error = LearnerError.from_exception(exc)
                outcomes.append(Outcome(error=error, warnings=_warning_texts(caught)))
                break
        outcomes.append(Outcome(value=value, args_after=args, kwargs_after=kwargs,
                                warnings=_warning_texts(caught)))
    return outcomes


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
            return exercise.difference(predicted, outcome.value) is None
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


MUTATION_HINT = ("Work on new values instead of changing the caller's: `x = x - m` makes a "
                 "new array, while `x -= m` (or `x[...] = ...`) overwrites the array you were "
                 "given, which the caller may still need.")


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

    def difference(self, expected: Any, got: Any) -> str | None:
        return difference(expected, got, self.tolerance, ordered=self.ordered)

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
        if not outcomes or outcomes[0].not_implemented:
            return self._result(
                NOT_ATTEMPTED,
                f"Not attempted yet: `{self.name}` still raises NotImplementedError. Replace "
                f"that line with your code, run its cell, then run this check again.")
        for case, outcome in zip(cases, outcomes):
            verdict = self._judge_case(case, outcome)
            if verdict is not None:
                return verdict
        if len(outcomes) < len(cases):
            return self._result(FAILED, f"Only {len(outcomes)} of {len(cases)} cases ran.")
        return self._result(PASSED, f"Right on all {len(cases)} test cases.")

    def _judge_case(self, case: Case, outcome: Outcome) -> CheckResult | None:
        where = f"On the case “{case.label}”:\n  {self.call_text(case)}\n"
        noted = "".join(f"\nPython warned: {w}" for w in outcome.warnings)
        if outcome.error is not None:
            error = outcome.error
            return self._result(
                FAILED, f"{where}raised {error.type_name}: {error.message}",
                hint=self._diagnose(case, outcome) or self._error_hint(error),
                details=error.frames + noted)
        try:
            with np.errstate(all="ignore"):
                expected, _, _ = case.call(self.reference)
            found = self.difference(expected, outcome.value)
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
            return self._result(
                FAILED, f"{where}the result is right, but your function changed its "
                        f"argument `{changed}` in place.", hint=MUTATION_HINT)
        return None

    def _changed_argument(self, case: Case, outcome: Outcome) -> str | None:
        exact = Tolerance(rtol=0.0, atol=0.0)
        names = list(inspect.signature(self.reference).parameters)
        for i, (before, after) in enumerate(zip(case.args, outcome.args_after)):
            if difference(before, after, exact) is not None:
                return names[i] if i < len(names) else f"#{i + 1}"
        for name, before in case.kwargs.items():
            if difference(before, outcome.kwargs_after.get(name), exact) is not None:
                return name
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


def learner_frames(tb) -> str:
    """The traceback frames that belong to the learner, formatted like IPython's."""
    lines = []
    for frame in traceback.extract_tb(tb):
        path = str(Path(frame.filename).resolve()) if not frame.filename.startswith("<") \
            else frame.filename
        if path.startswith(_CHECKER_DIR) or path.startswith(_LIBRARY_DIRS):
            continue
        lines.append(f"{_place(frame.filename)}, line {frame.lineno}, in {frame.name}")
        if frame.line:
            lines.append(f"    {frame.line}")
    return "\n".join(lines)


def _place(filename: str) -> str:
    """'Cell In[5]' for notebook cells (as IPython names them), else the file's name."""
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    try:
        name = shell.compile.format_code_name(filename) if shell else None
    except Exception:
        name = None
    return " ".join(name) if name else f'File "{filename}"'
