"""Probes: how a case calls a function when a plain call does not show enough.

A case names its probe (`Case(..., probe="gradients")`); `run_cases` uses it on the learner's
function and the judge uses the same probe on the reference, so both are seen alike. Probes
run in the learner's process when grading, so this module imports no reference code.
"""

from __future__ import annotations

from typing import Any, Callable


def plain(fn: Callable, args: tuple, kwargs: dict) -> Any:
    return fn(*args, **kwargs)


def gradients(fn: Callable, args: tuple, kwargs: dict) -> tuple[Any, tuple]:
    """(fn's output, the gradient of a fixed weighted sum of it with respect to each floating
    tensor argument). The weights come from a generator seeded by the output's shapes, so the
    learner's function and the reference are weighed alike; a gradient that does not reach an
    argument comes back as None."""
    import torch

    inputs = [a for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()]
    for tensor in inputs:
        tensor.requires_grad_(True)
    output = fn(*args, **kwargs)
    outputs = [o for o in (output if isinstance(output, (tuple, list)) else [output])
               if isinstance(o, torch.Tensor) and o.is_floating_point()]
    if not outputs:
        raise TypeError(f"expected tensor output(s), got {type(output).__name__}")
    generator = torch.Generator().manual_seed(sum(o.numel() for o in outputs))
    # Weights in [-1, 1] keep each gradient within the size of the function's own derivative,
    # so a tolerance that fits the values fits the gradients too.
    loss = sum((o * (2 * torch.rand(o.shape, generator=generator, dtype=o.dtype) - 1)).sum()
               for o in outputs)
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    detach = lambda t: t.detach() if isinstance(t, torch.Tensor) else t  # noqa: E731
    shown = tuple(detach(o) for o in output) if isinstance(output, (tuple, list)) \
        else detach(output)
    return shown, tuple(g if g is None else g.detach() for g in grads)


def seeded(fn: Callable, args: tuple, kwargs: dict) -> Any:
    """fn with kwargs["generator"], given as a seed, turned into a torch.Generator seeded with
    it. The case stays plain data (a Generator cannot cross to a grader, and the call advances
    it, which is its job, not a change to the caller's data); the same seed gives the learner's
    function and the reference the same random numbers."""
    import torch

    kwargs = {**kwargs, "generator": torch.Generator().manual_seed(kwargs["generator"])}
    return fn(*args, **kwargs)


def raises(fn: Callable, args: tuple, kwargs: dict) -> tuple[str, Any]:
    """("raised", the exception's type name) when fn raises, else ("returned", its value): for
    inputs that must be refused with an error, a refusal is an answer to compare. A stub's
    NotImplementedError passes through, so an unwritten function is still "not attempted"."""
    try:
        return "returned", fn(*args, **kwargs)
    except NotImplementedError:
        raise
    except Exception as exc:
        return "raised", type(exc).__name__


PROBES: dict[str, Callable[[Callable, tuple, dict], Any]] = {
    "plain": plain,
    "raises": raises,
    "gradients": gradients,
    "seeded": seeded,
}
