"""Checks for lesson 07, pretraining."""

from __future__ import annotations

import math

import torch

from gptcourse import pretraining
from gptcourse.exercises.compare import Tolerance
from gptcourse.exercises.contract import NO_GRADIENT, Case, Exercise, Mistake, error_says
from gptcourse.exercises.modules import ModelExercise
from gptcourse.exercises.registration import register


# --- get_batch -------------------------------------------------------------------------------

def _stream(n: int) -> torch.Tensor:
    """Token ids that differ from their neighbours, so that a window shifted by one is never
    mistaken for the window itself: 0..n-1 scrambled by a multiplier coprime with 1000."""
    return (torch.arange(n) * 37 + 11) % 1000


def _get_batch_cases(seed: int) -> list[Case]:
    # The generator arrives as a seed that the "seeded" probe turns into a torch.Generator, so
    # the learner's function and the reference draw the same starts.
    return [
        Case("the shortest stream: block_size + 1 tokens, a single possible window",
             (_stream(9), 8, 3), {"generator": seed}, probe="seeded"),
        Case("a stream of 40 tokens, 4 windows of 6", (_stream(40), 6, 4),
             {"generator": seed + 1}, probe="seeded"),
        Case("12 tokens, windows of 10 (starts 0 or 1 only), batch of 16",
             (_stream(12), 10, 16), {"generator": seed + 2}, probe="seeded"),
        Case("1000 tokens, batch 8 of windows of 32", (_stream(1000), 32, 8),
             {"generator": seed + 3}, probe="seeded"),
    ]


def _draw(data, block_size, batch_size, generator, *, high=None):
    high = len(data) - block_size if high is None else high
    return torch.randint(0, high, (batch_size,), generator=generator)


def _batch(data, block_size, batch_size, generator, *, shift=1, **draw):
    starts = _draw(data, block_size, batch_size, generator, **draw)
    x = torch.stack([data[s:s + block_size] for s in starts])
    y = torch.stack([data[s + shift:s + shift + block_size] for s in starts])
    return x, y


def _other_valid_windows(case: Case, outcome) -> bool:
    """The learner's batch is made of right windows and right targets, but not the ones the
    case's generator draws: the starts came from somewhere else."""
    data, block_size, batch_size = case.args
    try:
        x, y = outcome.value
        if x.shape != (batch_size, block_size) or y.shape != x.shape:
            return False
        windows = data.unfold(0, block_size + 1, 1)  # every possible (window, target) pair
        pairs = torch.cat([x, y[:, -1:]], dim=1)  # (B, T + 1)
        return bool((x[:, 1:] == y[:, :-1]).all()) and all(
            bool((windows == row).all(dim=1).any()) for row in pairs)
    except Exception:
        return False


register(Exercise(
    id="pretraining.get_batch",
    title="a batch of windows and their targets",
    points=1,
    reference=pretraining.get_batch,
    make_cases=_get_batch_cases,
    mistakes=(
        Mistake("The targets are the same windows shifted by one token: y = data[s + 1 : s + 1 "
                "+ block_size]. Each position's target is the token that comes after it.",
                wrong=lambda d, T, B, generator: _batch(d, T, B, generator, shift=0)),
        Mistake("A window starting at s needs block_size + 1 tokens (its targets run one "
                "further), so the starts go from 0 to len(data) - block_size - 1: "
                "torch.randint(0, len(data) - block_size, ...), whose upper end is excluded.",
                wrong=lambda d, T, B, generator: _batch(d, T, B, generator,
                                                        high=len(d) - T + 1),
                symptom=error_says("out of bounds", "equal size", "out of range")),
        Mistake("The last window, starting at len(data) - block_size - 1, is never drawn: "
                "torch.randint's upper end is excluded already, so do not subtract 1 again.",
                wrong=lambda d, T, B, generator: _batch(d, T, B, generator, high=len(d) - T - 1),
                symptom=error_says("random_ expects 'from' to be less than 'to'",
                                   "from to be less than to")),
        Mistake("Your windows and targets are right, but not the ones this check draws: take "
                "the starts from the generator you were given, with exactly "
                "torch.randint(0, len(data) - block_size, (batch_size,), generator=generator), "
                "so that the same seed repeats the same batch.",
                symptom=_other_valid_windows),
    ),
    hint="starts = torch.randint(0, len(data) - block_size, (batch_size,), "
         "generator=generator); x rows are data[s : s + block_size], y rows data[s + 1 : s + 1 "
         "+ block_size]; torch.stack them.",
))


