"""Lesson 07, pretraining: teach the GPT to predict the next token of real text.

Pretraining has one objective only: at every position of a window of text, give the next token
a high probability. Everything else in this module serves that objective:

1. batches: random windows of the token stream, and the same windows shifted by one token as
   the targets (`get_batch`);
2. the loss: cross-entropy, the mean of -log p(right token) over the positions that count
   (`cross_entropy`);
3. the optimiser: AdamW, with weight decay on the weight matrices only (`make_optimizer`);
4. the learning rate: a linear warm-up, then a cosine decay to a floor (`lr_at`);
5. the loop: step, clip the gradient, log, evaluate on the validation split, sample, and stop
   cleanly when interrupted (`train`), keeping everything in a `TrainingRun` that
   `gptcourse.checkpoint` saves and restores.

Shapes: B batch, T tokens per window (block_size), V vocabulary size.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from torch import nn

from gptcourse import distributed
from gptcourse.model import GPT, GPTConfig
from gptcourse.tokenizer import Tokenizer

IGNORE_INDEX = -100  # a target position holding this is left out of the loss (lessons 08, 09)


# --- device ----------------------------------------------------------------------------------

def pick_device(requested: str | None = None) -> torch.device:
    """The device to train on: `requested` when given ("cpu", "cuda", "cuda:1", "mps"),
    otherwise CUDA when present and the CPU when not.

    Apple's MPS is used only when asked for by name: learners of other courses report wrong
    results on it, and a CPU run is correct everywhere. Under torchrun, each process's CUDA
    is its own GPU, cuda:LOCAL_RANK.
    """
    gpu = distributed.local_rank()  # None for a single process: plain "cuda", as always
    if requested in (None, "auto"):
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda") if gpu is None else torch.device("cuda", gpu)
    device = torch.device(requested)
    if device.type == "cuda" and device.index is None and gpu is not None:
        device = torch.device("cuda", gpu)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {requested!r} asked for, but torch sees no CUDA GPU here; "
                         f"use the CPU (device='cpu')")
    if device.type == "mps" and not (torch.backends.mps.is_available()):
        raise ValueError(f"device {requested!r} asked for, but Apple's MPS is not available "
                         f"here; use the CPU (device='cpu')")
    return device


# --- the lesson's functions ------------------------------------------------------------------

def get_batch(data: torch.Tensor, block_size: int, batch_size: int,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random training windows: x and y, each (batch_size, block_size) token ids.

    data: the token stream, a LongTensor (N,). Each row of x is a window of block_size
    consecutive tokens, data[s : s + block_size], and the row of y is the same window shifted
    by one, data[s + 1 : s + 1 + block_size]: y[b, t] is the token that follows x[b, :t + 1].
    The starts s are drawn with

        torch.randint(0, len(data) - block_size, (batch_size,), generator=generator)

    so every start from 0 to N - block_size - 1 is possible: the last window's target ends on
    the stream's last token.
    """
    if len(data) <= block_size:
        raise ValueError(f"need more than block_size={block_size} tokens to cut a window and "
                         f"its shifted targets, got {len(data)}")
    starts = torch.randint(0, len(data) - block_size, (batch_size,), generator=generator)
    offsets = torch.arange(block_size)
    x = data[starts[:, None] + offsets]  # (B, T)
    y = data[starts[:, None] + offsets + 1]  # (B, T), one token further on
    return x, y


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                  ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """The mean of -log p(target) over the positions whose target is not ignore_index.

    logits: (B, T, V) scores; targets: (B, T) token ids. Returns a scalar. log p comes from
    log_softmax over the vocabulary, the last axis; it subtracts the logsumexp, so large scores
    do not overflow. Ignored positions count neither in the sum nor in the number divided by.
    """
    log_probs = torch.log_softmax(logits, dim=-1)  # (B, T, V)
    keep = targets != ignore_index  # (B, T)
    safe = torch.where(keep, targets, 0)  # any valid index; these positions are dropped below
    picked = log_probs.gather(-1, safe.unsqueeze(-1)).squeeze(-1)  # (B, T)
    return -(picked * keep).sum() / keep.sum()


