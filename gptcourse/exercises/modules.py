"""Class exercises and loop exercises, on the grader's side.

A class exercise takes the learner's `nn.Module` subclass. Its cases carry plain data only:
the constructor's arguments, the reference's weights (float64, by name: the learner's class
uses the reference's attribute names, so they load strictly) and the inputs. The `module`
probe (see `probes`) builds the learner's class from them in the learner's process; this
module makes those cases from a reference class, words the call as the learner reads it,
and holds the hints every class exercise shares.

A loop exercise (`generate`, `train_step`) takes a model as an input. That model is the
probes' `table_model`, built in the learner's process from a table of logits, so no course
model code need run there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from gptcourse.exercises.compare import short_repr
from gptcourse.exercises.contract import Case, Exercise, Mistake, Outcome, error_says
from gptcourse.exercises.probes import CAUSAL, CLASSES
from gptcourse.exercises.result import FAILED, CheckResult


def reference_weights(cls: Callable, constructor: dict, seed: int) -> dict[str, torch.Tensor]:
    """Random float64 weights for cls(**constructor), by state-dict name. Not the model's own
    initialisation: biases and LayerNorm gains far from 0 and 1 are what make a missing one
    show. Tied entries (one tensor under two names) get the same values."""
    g = torch.Generator().manual_seed(seed)
    weights: dict[str, torch.Tensor] = {}
    shared: dict[int, torch.Tensor] = {}
    for name, tensor in cls(**constructor).state_dict().items():
        key = tensor.data_ptr()
        if key not in shared:
            values = torch.randn(tensor.shape, generator=g, dtype=torch.float64)
            gain = name.endswith("weight") and tensor.dim() == 1  # a LayerNorm's
            shared[key] = 1.0 + 0.3 * values if gain else 0.3 * values
        weights[name] = shared[key]
    return weights


def module_case(label: str, cls: Callable, constructor: dict, inputs: tuple, seed: int,
                causal_from: int | None = None, **forward_kwargs) -> Case:
    """A case of a class exercise: cls(**constructor) with reference weights, called on
    inputs (and forward_kwargs); with causal_from, the causality probe too."""
    kwargs = dict(forward_kwargs)
    if causal_from is not None:
        kwargs["causal_from"] = causal_from
    return Case(label, (constructor, reference_weights(cls, constructor, seed), inputs), kwargs,
                probe="module")


def _shape_text(x) -> str:
    if isinstance(x, torch.Tensor):
        kind = "ids" if not x.is_floating_point() else x.dtype
        return f"{tuple(x.shape)} {kind}".replace("torch.", "")
    return short_repr(x, 40)


@dataclass(frozen=True)
class ModelExercise(Exercise):
    """An exercise whose cases go through the `module`, `language_model` or `training_step`
    probe: the call the learner reads is described from the case, since its arguments are
    not the learner's call's arguments one by one.

    not_built_from: the course's classes (qualified names) that the learner's module may not
    be, inherit from or contain: `class GPT(gptcourse.model.GPT): pass` writes nothing.
    """

    not_built_from: tuple[str, ...] = ()

    def judge(self, cases: Sequence[Case], outcomes: Sequence[Outcome]) -> CheckResult:
        for outcome in outcomes:
            used = [name for name in _report(outcome).get(CLASSES) or []
                    if name in self.not_built_from]
            if used:
                return CheckResult(
                    exercise=self.id, title=self.title, status=FAILED, points=self.points,
                    message=f"`{self.name}` is, or is built from, the course's own "
                            f"{', '.join(used)}: this exercise counts only your own code.",
                    hint=f"Write `class {self.name}(nn.Module)` yourself; the course's class "
                         f"is there to compare with, not to hand in.")
        return super().judge(cases, outcomes)

    def difference(self, expected: Any, got: Any) -> str | None:
        # which course classes a module is built of is judged above, not compared
        if isinstance(expected, dict) and isinstance(got, dict):
            expected = {k: v for k, v in expected.items() if k != CLASSES}
            got = {k: v for k, v in got.items() if k != CLASSES}
        return super().difference(expected, got)

    def call_text(self, case: Case) -> str:
        if case.probe == "module":
            constructor, _, inputs = case.args
            built = ", ".join(f"{k}={v!r}" for k, v in constructor.items())
            given = ", ".join(_shape_text(x) for x in inputs)
            extra = "".join(f", {k}={_shape_text(v)}" for k, v in case.kwargs.items()
                            if k != "causal_from")
            return (f"{self.name}({built}) holding the reference's weights, then "
                    f"forward({given}{extra})")
        if case.probe == "language_model":
            table, *rest = case.args
            names = ("idx", "max_new_tokens")
            parts = [f"{n}={short_repr(v, 70)}" for n, v in zip(names, rest)]
            parts += [f"{k}={v!r}" for k, v in case.kwargs.items()
                      if k not in ("block_size", "generator")]
            if "generator" in case.kwargs:
                parts.append(f"generator=torch.Generator().manual_seed({case.kwargs['generator']})")
            return (f"{self.name}(model, {', '.join(parts)}) with a small test model "
                    f"(V={table.size(0)}, block_size={case.kwargs['block_size']})")
        if case.probe == "training_step":
            table, block_size, batches, lr, grad_clip = case.args
            x, _ = batches[0]
            return (f"{len(batches)} calls of {self.name}(model, optimizer, x, y, lr={lr}, "
                    f"grad_clip={grad_clip}) with a small test model (V={table.size(0)}, "
                    f"block_size={block_size}), an SGD optimiser created with "
                    f"lr={case.kwargs.get('initial_lr', 0.5)}, and x, y of shape "
                    f"{tuple(x.shape)}")
        return super().call_text(case)


# --- hints shared by the class exercises ----------------------------------------------------

def weight_names(names: str) -> Mistake:
    """The learner's module names its parts otherwise: the probe's message lists the names;
    the hint says which the lesson asks for."""
    return Mistake(f"The weights load by name, so your class must name its parts as the "
                   f"lesson does: {names}.", symptom=error_says("do not fit your module"))


def _report(outcome: Outcome) -> dict:
    return outcome.value if isinstance(outcome.value, dict) else {}


def future_leak(hint: str) -> Mistake:
    """The causality probe: an earlier position changed when only later tokens did."""
    return Mistake(hint, symptom=lambda case, outcome: _report(outcome).get(CAUSAL) is False)


def not_a_module_hint(name: str) -> Mistake:
    return Mistake(f"`{name}` must be a class: `class {name}(nn.Module):` with "
                   f"`super().__init__()` first in its __init__.",
                   symptom=error_says("should make a torch.nn.Module",
                                      "before Module.__init__() call"))