# --- cross_entropy ---------------------------------------------------------------------------

def _targets(g: torch.Generator, B: int, T: int, V: int, ignored: float = 0.0) -> torch.Tensor:
    targets = torch.randint(0, V, (B, T), generator=g)
    return torch.where(torch.rand(B, T, generator=g) < ignored, -100, targets)


def _cross_entropy_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    randn = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    confident = torch.zeros(1, 2, 5)
    confident[0, :, 0] = 200.0  # certain of token 0, which is wrong for the first position
    ignore_some = _targets(g, 2, 5, 7, ignored=0.4)
    ignore_some[0, 0], ignore_some[1, 1] = -100, 3  # at least one ignored, at least one kept
    return [
        Case("B=2, T=3, V=5", (randn(2, 3, 5), _targets(g, 2, 3, 5))),
        Case("B=1, T=4, V=10, logits on a large scale", (randn(1, 4, 10) * 8,
                                                         _targets(g, 1, 4, 10))),
        Case("some targets are -100 (ignored)", (randn(2, 5, 7), ignore_some)),
        Case("ignore_index=3: positions whose target is 3 are left out",
             (randn(2, 4, 6), torch.tensor([[3, 1, 3, 0], [5, 3, 2, 3]])), {"ignore_index": 3}),
        Case("a confident, wrong prediction (a logit 200 above the rest)",
             (confident, torch.tensor([[4, 0]]))),
        Case("one row entirely ignored", (randn(2, 3, 4), torch.tensor([[-100] * 3, [1, 2, 3]]))),
        Case("gradients", (randn(2, 3, 5), _targets(g, 2, 3, 5, ignored=0.3)), probe="gradients"),
    ]


def _ce(logits, targets, ignore_index=-100, *, dim=-1, reduce="mean", ignore=True,
        count_ignored=False):
    log_probs = torch.log_softmax(logits, dim=dim)
    keep = targets != ignore_index if ignore else torch.ones_like(targets, dtype=torch.bool)
    picked = log_probs.gather(-1, torch.where(keep, targets, 0).unsqueeze(-1)).squeeze(-1)
    total = -(picked * keep).sum()
    if reduce == "sum":
        return total
    return total / (targets.numel() if count_ignored else keep.sum())


register(Exercise(
    id="pretraining.cross_entropy",
    title="the cross-entropy loss",
    points=1,
    reference=pretraining.cross_entropy,
    make_cases=_cross_entropy_cases,
    tolerance=Tolerance(rtol=1e-5, atol=1e-5),
    mistakes=(
        Mistake("Take the mean over the positions, not the sum: the loss per token stays the "
                "same size whatever the batch and the window.",
                wrong=lambda lg, t, ignore_index=-100: _ce(lg, t, ignore_index, reduce="sum")),
        Mistake("Divide by the number of positions that count, (targets != ignore_index).sum(), "
                "not by all positions: ignored positions must not dilute the mean.",
                wrong=lambda lg, t, ignore_index=-100: _ce(lg, t, ignore_index,
                                                           count_ignored=True)),
        Mistake("Positions whose target equals ignore_index must be left out: mask them with "
                "targets != ignore_index before picking the log-probabilities (an index of "
                "-100 does not exist in the vocabulary).",
                symptom=error_says("out of bounds", "out of range", "Target -100",
                                   "index -100")),
        Mistake("Use the `ignore_index` argument rather than a fixed -100.",
                wrong=lambda lg, t, ignore_index=-100: _ce(lg, t, -100)),
        Mistake("The probabilities are over the vocabulary, the last axis: "
                "log_softmax(logits, dim=-1).",
                wrong=lambda lg, t, ignore_index=-100: _ce(lg, t, ignore_index, dim=1)),
        Mistake("The probabilities are over the vocabulary, the last axis: "
                "log_softmax(logits, dim=-1).",
                wrong=lambda lg, t, ignore_index=-100: _ce(lg, t, ignore_index, dim=0)),
        Mistake("log(softmax(x)) underflows to log(0) = -inf when one logit is far above the "
                "others: use torch.log_softmax, or x - logsumexp(x), which never takes the log "
                "of a tiny number.",
                symptom=lambda case, outcome: outcome.error is None and isinstance(
                    outcome.value, torch.Tensor) and not torch.isfinite(outcome.value).all()),
        NO_GRADIENT,
    ),
    hint="log_probs = torch.log_softmax(logits, dim=-1); pick each target's log-probability "
         "with gather; average -log p over the positions where targets != ignore_index.",
))