def lr_at(step: int, warmup: int, max_steps: int, max_lr: float, min_lr: float) -> float:
    """The learning rate at `step` (counted from 0): linear warm-up, cosine decay, floor.

    Steps 0 .. warmup - 1 rise in a straight line to max_lr: step s gets
    max_lr · (s + 1) / warmup, so the first step already moves and the last warm-up step uses
    max_lr. From warmup to max_steps the rate follows half a cosine from max_lr down to min_lr,
    reaching min_lr exactly at max_steps; after that it stays at min_lr.
    """
    if step < warmup:
        return max_lr * (step + 1) / warmup
    if step >= max_steps:
        return min_lr
    progress = (step - warmup) / (max_steps - warmup)  # 0 → 1
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
               y: torch.Tensor, lr: float, grad_clip: float) -> float:
    """One step of training: returns the batch's loss as a Python float.

    x, y: (B, T) token ids and their targets; `model` maps (x, y) to (logits, loss). The
    step sets every parameter group's learning rate to lr, zeroes the gradients left by the
    last step (backward adds to them), computes the loss, backpropagates, clips the
    gradient's overall norm to grad_clip (one unlucky batch cannot throw the weights far) and
    lets the optimiser update the weights.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    _, loss = model(x, y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()


# --- the optimiser ---------------------------------------------------------------------------

def make_optimizer(model: nn.Module, lr: float, weight_decay: float,
                   betas: tuple[float, float] = (0.9, 0.95)) -> torch.optim.AdamW:
    """AdamW with weight decay on the weight matrices (and embeddings) only.

    Decay pulls weights towards zero so that no single weight grows large; for the biases and
    the LayerNorm gains, which scale and shift rather than mix, it would only get in the way.
    """
    params = list(model.parameters())  # the tied head's matrix appears once
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=lr, betas=betas)


# --- a training run --------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainSettings:
    """How to train: the run's settings, saved with every checkpoint.

    steps is the length of the learning-rate schedule; a run interrupted before it ends can be
    resumed to it. Every eval_every steps the loss is measured on eval_batches fixed windows of
    each split and, with a sample_prompt, a sample of sample_tokens tokens is written.
    """

    steps: int = 600
    batch_size: int = 16
    max_lr: float = 2e-3
    min_lr: float = 2e-4
    warmup: int = 50
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 50
    eval_batches: int = 4
    sample_prompt: str = "Once upon a time"
    sample_tokens: int = 48
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every", "eval_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainSettings.{name} must be at least 1, "
                                 f"got {getattr(self, name)}")
        if not 0 <= self.warmup <= self.steps:
            raise ValueError(f"warmup must lie between 0 and steps={self.steps}, "
                             f"got {self.warmup}")
        if not 0 <= self.min_lr <= self.max_lr:
            raise ValueError(f"need 0 <= min_lr <= max_lr, got {self.min_lr} and {self.max_lr}")

    def lr(self, step: int) -> float:
        return lr_at(step, self.warmup, self.steps, self.max_lr, self.min_lr)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainingRun:
    """Everything a run needs to continue exactly where it stopped: the model, its tokenizer,
    the settings, the optimiser (its moment estimates), the generator that draws the batches,
    the number of steps done, and the log (one row per evaluation)."""

    model: GPT
    tokenizer: Tokenizer
    settings: TrainSettings
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    step: int = 0
    log: list[dict] = field(default_factory=list)
    seconds: float = 0.0  # training time so far, over all sessions of the run

    @classmethod
    def start(cls, tokenizer: Tokenizer, settings: TrainSettings,
              config: GPTConfig | None = None, device: str | None = None) -> "TrainingRun":
        """A fresh run: a new model (config, by default the course model's shape for this
        tokenizer's vocabulary) initialised from settings.seed, on `device` (see
        `pick_device`)."""
        config = config or GPTConfig(vocab_size=tokenizer.vocab_size)
        if config.vocab_size < tokenizer.vocab_size:
            raise ValueError(f"the model's vocab_size={config.vocab_size} is smaller than the "
                             f"tokenizer's {tokenizer.vocab_size} tokens")
        torch.manual_seed(settings.seed)  # the same seed gives the same initial weights
        model = GPT(config).to(pick_device(device))
        optimizer = make_optimizer(model, settings.max_lr, settings.weight_decay)
        return cls(model, tokenizer, settings, optimizer,
                   torch.Generator().manual_seed(settings.seed))

    @property
    def device(self) -> torch.device:
        return self.model.wte.weight.device

    @property
    def tokens_per_step(self) -> int:
        return self.settings.batch_size * self.model.config.block_size

    def sample(self, max_new_tokens: int | None = None, prompt: str | None = None) -> str:
        """The prompt continued by the model, sampled with a fixed seed, so that samples at
        different steps differ only by what the model has learned."""
        prompt = self.settings.sample_prompt if prompt is None else prompt
        return sample_text(self.model, self.tokenizer, prompt,
                           max_new_tokens or self.settings.sample_tokens, seed=self.settings.seed)


def encode_text(tokenizer: Tokenizer, text: str) -> torch.Tensor:
    """The token stream of `text`, a LongTensor (N,)."""
    return torch.tensor(tokenizer.encode_ordinary(text), dtype=torch.long)


def check_training_text(train_text: str, val_text: str, block_size: int) -> None:
    """Refuse, before a tokenizer is trained, text that cannot make a training run: NUL
    characters (a binary file, not text), or a split of at most block_size bytes (a byte-level
    token covers at least one byte, so such a split can never hold a window and its targets).
    """
    if "\x00" in train_text or "\x00" in val_text:
        raise ValueError("the text holds NUL characters, so it is a binary file, not text: "
                         "train on a UTF-8 text file")
    for name, text in (("training", train_text), ("validation", val_text)):
        n_bytes = len(text.encode("utf-8"))
        if n_bytes <= block_size:
            raise ValueError(f"the {name} split has only {n_bytes:,} bytes, so fewer than the "
                             f"{block_size + 1} tokens one window of block_size={block_size} "
                             f"and its targets need: give a longer text (the validation split "
                             f"is its last tenth)")


def check_token_counts(train_data: torch.Tensor, val_data: torch.Tensor,
                       block_size: int) -> None:
    """Both token streams, (N,) and (M,), must be longer than block_size, or no window and its
    shifted targets can be cut from them: checked before training, not at the first batch."""
    for name, data in (("training", train_data), ("validation", val_data)):
        if len(data) <= block_size:
            raise ValueError(f"the {name} split is only {len(data):,} tokens long, but one "
                             f"window of block_size={block_size} and its targets need "
                             f"{block_size + 1}: give a longer text")


def sample_text(model: GPT, tokenizer: Tokenizer, prompt: str, max_new_tokens: int,
                temperature: float = 0.8, top_k: int | None = 40, seed: int = 0) -> str:
    """`prompt` and its continuation, sampled with a generator seeded by `seed`."""
    device = model.wte.weight.device
    ids = torch.tensor([tokenizer.encode_ordinary(prompt)], dtype=torch.long, device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()
    out = model.generate(ids, max_new_tokens, temperature=temperature, top_k=top_k,
                         generator=generator)
    model.train(was_training)
    return tokenizer.decode(out[0].tolist())


@torch.no_grad()
def estimate_loss(model: GPT, data: torch.Tensor, batch_size: int, n_batches: int,
                  seed: int = 0) -> float:
    """The mean loss on n_batches windows of `data` drawn with `seed`: the same windows at
    every call, so that changes in the curve are the model's, not the windows'."""
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    device = model.wte.weight.device
    total = 0.0
    for _ in range(n_batches):
        x, y = get_batch(data, model.config.block_size, batch_size, generator)
        total += model(x.to(device), y.to(device))[1].item()
    model.train(was_training)
    return total / n_batches


def train(run: TrainingRun, train_data: torch.Tensor, val_data: torch.Tensor, *,
          until: int | None = None, progress: bool = True, time_limit: float | None = None,
          on_eval: Callable[[TrainingRun], None] | None = None,
          save: Callable[[TrainingRun], None] | None = None) -> TrainingRun:
    """Train `run` from run.step to `until` (by default the end of its schedule), or for at
    most `time_limit` seconds (a budget for slow machines: the run stops as if interrupted,
    and the progress bar's time left counts it).

    Each step: a batch, the loss, the gradient, clipped to norm settings.grad_clip, and an
    AdamW step at the scheduled learning rate. Every eval_every steps, at the end and before
    the first step, a row joins run.log with the losses on both splits and a sample, then
    on_eval(run) is called (a live plot) and save(run) (a checkpoint). Stopping the kernel
    (the stop button, or Ctrl-C) ends the loop after the step under way: the model keeps
    what it learned, a row is logged and `save` is called, so the run can be resumed; a
    second press raises TrainingAborted at once, saving nothing. A loss that is not finite
    raises a FloatingPointError before anything is saved, so a diverged run never overwrites
    a good checkpoint.

    Started by torchrun (`torchrun --nproc_per_node=N ...`), the N processes train one model
    together (see `gptcourse.distributed`): each takes its slice of every batch, the gradients
    are averaged, and only rank 0 shows progress and calls on_eval and save. run.model stays
    the plain model, so a saved checkpoint loads anywhere.
    """
    settings, model, optimizer = run.settings, run.model, run.optimizer
    until = settings.steps if until is None else min(until, settings.steps)
    device = run.device
    replicas = distributed.join(device)  # None for one process: the loop as it always was
    forward = model
    if replicas is not None:
        replicas.check_batch_size(settings.batch_size)
        if time_limit is not None:  # each process's clock would stop it after another step
            raise ValueError("time_limit works in one process only; under torchrun, stop the "
                             "run with Ctrl-C and resume it")
        forward = replicas.wrap(model)
        if not replicas.is_main:
            progress, on_eval, save = False, None, None
    model.train()
    started = time.perf_counter()
    seconds_before, step_before = run.seconds, run.step
    last_loss = None  # the latest batch's loss, once there is one
    budget_end = None if time_limit is None else started + time_limit
    out_of_time = False
    heard = (lambda: _heard(bar)) if replicas is None or replicas.is_main else None
    with _progress_bar(run.step, until, disable=not progress, budget_end=budget_end) as bar, \
            StopRequest(on_request=heard, on_abort=lambda: _aborted(run)) as stop:
        if replicas is not None:  # all stop after the same step, or one would wait forever
            stop = distributed.SharedStop(stop, replicas)
        if run.step == 0 and not run.log:  # where the curve starts: about ln V
            _evaluate(run, train_data, val_data, None, on_eval, save)
        while run.step < until and not stop.requested:
            if time_limit is not None and time.perf_counter() - started > time_limit:
                out_of_time = True
                if not run.log or run.log[-1]["step"] != run.step:
                    _evaluate(run, train_data, val_data, last_loss, on_eval, save)
                break
            lr = settings.lr(run.step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = get_batch(train_data, model.config.block_size, settings.batch_size,
                             run.generator)
            if replicas is not None:
                x, y = replicas.own_rows(x), replicas.own_rows(y)
            _, loss = forward(x.to(device), y.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            # the whole batch's loss, so that all replicas log it and stop on a NaN together
            last_loss = _finite(loss.item() if replicas is None else replicas.mean(loss.item()),
                                run.step)
            optimizer.step()
            run.step += 1
            elapsed = time.perf_counter() - started
            run.seconds = seconds_before + elapsed
            tokens_per_second = (run.step - step_before) * run.tokens_per_step / elapsed
            bar.set_postfix(loss=f"{last_loss:.3f}", lr=f"{lr:.2e}",
                            tok_s=f"{tokens_per_second:,.0f}", refresh=False)
            bar.update(1)
            if run.step % settings.eval_every == 0 or run.step == until or stop.requested:
                _evaluate(run, train_data, val_data, last_loss, on_eval, save)
        if (out_of_time or stop.requested) and (replicas is None or replicas.is_main):
            _say_why_it_stopped(bar, run, until,
                                time_limit if out_of_time and not stop.requested else None)
    return run


class TrainingAborted(KeyboardInterrupt):
    """A second stop while training: raised at once, wherever the step was. In a notebook
    it shows as its one-line message, not a traceback through torch's internals."""

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of a traceback
        return [f"{type(self).__name__}: {self}"]


class StopRequest:
    """Inside `with StopRequest() as stop:`, an interrupt (SIGINT: Ctrl-C, or the notebook's
    stop button) sets stop.requested instead of raising KeyboardInterrupt in the middle of an
    optimiser step, which could leave the weights and Adam's moments half updated, and calls
    on_request() at once (to say it was heard). A second interrupt raises TrainingAborted at
    once, with on_abort()'s message. Outside the main thread, where signals cannot be caught,
    interrupts raise as usual.
    """

    def __init__(self, on_request: Callable[[], None] | None = None,
                 on_abort: Callable[[], str] | None = None) -> None:
        self.requested = False
        self.on_request = on_request
        self.on_abort = on_abort  # the abort's message, made when it happens
        self._previous = None

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._note)
        return self

    def _note(self, signum, frame) -> None:
        if self.requested:
            raise TrainingAborted(self.on_abort() if self.on_abort is not None else
                                  "training aborted by a second stop")
        self.requested = True
        if self.on_request is not None:
            self.on_request()

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (a stop button) rather than a terminal (Ctrl-C):
    the two are stopped, and continued, in different words."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and hasattr(shell, "kernel")


