"""Lesson 09's run: the policy optimised with PPO against a learned reward model, on a leash.

One iteration of `ppo_iteration`, in the order of the lesson:

1. **rollouts**: the policy answers each of a few requests K times (`rollouts.sample_answers`,
   with the KV cache);
2. **rewards**: the reward model scores every answer; the policy and the frozen reference (the
   SFT model) give each answer token its log-probability, and `rlhf.kl_penalised_rewards`
   turns these into per-token rewards, the leash on every token and the score on the last;
3. **advantages**: an answer's return (the sum of its rewards) minus the mean return of its
   group of K, the *group baseline*, scaled by the batch's spread, on every token of it;
4. **updates**: a few epochs of `rlhf.ppo_clip_loss` over minibatches of the answers.

The log row of each iteration holds what the lesson plots: the reward model's mean score, the
KL to the reference (nats per answer), and the true score of the hidden labeler
(`gptcourse.data.labeler`), which the policy never sees. With beta = 0 the first can climb
while the last falls: reward hacking.

Shapes: G requests per iteration, K answers each, B = G * K answers, T tokens.
"""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from gptcourse.data.labeler import Labeler, true_score
from gptcourse.data.tasks import Task
from gptcourse.finetuning import PAD
from gptcourse.model import GPT
from gptcourse.pretraining import LiveLossPlot, StopRequest, _progress_bar
from gptcourse.rlhf import (RewardModel, kl_penalised_rewards, ppo_clip_loss,
                            token_logprobs)
from gptcourse.rollouts import Rollout, sample_answers
from gptcourse.tokenizer import Tokenizer


class DivergedError(FloatingPointError):
    """A PPO run that left the region where its figures mean anything: a loss that is not
    finite, or a KL to the reference above PPOSettings.kl_bound."""


