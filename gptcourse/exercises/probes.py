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
    # so a tolerance that fits the values fits the gradients too. They are drawn in float32
    # whatever the output's dtype, so that a float64 output (a harmless dtype) is weighed alike.
    loss = sum((o * (2 * torch.rand(o.shape, generator=generator).to(o.dtype) - 1)).sum()
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


# --- classes: the learner's nn.Module, given the reference's weights -------------------------

def _one_thread(probe: Callable) -> Callable:
    """The probe run on one torch thread. Its tensors are tiny: with more threads, each
    operation waits for threads to meet, which on a busy computer made a check ten times
    slower (measured: a GPT check 3.8 s on 2 threads, 0.4 s on 1, under load)."""
    import functools

    @functools.wraps(probe)
    def run(fn: Callable, args: tuple, kwargs: dict) -> Any:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return probe(fn, args, kwargs)
        finally:
            torch.set_num_threads(threads)
    return run


class WeightNamesDiffer(Exception):
    """The learner's module cannot hold the case's weights: names (or shapes) differ. Its
    message lists them, in place of load_state_dict's traceback."""


CAUSAL = "earlier positions unchanged when a later token changes"
CLASSES = "the course's classes it is built from"


def _weighted_sum(outputs: list, seed: int):
    """A fixed weighted sum of the floating tensors in `outputs`, for gradients that every
    entry of them reaches. Weights in [-1, 1] from a generator seeded alike for the learner's
    function and the reference."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    return sum((o * (2 * torch.rand(o.shape, generator=generator, dtype=o.dtype) - 1)).sum()
               for o in outputs)


def _loaded(cls: Callable, constructor: dict, weights: dict):
    """cls(**constructor) in the weights' dtype, holding `weights` (strictly)."""
    import torch

    module = cls(**constructor)
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"{getattr(cls, '__name__', cls)}(...) should make a torch.nn.Module "
                        f"(class ...(nn.Module)), got {type(module).__name__}")
    own = module.state_dict()
    missing = [name for name in weights if name not in own]
    unexpected = [name for name in own if name not in weights]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"your module has no {', '.join(missing)}")
        if unexpected:
            parts.append(f"it has {', '.join(unexpected)}, which the reference does not")
        raise WeightNamesDiffer(
            f"the reference's weights do not fit your module: {'; '.join(parts)}. Name the "
            f"parts as the lesson does, so that the weights load by name.")
    wrong = [f"{name} is {tuple(own[name].shape)}, expected {tuple(t.shape)}"
             for name, t in weights.items() if tuple(own[name].shape) != tuple(t.shape)]
    if wrong:
        raise WeightNamesDiffer(f"the reference's weights do not fit your module: "
                                f"{'; '.join(wrong)}.")
    dtype = next(iter(weights.values())).dtype
    module = module.to(dtype)
    module.load_state_dict(weights, strict=True)
    return module


def module(cls: Callable, args: tuple, kwargs: dict) -> dict:
    """A class exercise: `cls(**constructor)` loads the case's weights (plain tensors by name,
    float64), runs forward on the case's input, and the probe reports what training and a GPT
    depend on: the output, the gradients of a fixed weighted sum of it with respect to a
    floating input and to every weight (by its name in the state dict, so a tied weight shows
    the sum of both uses), and, with `causal_from`, whether the outputs before that position
    stay the same when the input from there on changes.

    args: (constructor: dict, weights: dict, inputs: tuple); kwargs: {"causal_from": t} and,
    for models, {"targets": ...} passed on to forward.
    """
    import torch

    constructor, weights, inputs = args
    causal_from = kwargs.get("causal_from")
    extra = {k: v for k, v in kwargs.items() if k != "causal_from"}
    model = _loaded(cls, constructor, weights)
    model.train()  # no dropout in the course's modules; train mode is what training sees
    inputs = tuple(x.clone().requires_grad_(True) if x.is_floating_point() else x
                   for x in inputs)
    output = model(*inputs, **extra)
    outputs = [o for o in (output if isinstance(output, (tuple, list)) else [output])
               if isinstance(o, torch.Tensor) and o.is_floating_point()]
    report: dict = {"output": _detached(output), CLASSES: _course_classes(model)}
    if not outputs:
        return report
    floating = [x for x in inputs if x.is_floating_point()]
    named = dict(model.named_parameters(remove_duplicate=False))
    grads = torch.autograd.grad(_weighted_sum(outputs, sum(o.numel() for o in outputs)),
                                floating + list(named.values()), allow_unused=True)
    if floating:
        report["gradient of the input"] = _detached(grads[0])
    report["gradients of the weights"] = {name: _detached(g) for name, g in
                                          zip(named, grads[len(floating):])}
    if causal_from is not None:
        report[CAUSAL] = _earlier_unchanged(model, inputs[0], causal_from)
    return report