def _aborted(run: TrainingRun) -> str:
    return (f"training aborted at step {run.step} by a second stop: the weights may be "
            f"half-way through an update, so start again from a saved checkpoint or a new run")


def _say_why_it_stopped(bar, run: TrainingRun, until: int, budget: float | None) -> None:
    """End the bar calmly, and say why the run ended early (the time budget, when given,
    else a stop request) and what the model keeps."""
    why = "stopped" if budget is None else f"time budget of {budget:g} s reached"
    bar.end_calmly(why)
    then = ", and train(...) again continues from here" if _in_notebook() else ""
    bar.write(f"{why} at step {run.step} of {until}; the model keeps what it learned{then}")


def _heard(bar) -> None:
    """Say at once that a stop was heard: the step under way can take a while to finish."""
    again = "press stop again to abort at once" if _in_notebook() else "Ctrl-C again to abort"
    bar.set_description("stopping", refresh=False)
    bar.write(f"stopping after this step ({again})")
    for stream in (sys.stdout, sys.stderr):
        stream.flush()


def _evaluate(run: TrainingRun, train_data: torch.Tensor, val_data: torch.Tensor,
              last_loss: float | None, on_eval, save) -> None:
    settings = run.settings
    row = {"step": run.step, "tokens": run.step * run.tokens_per_step,
           "lr": settings.lr(max(run.step - 1, 0)), "batch_loss": last_loss,
           "train_loss": estimate_loss(run.model, train_data, settings.batch_size,
                                       settings.eval_batches, seed=settings.seed),
           "val_loss": estimate_loss(run.model, val_data, settings.batch_size,
                                     settings.eval_batches, seed=settings.seed),
           "seconds": round(run.seconds, 2)}
    _finite(row["train_loss"] + row["val_loss"], run.step)
    if settings.sample_prompt:
        row["sample"] = run.sample()
    run.log.append(row)
    if on_eval is not None:
        on_eval(run)
    if save is not None:
        save(run)