# --- lr_at -----------------------------------------------------------------------------------

def _lr_cases(seed: int) -> list[Case]:
    steps = [(0, 10, 100), (4, 10, 100), (9, 10, 100), (10, 10, 100), (37, 10, 100),
             (99, 10, 100), (100, 10, 100), (150, 10, 100), (0, 0, 50), (25, 0, 50),
             (3, 5, 5), (80, 5, 60)]
    max_lr, min_lr = [(6e-4, 6e-5), (1e-3, 0.0), (3e-3, 3e-4)][seed % 3]
    return [Case(f"step {s}, warmup {w}, max_steps {m}", (s, w, m, max_lr, min_lr))
            for s, w, m in steps]


def _lr(step, warmup, max_steps, max_lr, min_lr, *, first=1, floor=True, span=0, to_zero=False):
    if step < warmup:
        return max_lr * (step + first) / warmup
    if floor and step >= max_steps:
        return min_lr
    progress = (step - warmup) / (max_steps - warmup + span)
    low = 0.0 if to_zero else min_lr
    return low + 0.5 * (1 + math.cos(math.pi * progress)) * (max_lr - low)


register(Exercise(
    id="pretraining.lr_at",
    title="warm-up, then cosine decay",
    points=1,
    reference=pretraining.lr_at,
    make_cases=_lr_cases,
    tolerance=Tolerance(rtol=1e-9, atol=1e-12),
    mistakes=(
        Mistake("`lr_at` returns a plain Python number, the kind an optimizer's learning rate "
                "is; yours is a one-number torch tensor, which torch.cos (or any torch "
                "operation) makes, in float32 unless told otherwise. Use math.cos and math.pi, "
                "or turn the result into a number with float(...).",
                symptom=lambda case, outcome: type(outcome.value).__module__.startswith(
                    "torch")),
        Mistake("Warm-up off by one: step s of the warm-up uses max_lr · (s + 1) / warmup, so "
                "step 0 already learns (a rate of 0 would waste it) and step warmup - 1 reaches "
                "max_lr.",
                wrong=lambda *a: _lr(*a, first=0)),
        Mistake("After max_steps the rate stays at min_lr; a cosine left running rises again.",
                wrong=lambda *a: _lr(*a, floor=False)),
        Mistake("The cosine must reach min_lr exactly at max_steps: progress = (step - warmup) / "
                "(max_steps - warmup) runs from 0 to 1.",
                wrong=lambda *a: _lr(*a, span=1)),
        Mistake("The cosine decays to min_lr, not to 0: min_lr + 0.5 · (1 + cos(π · progress)) "
                "· (max_lr - min_lr).",
                wrong=lambda *a: _lr(*a, to_zero=True)),
        Mistake("With warmup = 0 there is no warm-up: check `step < warmup` before dividing "
                "by warmup.", symptom=error_says("division by zero")),
    ),
    hint="step < warmup: max_lr * (step + 1) / warmup; step >= max_steps: min_lr; otherwise "
         "progress = (step - warmup) / (max_steps - warmup) and min_lr + 0.5 * (1 + "
         "math.cos(math.pi * progress)) * (max_lr - min_lr).",
))