@dataclass(frozen=True)
class PPOSettings:
    """One PPO run's settings. beta weighs the KL leash (0: no leash); clip is PPO's epsilon;
    each iteration samples requests_per_batch requests, answers_per_request answers to each
    (the group of the baseline), and makes `epochs` passes over them in minibatches of
    `minibatch` answers. A run whose mean KL per answer exceeds kl_bound nats has diverged."""

    iterations: int = 60
    requests_per_batch: int = 4
    answers_per_request: int = 4
    epochs: int = 2
    minibatch: int = 8
    lr: float = 2e-5
    beta: float = 0.05
    clip: float = 0.2
    max_new_tokens: int = 200
    temperature: float = 1.0
    grad_clip: float = 1.0
    kl_bound: float = 60.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.beta >= 0:
            raise ValueError(f"beta must be >= 0 (it weighs the KL leash), got {self.beta}")
        if not 0 < self.clip < 1:
            raise ValueError(f"clip must be in (0, 1), got {self.clip}")
        if self.answers_per_request < 2:
            raise ValueError(f"answers_per_request must be >= 2: a group baseline compares "
                             f"answers to the same request, got {self.answers_per_request}")
        for name in ("iterations", "requests_per_batch", "epochs", "minibatch",
                     "max_new_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        if not (self.lr > 0 and self.temperature > 0 and self.kl_bound > 0):
            raise ValueError("lr, temperature and kl_bound must be > 0")


@dataclass
class PPORun:
    """A PPO run in progress: the policy being trained, the frozen reference it is leashed
    to, the reward model that scores, the requests it practises on, and the log."""

    policy: GPT
    reference: GPT
    reward_model: RewardModel
    tokenizer: Tokenizer
    tasks: Sequence[Task]
    settings: PPOSettings
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    iteration: int = 0
    log: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    kl_penalised_rewards: Callable[..., torch.Tensor] = kl_penalised_rewards
    ppo_clip_loss: Callable[..., torch.Tensor] = ppo_clip_loss

    @classmethod
    def start(cls, policy: GPT, reward_model: RewardModel, tokenizer: Tokenizer,
              tasks: Sequence[Task], settings: PPOSettings = PPOSettings(), *,
              kl_penalised_rewards: Callable[..., torch.Tensor] = kl_penalised_rewards,
              ppo_clip_loss: Callable[..., torch.Tensor] = ppo_clip_loss) -> "PPORun":
        """A fresh run: the policy is a trainable copy of `policy`, the reference a frozen
        one (neither is `policy` itself, which stays as it was). kl_penalised_rewards and
        ppo_clip_loss are the pieces its iterations use (lesson 09 passes the learner's)."""
        if not tasks:
            raise ValueError("PPO needs requests to practise on; the task list is empty")
        reference = copy.deepcopy(policy).eval().requires_grad_(False)
        reward_model = reward_model.eval().requires_grad_(False)
        policy = copy.deepcopy(policy).train().requires_grad_(True)
        optimizer = torch.optim.AdamW(policy.parameters(), lr=settings.lr, weight_decay=0.0)
        return cls(policy, reference, reward_model, tokenizer, list(tasks), settings,
                   optimizer, torch.Generator().manual_seed(settings.seed),
                   kl_penalised_rewards=kl_penalised_rewards, ppo_clip_loss=ppo_clip_loss)


def answer_logprobs(model: GPT, ids: torch.Tensor) -> torch.Tensor:
    """ids (B, T) -> (B, T): the log-probability under `model` of every token, 0 at position
    0 (see `rlhf.token_logprobs`); multiply by a rollout's mask for the answers' tokens."""
    return token_logprobs(model(ids)[0], ids)


def group_baseline_advantages(returns: torch.Tensor, group: int) -> torch.Tensor:
    """returns (B,), B answers in consecutive groups of `group` answers to one request ->
    (B,): each return minus its group's mean, divided by the batch's standard deviation of
    those differences (1 when they are all 0), so the step size does not depend on the
    reward's scale."""
    if returns.dim() != 1 or len(returns) % group:
        raise ValueError(f"expected returns (B,) in whole groups of {group}, got shape "
                         f"{tuple(returns.shape)}")
    grouped = returns.view(-1, group)
    centred = (grouped - grouped.mean(dim=1, keepdim=True)).flatten()
    spread = centred.std() if len(centred) > 1 else centred.new_tensor(0.0)
    return centred / spread if spread > 0 else centred


def ppo_iteration(run: PPORun) -> dict:
    """One iteration (rollouts, rewards, advantages, updates); appends its row to run.log
    and returns it. Raises DivergedError, with nothing updated after it, when the loss is not
    finite or the KL exceeds settings.kl_bound."""
    s, policy = run.settings, run.policy
    started = time.perf_counter()
    picks = random.Random(f"{s.seed}, {run.iteration}").sample(
        range(len(run.tasks)), min(s.requests_per_batch, len(run.tasks)))
    tasks = [run.tasks[i] for i in picks]
    pad_id = run.tokenizer.special_tokens[PAD]

    policy.eval()
    with torch.no_grad():
        batch = Rollout.cat([sample_answers(policy, run.tokenizer, task.messages[:1],
                                            s.answers_per_request, s.max_new_tokens,
                                            s.temperature, run.generator) for task in tasks],
                            pad_id)
        mask = batch.mask
        logp_old = answer_logprobs(policy, batch.ids)
        logp_ref = answer_logprobs(run.reference, batch.ids)
        score = run.reward_model(batch.ids, batch.lengths)
        rewards = run.kl_penalised_rewards(score, logp_old, logp_ref, mask, s.beta)
        advantages = group_baseline_advantages(rewards.sum(dim=1), s.answers_per_request)
        advantages = advantages[:, None] * mask  # (B, T): the answer's advantage, every token
        kl = ((logp_old - logp_ref) * mask).sum(dim=1)  # (B,) nats per answer
    rollout_seconds = time.perf_counter() - started

    if not math.isfinite(kl.mean().item()) or kl.mean().item() > s.kl_bound:
        raise DivergedError(f"iteration {run.iteration}: the policy's KL to the reference is "
                            f"{kl.mean().item():.1f} nats per answer, beyond the bound of "
                            f"{s.kl_bound}: the run has diverged; lower lr or raise beta")
    policy.train()
    losses = []
    order = torch.Generator().manual_seed(s.seed * 1_000_003 + run.iteration)
    for _ in range(s.epochs):
        for rows in torch.randperm(len(batch.ids), generator=order).split(s.minibatch):
            loss = run.ppo_clip_loss(answer_logprobs(policy, batch.ids[rows]), logp_old[rows],
                                     advantages[rows], mask[rows], s.clip)
            if not torch.isfinite(loss):
                raise DivergedError(f"iteration {run.iteration}: the PPO loss is {loss.item()}; "
                                    f"lower lr")
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), s.grad_clip)
            run.optimizer.step()
            losses.append(loss.item())
    policy.eval()

    constraints = [task.constraints for task in tasks for _ in range(s.answers_per_request)]
    run.iteration += 1
    run.seconds += time.perf_counter() - started
    row = {"iteration": run.iteration,
           "score": score.mean().item(),
           "kl": kl.mean().item(),
           "true_score": sum(true_score(t, c) for t, c in zip(batch.texts, constraints))
           / len(batch.texts),
           "ended": batch.ended.float().mean().item(),
           "answer_tokens": mask.sum(dim=1).float().mean().item(),
           "loss": sum(losses) / len(losses),
           "rollout_seconds": round(rollout_seconds, 2),
           "seconds": round(run.seconds, 2),
           "sample": batch.texts[0]}
    run.log.append(row)
    return row


def train_ppo(run: PPORun, *, progress: bool = True,
              on_iteration: Callable[[PPORun], None] | None = None,
              save: Callable[[PPORun], None] | None = None,
              time_limit: float | None = None) -> PPORun:
    """Run ppo_iteration until settings.iterations (or time_limit seconds, or the stop
    button), with a progress bar; on_iteration(run) and save(run) after each iteration. A
    diverging run raises DivergedError before `save` sees it, so a good checkpoint stays."""
    def postfix(row: dict) -> dict:
        return {"score": f"{row['score']:.2f}", "kl": f"{row['kl']:.1f}",
                "true": f"{row['true_score']:.2f}"}

    return train_loop(run, ppo_iteration, lambda r: r.iteration, run.settings.iterations,
                      postfix, progress=progress, on_iteration=on_iteration, save=save,
                      time_limit=time_limit)