def _finite(loss: float, step: int) -> float:
    if not math.isfinite(loss):
        raise FloatingPointError(f"the loss became {loss} at step {step}: training diverged. "
                                 f"Lower max_lr and start again from the last checkpoint.")
    return loss


def _progress_bar(start: int, total: int, disable: bool, budget_end: float | None = None):
    from tqdm.auto import tqdm

    return training_bar(tqdm)(initial=start, total=total, desc="training", unit="step",
                              disable=disable, mininterval=0.5, dynamic_ncols=True,
                              budget_end=budget_end)


def time_left(steps_left: int, seconds_per_step: float | None,
              budget_left: float | None) -> float | None:
    """Seconds until a run ends: when its steps are done or its time budget is spent,
    whichever comes first; None while neither is known (no step timed, no budget)."""
    known = [t for t in (None if seconds_per_step is None else steps_left * seconds_per_step,
                         None if budget_left is None else max(0.0, budget_left))
             if t is not None]
    return min(known) if known else None


def training_bar(base: type) -> type:
    """A tqdm bar class (`base`: tqdm.auto's choice, the terminal's or the notebook's) whose
    time left respects the run's time budget, which ends calmly when a run stops on purpose
    (tqdm's notebook bar turns red whenever it closes short of its total), and which, in a
    notebook, leaves its final state in the saved output rather than its first."""
    from tqdm.notebook import tqdm_notebook

    notebook = issubclass(base, tqdm_notebook)

    class TrainingBar(base):
        def __init__(self, *args, budget_end: float | None = None, **kwargs) -> None:
            self.budget_end = budget_end  # time.perf_counter() at which the budget is spent
            self._shown = None  # the notebook output showing the bar, to update at the end
            if notebook:  # displayed below, with an id, instead of by tqdm
                kwargs["display"] = False
            super().__init__(*args, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} "
                                               "[{elapsed}<{left}, {rate_fmt}{postfix}]",
                             **kwargs)
            if notebook and not self.disable:
                from IPython.display import display

                self._shown = display(self.container, display_id=True)

        @property
        def format_dict(self) -> dict:
            d = super().format_dict
            done, elapsed = d["n"] - d["initial"], d["elapsed"]
            rate = d["rate"] or (done / elapsed if done and elapsed else None)
            budget_left = (None if self.budget_end is None
                           else self.budget_end - time.perf_counter())
            left = time_left(d["total"] - d["n"] if d["total"] else 0,
                             1 / rate if rate else None, budget_left)
            d["left"] = "?" if left is None else self.format_interval(left)
            return d

        def close(self) -> None:
            super().close()
            if self._shown is not None:
                # The widget shows live; a saved notebook keeps its text, written when it was
                # first displayed ("0/300"): rewrite it with the bar as it ends.
                shown, self._shown = self._shown, None
                shown.update(self.container)

        def end_calmly(self, description: str) -> None:
            """Close the bar after a deliberate stop (the budget, the stop button): it keeps
            the steps done, says why it ended, and is not painted as a failure."""
            self.budget_end = None if self.budget_end is None else time.perf_counter()
            self.set_description(description, refresh=False)
            self.close()
            widgets = getattr(self, "container", None)  # tqdm.notebook's (text, bar, text)
            if widgets is not None:
                widgets.children[1].bar_style = ""

    return TrainingBar