# --- train_step: the learner's step ---------------------------------------------------------------

V_TEST, BLOCK_TEST = 8, 4


def _train_step_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(V_TEST, BLOCK_TEST, V_TEST, generator=g)

    def batches(n: int, B: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out = []
        for _ in range(n):
            stream = torch.randint(0, V_TEST, (B, BLOCK_TEST + 1), generator=g)
            out.append((stream[:, :-1], stream[:, 1:]))
        return out

    def case(label, n, B, lr, grad_clip):
        return Case(label, (table, BLOCK_TEST, batches(n, B), lr, grad_clip), probe="training_step")

    return [
        case("3 steps, the gradient clipped hard (grad_clip = 0.05)", 3, 4, 0.1, 0.05),
        case("3 steps, a clip the gradient never reaches", 3, 2, 0.3, 1e6),
        case("one step", 1, 4, 0.2, 0.5),
    ]


def _step(model, optimizer, x, y, lr, grad_clip, *, order="lr zero forward backward clip step",
          returns=lambda loss: loss.item()):
    """train_step with its parts in `order` (some may be missing), for learners' mistakes."""
    loss = None
    for part in order.split():
        if part == "lr":
            for group in optimizer.param_groups:
                group["lr"] = lr
        elif part == "zero":
            optimizer.zero_grad()
        elif part == "forward":
            _, loss = model(x, y)
        elif part == "backward":
            loss.backward()
        elif part == "clip":
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        elif part == "step":
            optimizer.step()
    return returns(loss)


def _wrong_step(**mistake):
    return lambda model, optimizer, x, y, lr, grad_clip: _step(model, optimizer, x, y, lr,
                                                               grad_clip, **mistake)


def _returns_a_tensor(case: Case, outcome) -> bool:
    report = outcome.value if isinstance(outcome.value, dict) else {}
    return "Tensor" in (report.get("type of what it returns") or [])


register(ModelExercise(
    id="pretraining.train_step",
    title="one training step",
    points=2,
    reference=pretraining.train_step,
    make_cases=_train_step_cases,
    mistakes=(
        Mistake("Return the loss as a Python number, loss.item(): a tensor keeps the whole "
                "graph of the step alive, and a list of them fills the memory.",
                symptom=_returns_a_tensor),
        Mistake("Zero the gradients at the start of every step (optimizer.zero_grad()): "
                "backward adds to what is already there, so without it each step's gradient "
                "piles onto all the earlier ones.",
                wrong=_wrong_step(order="lr forward backward clip step")),
        Mistake("The gradient is not clipped when the step uses it: call "
                "torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip) between "
                "backward and step. Clipping after optimizer.step() changes gradients that "
                "have already been used, which is the same as not clipping at all.",
                wrong=_wrong_step(order="lr zero forward backward step")),
        Mistake("Set the learning rate before the step: for group in optimizer.param_groups: "
                "group['lr'] = lr. The optimiser still uses the rate it was created with.",
                wrong=_wrong_step(order="zero forward backward clip step")),
        Mistake("optimizer.step() uses the gradients, so it comes after loss.backward(): "
                "yours steps with the gradients of the batch before.",
                wrong=_wrong_step(order="lr zero forward step backward clip")),
        Mistake("Zeroing the gradients right before optimizer.step() throws this batch's "
                "gradient away: zero them first, before the forward pass.",
                wrong=_wrong_step(order="lr forward backward clip zero step")),
        NO_GRADIENT,
    ),
    hint="set every param group's 'lr'; optimizer.zero_grad(); _, loss = model(x, y); "
         "loss.backward(); clip_grad_norm_(model.parameters(), grad_clip); optimizer.step(); "
         "return loss.item().",
))