def train_loop(run, advance: Callable, done: Callable, total: int, postfix: Callable, *,
               progress: bool = True, on_iteration: Callable | None = None,
               save: Callable | None = None, time_limit: float | None = None):
    """The loop that PPO, DPO and GRPO runs share: while done(run) < total (and time_limit
    seconds have not passed, and the stop button was not pressed), row = advance(run), the
    progress bar shows postfix(row), then on_iteration(run) and save(run). An exception in
    advance (DivergedError) stops the loop before save sees the run. Returns run."""
    started = time.perf_counter()
    with _progress_bar(done(run), total, disable=not progress) as bar, StopRequest() as stop:
        while done(run) < total and not stop.requested:
            if time_limit is not None and time.perf_counter() - started > time_limit:
                break
            row = advance(run)
            bar.set_postfix(**postfix(row), refresh=False)
            bar.update(done(run) - bar.n)
            if on_iteration is not None:
                on_iteration(run)
            if save is not None:
                save(run)
    return run


@torch.no_grad()
def compare_with_reference(policy: GPT, reference: GPT, tokenizer: Tokenizer,
                           tasks: Sequence[Task], labeler: Labeler,
                           max_new_tokens: int = 200, seed: int = 0,
                           progress: bool = False) -> dict:
    """The policy judged against the reference by the hidden labeler on `tasks` (held-out
    requests): one sampled answer from each per request. Returns "win_rate" (the mean of
    labeler.probability(policy's answer, reference's answer): the share of the labeler's
    choices the policy can expect to win), the mean "true_score" of each, the policy's "kl"
    to the reference (nats per answer, the mean of log pi - log pi_ref over its own answers),
    and the share of the policy's answers that "ended"."""
    from tqdm.auto import tqdm

    generator = torch.Generator().manual_seed(seed)
    wins, kls, ours, theirs, ended = [], [], [], [], []
    for task in tqdm(tasks, desc="judging", disable=not progress, mininterval=0.5):
        mine = sample_answers(policy, tokenizer, task.messages[:1], 1, max_new_tokens,
                              generator=generator)
        other = sample_answers(reference, tokenizer, task.messages[:1], 1, max_new_tokens,
                               generator=generator)
        kls.append(((answer_logprobs(policy, mine.ids) - answer_logprobs(reference, mine.ids))
                    * mine.mask).sum().item())
        wins.append(labeler.probability(mine.texts[0], other.texts[0], task.constraints))
        ours.append(true_score(mine.texts[0], task.constraints))
        theirs.append(true_score(other.texts[0], task.constraints))
        ended.append(bool(mine.ended[0]))
    n = len(tasks)
    return {"win_rate": sum(wins) / n, "true_score": sum(ours) / n,
            "reference_true_score": sum(theirs) / n, "kl": sum(kls) / n,
            "ended": sum(ended) / n, "requests": n}


# --- pictures --------------------------------------------------------------------------------

def running_mean(values: Sequence[float], width: int = 10) -> list[float]:
    """The mean of each value and the width - 1 before it (fewer at the start): a noisy
    per-iteration curve, smoothed. (N,) -> (N,)."""
    if not (isinstance(width, int) and width >= 1):
        raise ValueError(f"width must be a whole number >= 1, got {width!r}")
    return [sum(values[max(0, i - width + 1):i + 1]) / min(i + 1, width)
            for i in range(len(values))]


def plot_ppo(log: list[dict], axes=None, title: str = ""):
    """A PPO run's curves against the iteration, on three panels: the reward model's mean
    score, the KL to the reference (nats per answer), and the labeler's true score, which
    the policy never sees. Returns the three Axes."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(11, 3.0))
    steps = [row["iteration"] for row in log]
    for ax, key, label, colour in zip(
            axes, ("score", "kl", "true_score"),
            ("reward model's score", "KL to the SFT model (nats)", "labeler's true score"),
            ("C0", "C1", "C2")):
        ax.plot(steps, [row[key] for row in log], "o-", ms=2.5, color=colour)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    if title:
        axes[0].figure.suptitle(title, fontsize=11)
    axes[0].figure.tight_layout()
    return axes


class LivePPOPlot(LiveLossPlot):
    """`plot_ppo` redrawn in a notebook after every iteration: pass its `update` as
    `on_iteration` to `train_ppo`. Outside a notebook it draws nothing."""

    def __init__(self, title: str = "PPO") -> None:
        super().__init__(title)

    def draw(self, run: PPORun):
        """The figure for `run` as it is now (a matplotlib Figure)."""
        axes = plot_ppo(run.log, title=f"{self.title} (iteration {run.iteration} of "
                                       f"{run.settings.iterations})")
        for ax in axes:
            ax.set_xlim(0, run.settings.iterations + 0.5)
        return axes[0].figure