def _course_classes(model) -> list[str]:
    """The course's classes that the module is, inherits from or is built of, by qualified
    name: the judge refuses an exercise answered by the course's own class."""
    return sorted({f"{c.__module__}.{c.__qualname__}" for m in model.modules()
                   for c in type(m).__mro__ if c.__module__.startswith("gptcourse.")})


def _earlier_unchanged(model, x, t: int) -> bool:
    """Whether model(x)'s positions before t stay the same when x changes from t on."""
    import torch

    with torch.no_grad():
        changed = x.detach().clone()
        if changed.is_floating_point():
            changed[:, t:] = changed[:, t:] * -3.0 + 1.0
        else:  # token ids: other ids among those already there, so all stay in the vocabulary
            changed[:, t:] = (changed[:, t:] + 1) % (int(x.max()) + 1)
        first, second = model(x.detach()), model(changed)
        first = first[0] if isinstance(first, (tuple, list)) else first
        second = second[0] if isinstance(second, (tuple, list)) else second
        return bool(torch.allclose(first[:, :t], second[:, :t], rtol=1e-9, atol=1e-12))


def _detached(x: Any) -> Any:
    if isinstance(x, (tuple, list)):
        return type(x)(_detached(v) for v in x)
    return x.detach() if hasattr(x, "detach") and hasattr(x, "requires_grad") else x


# --- a stand-in language model, built here from plain data -----------------------------------

def table_model(table, block_size: int):
    """A tiny language model made from a table of logits, for checking loops that drive a
    model (generate, train_step) without any of the course's model code in this process.

    table: (V, block_size, V) float. The logits after a window of tokens are
    table[last token, position of the last token] plus a bonus of 1.5 for the token that
    opened the window, so what the window starts with matters as much as where it ends.
    Its forward follows the course's convention, (logits (B, T, V), loss or None), and
    refuses more than block_size tokens, as a GPT's position table does.
    """
    import torch
    from torch import nn

    class Config:
        pass

    class TableModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table = nn.Parameter(table.clone())
            self.config = Config()
            self.config.vocab_size, self.config.block_size = table.size(0), block_size

        def forward(self, idx, targets=None):
            B, T = idx.shape
            if T > block_size:
                raise ValueError(f"{T} tokens do not fit in the context of "
                                 f"block_size={block_size}; crop the input to its last "
                                 f"{block_size} tokens")
            logits = self.table[idx, torch.arange(T)]  # (B, T, V)
            opener = nn.functional.one_hot(idx[:, :1], table.size(0)).to(logits.dtype)
            logits = logits + 1.5 * opener  # (B, 1, V) broadcast over T
            if targets is None:
                return logits, None
            return logits, nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())

    return TableModel()


def language_model(fn: Callable, args: tuple, kwargs: dict) -> dict:
    """fn(model, idx, max_new_tokens, ...) with model the table model of args[0] (the table)
    and kwargs["block_size"], and kwargs["generator"] given as a seed (see `seeded`). The
    call is made twice with the same seed: both must give the same ids."""
    import torch

    table, *rest = args
    kwargs = dict(kwargs)
    block_size, seed = kwargs.pop("block_size"), kwargs.pop("generator", None)

    def once():
        model = table_model(table, block_size)
        extra = {} if seed is None else {"generator": torch.Generator().manual_seed(seed)}
        return fn(model, *rest, **kwargs, **extra)

    first = once()
    return {"ids": first, "the same ids again from the same seed": _same(first, once())}


def _same(a: Any, b: Any) -> bool:
    import torch

    return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and \
        a.shape == b.shape and bool(torch.equal(a, b))


def training_step(fn: Callable, args: tuple, kwargs: dict) -> dict:
    """fn(model, optimizer, x, y, lr, grad_clip) for `steps` steps on the table model of
    args[0], with an SGD optimiser (momentum 0.9) created at another learning rate than the
    case's, so a step that never sets it shows. Reports the returned values, their type,
    and the weights after the steps."""
    import torch

    table, block_size, batches, lr, grad_clip = args
    model = table_model(table, block_size)
    optimizer = torch.optim.SGD(model.parameters(), lr=kwargs.get("initial_lr", 0.5),
                                momentum=0.9)
    returned, kinds = [], []
    for x, y in batches:
        value = fn(model, optimizer, x, y, lr, grad_clip)
        # numpy's float64 is a float too; a tensor, even of one number, is not
        kinds.append("float" if isinstance(value, float) else type(value).__name__)
        returned.append(float(value) if isinstance(value, (float, torch.Tensor))
                        and getattr(value, "numel", lambda: 1)() == 1 else value)
    return {"type of what it returns": kinds, "losses it returns": returned,
            "weights after the steps": model.table.detach().clone()}


PROBES: dict[str, Callable[[Callable, tuple, dict], Any]] = {
    "plain": plain,
    "raises": raises,
    "gradients": gradients,
    "seeded": seeded,
    "module": _one_thread(module),
    "language_model": _one_thread(language_model),
    "training_step": _one_thread(training_step),
}