# --- pictures --------------------------------------------------------------------------------

def plot_losses(log: list[dict], ax=None, x: str = "step", title: str = ""):
    """Train and validation loss of a run's log against `x` ("step" or "tokens"), with ln V
    marked if the log starts at step 0; returns the Axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.6))
    xs = [row[x] for row in log]
    ax.plot(xs, [row["train_loss"] for row in log], "o-", ms=3, label="train")
    ax.plot(xs, [row["val_loss"] for row in log], "o-", ms=3, label="validation")
    ax.set_xlabel("tokens seen" if x == "tokens" else "step")
    ax.set_ylabel("loss (nats per token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


class LiveLossPlot:
    """A loss plot that redraws itself in a notebook at every evaluation: pass its `update`
    as `on_eval` to `train`. Outside a notebook it draws nothing.

    Its axes are fixed from the first drawing: steps from 0 to the end of the run's schedule,
    loss from 0 to just above the larger of ln V (where an untrained model starts) and the
    highest loss seen. So the first point, alone, sits where it belongs rather than in an
    axis zoomed onto it, and the curve grows into a frame that does not jump.
    """

    def __init__(self, title: str = "loss while training") -> None:
        self.title = title
        self._handle = None

    def draw(self, run: TrainingRun):
        """The figure for `run` as it is now (a matplotlib Figure)."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.5, 3.6))
        plot_losses(run.log, ax=ax, title=f"{self.title} (step {run.step})")
        highest = max([math.log(run.model.config.vocab_size)] +
                      [row[k] for row in run.log for k in ("train_loss", "val_loss")])
        ax.set_xlim(0, max(run.settings.steps, run.step))
        ax.set_ylim(0, math.ceil(highest * 1.1))
        ax.ticklabel_format(useOffset=False)  # ticks read as the values they are
        return fig

    def update(self, run: TrainingRun) -> None:
        import matplotlib.pyplot as plt

        try:
            from IPython.display import display
        except ImportError:
            return
        fig = self.draw(run)
        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)
        plt.close(fig)


def samples_table(log: list[dict], every: int = 1):
    """The samples of a run's log side by side with their step and validation loss: an HTML
    table in a notebook, plain lines elsewhere."""
    rows = [row for row in log if row.get("sample")][::every]
    return _SamplesTable(rows)


class _SamplesTable:
    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def __repr__(self) -> str:
        return "\n".join(f"step {r['step']:>5}  val {r['val_loss']:.2f}  {r['sample']!r}"
                         for r in self.rows)

    def _repr_html_(self) -> str:
        import html

        cells = "".join(
            f"<tr><td style='text-align:right'>{r['step']}</td>"
            f"<td style='text-align:right'>{r['tokens']:,}</td>"
            f"<td style='text-align:right'>{r['val_loss']:.2f}</td>"
            f"<td style='text-align:left;white-space:pre-wrap;font-family:monospace'>"
            f"{html.escape(r['sample'])}</td></tr>" for r in self.rows)
        return ("<table><tr><th>step</th><th>tokens seen</th><th>val loss</th>"
                f"<th style='text-align:left'>sample</th></tr>{cells}</table>")
