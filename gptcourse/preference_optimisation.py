"""Lesson 10, preference optimisation: DPO and GRPO, two ways past PPO's machinery.

DPO (direct preference optimisation) learns from the preference pairs themselves, with no
reward model and no sampling: the policy's log-probability margin over a frozen reference
model, chosen minus rejected, is pushed up through the same Bradley–Terry loss that trains a
reward model. GRPO (group relative policy optimisation) keeps sampling but drops the value
network: several answers to the same question are scored, and each answer's advantage is its
reward relative to its own group.

Shapes: B pairs or answers; G groups (questions) of K answers each; T tokens.
"""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from gptcourse.data.labeler import true_score
from gptcourse.data.tasks import Task
from gptcourse.finetuning import PAD, encode_chat, reply
from gptcourse.model import GPT
from gptcourse.ppo import DivergedError, answer_logprobs, train_loop
from gptcourse.pretraining import LiveLossPlot
from gptcourse.preferences import EVAL_BATCH, PreferencePair, pair_batch
from gptcourse.rlhf import RewardModel, ppo_clip_loss, require_same_shape, sequence_logprobs
from gptcourse.rollouts import Rollout, sample_answers
from gptcourse.tokenizer import Tokenizer


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
             ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, beta: float) -> torch.Tensor:
    """DPO's loss: four (B,) summed response log-probabilities (lesson 09's
    `sequence_logprobs`), beta > 0 -> scalar, the mean over the batch of

        -log sigmoid(beta * [(policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)]).

    beta * (policy - ref) is the implicit reward of an answer. The reference model is frozen:
    no gradient flows into its log-probabilities. At the start, policy = reference and the
    loss is ln 2.
    """
    if not beta > 0:
        raise ValueError(f"beta must be > 0 (it scales the implicit reward), got {beta}")
    require_same_shape(policy_chosen=policy_chosen, policy_rejected=policy_rejected,
                       ref_chosen=ref_chosen, ref_rejected=ref_rejected)
    chosen = policy_chosen - ref_chosen.detach()
    rejected = policy_rejected - ref_rejected.detach()
    return -F.logsigmoid(beta * (chosen - rejected)).mean()


def group_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """GRPO's advantages: rewards (G, K), K >= 2 answers to each of G questions -> (G, K),
    (r - mean) / (std + eps) within each group, std the unbiased one (torch's default).

    A group whose answers all score the same teaches nothing: its advantages are 0.
    """
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"expected rewards (G, K) with K >= 2 answers per group, got shape "
                         f"{tuple(rewards.shape)}: a group of one answer has nothing to be "
                         f"compared with")
    if not torch.isfinite(rewards).all():
        raise ValueError("rewards must be finite numbers; found NaN or infinity")
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True)
    return (rewards - mean) / (std + eps)


def kl_k3(logp: torch.Tensor, logp_ref: torch.Tensor) -> torch.Tensor:
    """The k3 estimate of KL(policy || reference) per token: logp, logp_ref (B, T) of the
    sampled tokens -> (B, T), exp(logp_ref - logp) - (logp_ref - logp) - 1.

    Unbiased for the KL when the tokens are sampled from the policy, and never negative
    (e^x >= 1 + x), unlike the plain log-ratio logp - logp_ref. expm1 keeps it precise when
    the two models nearly agree.
    """
    require_same_shape(logp=logp, logp_ref=logp_ref)
    log_ratio = logp_ref - logp
    return torch.expm1(log_ratio) - log_ratio


# --- DPO: training on the preference pairs -------------------------------------------------------

@dataclass(frozen=True)
class DPOSettings:
    """One DPO run's settings: `steps` AdamW steps of `batch_size` pairs (in a seeded order,
    reshuffled after each pass) at a constant lr, beta the implicit reward's scale, the
    held-out pairs measured every eval_every steps. A run whose policy moves further than
    kl_bound nats per pair from the reference (the mean |policy - reference| log-probability
    of the held-out answers) has diverged."""

    steps: int = 200
    batch_size: int = 16
    lr: float = 1e-5
    beta: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 25
    kl_bound: float = 200.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.beta > 0:
            raise ValueError(f"beta must be > 0 (it scales the implicit reward), got {self.beta}")
        for name in ("steps", "batch_size", "eval_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        if not (self.lr > 0 and self.grad_clip > 0 and self.kl_bound > 0):
            raise ValueError("lr, grad_clip and kl_bound must be > 0")


def pair_logprobs(model: GPT, tokenizer: Tokenizer, pairs: Sequence[PreferencePair]
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The summed log-probability under `model` of each pair's chosen and of its rejected
    answer, (B,) and (B,): the rows of `preferences.pair_batch`, the answer's tokens (and its
    end marker) counted, the chat before them not."""
    block_size = model.config.block_size
    ids, lengths = pair_batch(tokenizer, pairs, block_size)
    prompts = torch.tensor([len(encode_chat(tokenizer, p.messages, add_generation_prompt=True))
                            for p in pairs] * 2)
    positions = torch.arange(ids.shape[1])
    mask = (positions >= prompts[:, None]) & (positions < lengths[:, None])  # (2B, T)
    device = model.wte.weight.device
    logp = sequence_logprobs(model(ids.to(device))[0], ids.to(device), mask.to(device))
    return logp[:len(pairs)], logp[len(pairs):]


@torch.no_grad()
def _pairs_logprobs(model: GPT, tokenizer: Tokenizer, pairs: Sequence[PreferencePair]
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    chosen, rejected = zip(*(pair_logprobs(model, tokenizer, pairs[i:i + EVAL_BATCH])
                             for i in range(0, len(pairs), EVAL_BATCH)))
    return torch.cat(chosen), torch.cat(rejected)


@dataclass
class DPORun:
    """A DPO run in progress: the policy being trained, the frozen reference (the model it
    started from), the pairs and the reference's log-probabilities of their answers (computed
    once: the reference never changes), the optimiser and the log."""

    policy: GPT
    reference: GPT
    tokenizer: Tokenizer
    train_pairs: list[PreferencePair]
    heldout_pairs: list[PreferencePair]
    settings: DPOSettings
    optimizer: torch.optim.Optimizer
    reference_train: tuple[torch.Tensor, torch.Tensor]
    reference_heldout: tuple[torch.Tensor, torch.Tensor]
    generator: torch.Generator
    step: int = 0
    log: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    order: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    dpo_loss: Callable[..., torch.Tensor] = dpo_loss

    @classmethod
    def start(cls, policy: GPT, tokenizer: Tokenizer, train_pairs: Sequence[PreferencePair],
              heldout_pairs: Sequence[PreferencePair], settings: DPOSettings = DPOSettings(),
              *, dpo_loss: Callable[..., torch.Tensor] = dpo_loss) -> "DPORun":
        """A fresh run from `policy`, which stays as it was: the policy trained is a copy of
        it, the reference a frozen copy. Measures the held-out pairs once (the log's step 0).
        dpo_loss is the training loss (lesson 10 passes the learner's; the held-out loss is
        always the course's)."""
        if not train_pairs or not heldout_pairs:
            raise ValueError(f"DPO needs training and held-out pairs, got {len(train_pairs)} "
                             f"and {len(heldout_pairs)}")
        reference = copy.deepcopy(policy).eval().requires_grad_(False)
        policy = copy.deepcopy(policy).train().requires_grad_(True)
        torch.manual_seed(settings.seed)  # dropout, if the model has any
        optimizer = torch.optim.AdamW(policy.parameters(), lr=settings.lr, weight_decay=0.0)
        run = cls(policy, reference, tokenizer, list(train_pairs), list(heldout_pairs),
                  settings, optimizer, _pairs_logprobs(reference, tokenizer, train_pairs),
                  _pairs_logprobs(reference, tokenizer, heldout_pairs),
                  torch.Generator().manual_seed(settings.seed), dpo_loss=dpo_loss)
        run.log.append(evaluate_dpo(run))
        return run


@torch.no_grad()
def evaluate_dpo(run: DPORun) -> dict:
    """A log row for the run as it is: the held-out pairs' mean DPO loss, their
    implicit-reward accuracy (the share whose chosen answer gets the larger implicit reward
    beta * (policy - reference), a tie counting half), the mean implicit reward of the chosen
    and of the rejected answers, and "drift", the mean |policy - reference| of the answers'
    summed log-probabilities (nats)."""
    was_training = run.policy.training
    run.policy.eval()
    try:
        chosen, rejected = _pairs_logprobs(run.policy, run.tokenizer, run.heldout_pairs)
    finally:
        run.policy.train(was_training)
    ref_chosen, ref_rejected = run.reference_heldout
    beta = run.settings.beta
    reward_chosen, reward_rejected = beta * (chosen - ref_chosen), beta * (rejected - ref_rejected)
    right = ((reward_chosen > reward_rejected).float()
             + 0.5 * (reward_chosen == reward_rejected).float())
    drift = torch.cat([chosen - ref_chosen, rejected - ref_rejected]).abs().mean()
    return {"step": run.step,
            "loss": sum(run.losses) / len(run.losses) if run.losses else None,
            "heldout_loss": dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta).item(),
            "heldout_accuracy": right.mean().item(),
            "chosen_reward": reward_chosen.mean().item(),
            "rejected_reward": reward_rejected.mean().item(),
            "drift": drift.item(),
            "seconds": round(run.seconds, 2)}


def dpo_step(run: DPORun) -> dict:
    """One AdamW step on a batch of training pairs; returns {"loss": its loss, and the latest
    held-out "heldout_accuracy"}. Every eval_every steps (and at the last) appends
    `evaluate_dpo`'s row to run.log. Raises DivergedError when the loss is not finite (before
    the step) or the drift exceeds settings.kl_bound (at a measurement)."""
    s = run.settings
    started = time.perf_counter()
    while len(run.order) < s.batch_size:
        run.order += torch.randperm(len(run.train_pairs), generator=run.generator).tolist()
    rows, run.order = run.order[:s.batch_size], run.order[s.batch_size:]
    chosen, rejected = pair_logprobs(run.policy, run.tokenizer, [run.train_pairs[i] for i in rows])
    ref_chosen, ref_rejected = (t[rows] for t in run.reference_train)
    loss = run.dpo_loss(chosen, rejected, ref_chosen, ref_rejected, s.beta)
    if not torch.isfinite(loss):
        raise DivergedError(f"step {run.step + 1}: the DPO loss is {loss.item()}; lower lr")
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(run.policy.parameters(), s.grad_clip)
    run.optimizer.step()
    run.step += 1
    run.losses.append(loss.item())
    run.seconds += time.perf_counter() - started
    if run.step % s.eval_every == 0 or run.step == s.steps:
        started = time.perf_counter()
        row = evaluate_dpo(run)
        run.seconds += time.perf_counter() - started
        row["seconds"] = round(run.seconds, 2)
        run.losses.clear()
        run.log.append(row)
        if not row["drift"] <= s.kl_bound:
            raise DivergedError(f"step {run.step}: the policy's answers are {row['drift']:.1f} "
                                f"nats from the reference's, beyond the bound of {s.kl_bound}: "
                                f"the run has diverged; lower lr")
    return {"loss": loss.item(), "heldout_accuracy": run.log[-1]["heldout_accuracy"]}


def train_dpo(run: DPORun, *, progress: bool = True,
              on_step: Callable[[DPORun], None] | None = None,
              save: Callable[[DPORun], None] | None = None,
              time_limit: float | None = None) -> DPORun:
    """Run dpo_step until settings.steps (or time_limit seconds, or the stop button), with a
    progress bar; on_step(run) and save(run) after each step. A diverging run raises
    DivergedError before `save` sees it, so a good checkpoint stays."""
    def postfix(row: dict) -> dict:
        return {"loss": f"{row['loss']:.3f}", "heldout": f"{row['heldout_accuracy']:.0%}"}

    return train_loop(run, dpo_step, lambda r: r.step, run.settings.steps, postfix,
                      progress=progress, on_iteration=on_step, save=save,
                      time_limit=time_limit)


# --- GRPO: sampling, scored within the group ----------------------------------------------------

def exact_answer_rewards(task: Task, rollout: Rollout) -> torch.Tensor:
    """The verifiable reward of story questions: (K,) 1.0 for each answer that is exactly
    the task's answer (as lesson 08's exact match), 0.0 otherwise."""
    if task.kind != "question":
        raise ValueError(f"exact answers are checked for story questions (kind 'question'), "
                         f"not {task.kind!r} tasks")
    return torch.tensor([float(text == task.answer) for text in rollout.texts])


def reward_model_rewards(reward_model: RewardModel) -> Callable[[Task, Rollout], torch.Tensor]:
    """A reward function for GRPO from a learned reward model (lesson 09's): (task, rollout)
    -> (K,), the model's score of each answer, as PPO gets it."""
    def rewards(task: Task, rollout: Rollout) -> torch.Tensor:
        with torch.no_grad():
            return reward_model(rollout.ids, rollout.lengths)

    return rewards


@dataclass(frozen=True)
class GRPOSettings:
    """One GRPO run's settings: each iteration asks questions_per_batch questions,
    answers_per_question times each (a group), and makes `epochs` passes over the answers in
    minibatches of `minibatch`; beta weighs the k3 KL penalty in the loss (0: no leash), clip
    is PPO's epsilon, eps the advantages' (`group_advantages`). A run whose mean KL per answer
    exceeds kl_bound nats has diverged."""

    iterations: int = 100
    questions_per_batch: int = 16
    answers_per_question: int = 8
    epochs: int = 1
    minibatch: int = 16
    lr: float = 2e-5
    beta: float = 0.04
    clip: float = 0.2
    eps: float = 1e-4
    max_new_tokens: int = 16
    temperature: float = 1.0
    grad_clip: float = 1.0
    kl_bound: float = 60.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.beta >= 0:
            raise ValueError(f"beta must be >= 0 (it weighs the KL penalty), got {self.beta}")
        if not 0 < self.clip < 1:
            raise ValueError(f"clip must be in (0, 1), got {self.clip}")
        if not (isinstance(self.answers_per_question, int) and self.answers_per_question >= 2):
            raise ValueError(f"answers_per_question must be >= 2: an answer is judged against "
                             f"the others of its group, got {self.answers_per_question!r}")
        for name in ("iterations", "questions_per_batch", "epochs", "minibatch",
                     "max_new_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        if not (self.lr > 0 and self.temperature > 0 and self.kl_bound > 0 and self.eps > 0):
            raise ValueError("lr, temperature, kl_bound and eps must be > 0")


@dataclass
class GRPORun:
    """A GRPO run in progress: the policy being trained, the frozen reference, the reward
    function (task, rollout) -> (K,), the tasks it practises on, and the log."""

    policy: GPT
    reference: GPT
    tokenizer: Tokenizer
    tasks: Sequence[Task]
    reward: Callable[[Task, Rollout], torch.Tensor]
    settings: GRPOSettings
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    iteration: int = 0
    log: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    group_advantages: Callable[..., torch.Tensor] = group_advantages
    kl_k3: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = kl_k3

    @classmethod
    def start(cls, policy: GPT, tokenizer: Tokenizer, tasks: Sequence[Task],
              reward: Callable[[Task, Rollout], torch.Tensor],
              settings: GRPOSettings = GRPOSettings(), *,
              group_advantages: Callable[..., torch.Tensor] = group_advantages,
              kl_k3: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = kl_k3
              ) -> "GRPORun":
        """A fresh run: the policy is a trainable copy of `policy`, the reference a frozen
        one (neither is `policy` itself, which stays as it was). group_advantages and kl_k3
        are the pieces its iterations use (lesson 10 passes the learner's)."""
        if not tasks:
            raise ValueError("GRPO needs questions to practise on; the task list is empty")
        reference = copy.deepcopy(policy).eval().requires_grad_(False)
        policy = copy.deepcopy(policy).train().requires_grad_(True)
        optimizer = torch.optim.AdamW(policy.parameters(), lr=settings.lr, weight_decay=0.0)
        return cls(policy, reference, tokenizer, list(tasks), reward, settings, optimizer,
                   torch.Generator().manual_seed(settings.seed),
                   group_advantages=group_advantages, kl_k3=kl_k3)


def grpo_loss(logp: torch.Tensor, logp_old: torch.Tensor, logp_ref: torch.Tensor,
              advantages: torch.Tensor, mask: torch.Tensor, clip: float, beta: float,
              kl_k3: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = kl_k3
              ) -> torch.Tensor:
    """GRPO's loss, all (B, T) -> scalar: PPO's clipped objective with each answer's group
    advantage on every token of it (`rlhf.ppo_clip_loss`), plus beta times the mean k3 KL to
    the reference over the answers' tokens (`kl_k3`): the leash sits in the loss, not in
    the reward."""
    keep = mask.to(logp.dtype)
    penalty = (kl_k3(logp, logp_ref.detach()) * keep).sum() / keep.sum()
    return ppo_clip_loss(logp, logp_old, advantages, mask, clip) + beta * penalty


def grpo_iteration(run: GRPORun) -> dict:
    """One iteration: sample a group of answers to each of a few questions, reward them,
    `group_advantages` within each group, and `grpo_loss` updates. Appends its log row to
    run.log and returns it: "reward" (mean), "no_spread" (the share of groups whose answers
    all scored the same, which teach nothing), "kl" (nats per answer, the mean of
    log pi - log pi_ref over the sampled answers), "answer_tokens", "ended", "loss", seconds,
    and for story requests the labeler's "true_score". Raises DivergedError, with nothing
    updated after it, when the loss is not finite or the KL exceeds settings.kl_bound. Groups
    with no spread are left out of the update ("loss" None when every group is such)."""
    s, policy = run.settings, run.policy
    started = time.perf_counter()
    picks = random.Random(f"{s.seed}, {run.iteration}").sample(
        range(len(run.tasks)), min(s.questions_per_batch, len(run.tasks)))
    tasks = [run.tasks[i] for i in picks]
    pad_id = run.tokenizer.special_tokens[PAD]

    policy.eval()
    with torch.no_grad():
        groups = [sample_answers(policy, run.tokenizer, task.messages[:1],
                                 s.answers_per_question, s.max_new_tokens, s.temperature,
                                 run.generator) for task in tasks]
        rewards = torch.stack([run.reward(task, group).float().flatten()
                               for task, group in zip(tasks, groups)])  # (G, K)
        batch = Rollout.cat(groups, pad_id)
        mask = batch.mask
        advantages = run.group_advantages(rewards, s.eps).flatten()[:, None] * mask  # (B, T)
        logp_old = answer_logprobs(policy, batch.ids)
        logp_ref = answer_logprobs(run.reference, batch.ids)
        kl = ((logp_old - logp_ref) * mask).sum(dim=1)  # (B,)
    rollout_seconds = time.perf_counter() - started
    if not math.isfinite(kl.mean().item()) or kl.mean().item() > s.kl_bound:
        raise DivergedError(f"iteration {run.iteration}: the policy's KL to the reference is "
                            f"{kl.mean().item():.1f} nats per answer, beyond the bound of "
                            f"{s.kl_bound}: the run has diverged; lower lr or raise beta")

    # A group whose answers all scored the same has advantage 0 on every answer: it would
    # only pay the leash. Its rows are left out of the update, which saves most of the time
    # when most groups are all right (or all wrong).
    spread = rewards.std(dim=1) > 0  # (G,)
    learn = spread.repeat_interleave(s.answers_per_question).nonzero().flatten()  # rows
    policy.train()
    losses = []
    order = torch.Generator().manual_seed(s.seed * 1_000_003 + run.iteration)
    for _ in range(s.epochs if len(learn) else 0):
        for rows in learn[torch.randperm(len(learn), generator=order)].split(s.minibatch):
            loss = grpo_loss(answer_logprobs(policy, batch.ids[rows]), logp_old[rows],
                             logp_ref[rows], advantages[rows], mask[rows], s.clip, s.beta,
                             run.kl_k3)
            if not torch.isfinite(loss):
                raise DivergedError(f"iteration {run.iteration}: the GRPO loss is "
                                    f"{loss.item()}; lower lr")
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), s.grad_clip)
            run.optimizer.step()
            losses.append(loss.item())
    policy.eval()

    run.iteration += 1
    run.seconds += time.perf_counter() - started
    row = {"iteration": run.iteration,
           "reward": rewards.mean().item(),
           "no_spread": 1 - spread.float().mean().item(),
           "kl": kl.mean().item(),
           "answer_tokens": mask.sum(dim=1).float().mean().item(),
           "ended": batch.ended.float().mean().item(),
           "loss": sum(losses) / len(losses) if losses else None,
           "rollout_seconds": round(rollout_seconds, 2),
           "seconds": round(run.seconds, 2),
           "sample": batch.texts[0]}
    if all(task.kind == "story" for task in tasks):
        constraints = [t.constraints for t in tasks for _ in range(s.answers_per_question)]
        row["true_score"] = sum(true_score(text, c) for text, c in
                                zip(batch.texts, constraints)) / len(batch.texts)
    run.log.append(row)
    return row


def train_grpo(run: GRPORun, *, progress: bool = True,
               on_iteration: Callable[[GRPORun], None] | None = None,
               save: Callable[[GRPORun], None] | None = None,
               time_limit: float | None = None) -> GRPORun:
    """Run grpo_iteration until settings.iterations (or time_limit seconds, or the stop
    button), with a progress bar; on_iteration(run) and save(run) after each iteration. A
    diverging run raises DivergedError before `save` sees it, so a good checkpoint stays."""
    def postfix(row: dict) -> dict:
        return {"reward": f"{row['reward']:.2f}", "kl": f"{row['kl']:.2f}",
                "no_spread": f"{row['no_spread']:.0%}"}

    return train_loop(run, grpo_iteration, lambda r: r.iteration, run.settings.iterations,
                      postfix, progress=progress, on_iteration=on_iteration, save=save,
                      time_limit=time_limit)


# --- measuring ---------------------------------------------------------------------------------

def question_fact(task: Task) -> str:
    """Which fact of its story a story question asks for ("animal", "age", ...): the fact
    whose value is the answer."""
    if task.kind != "question" or task.story is None:
        raise ValueError("question_fact needs a story question (tasks.story_questions)")
    return next(fact for fact, value in task.story.facts.items() if value == task.answer)


def pass_at_1(model: GPT, tokenizer: Tokenizer, tasks: Sequence[Task],
              max_new_tokens: int = 16) -> dict:
    """pass@1 on story questions: the share answered exactly right by the model's greedy
    answer (lesson 08's exact match), "all" and by the fact asked for ({fact: [right,
    asked]} under "by_fact")."""
    by_fact: dict[str, list[int]] = {}
    for task in tasks:
        counts = by_fact.setdefault(question_fact(task), [0, 0])
        counts[0] += reply(model, tokenizer, task.messages[:1], max_new_tokens)[0] == task.answer
        counts[1] += 1
    right = sum(c[0] for c in by_fact.values())
    return {"all": right / len(tasks) if tasks else math.nan, "questions": len(tasks),
            "by_fact": dict(sorted(by_fact.items()))}


# --- pictures ----------------------------------------------------------------------------------

def plot_dpo(log: list[dict], axes=None, title: str = "", lines: dict[str, float] | None = None):
    """A DPO run's curves against the step, on three panels: the loss (training, held-out),
    the held-out implicit-reward accuracy (with `lines`, {label: accuracy}, drawn across it:
    the labeler's ceiling, say), and the held-out answers' mean implicit rewards, chosen and
    rejected. Returns the three Axes."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(11, 3.0))
    steps = [row["step"] for row in log]
    trained = [row for row in log if row["loss"] is not None]
    axes[0].plot([r["step"] for r in trained], [r["loss"] for r in trained], "o-", ms=2.5,
                 label="training pairs")
    axes[0].plot(steps, [r["heldout_loss"] for r in log], "o-", ms=2.5, label="held-out pairs")
    axes[0].axhline(math.log(2), color="grey", lw=0.8, ls=":")
    axes[0].set_title("DPO loss (ln 2 at the start)", fontsize=10)
    axes[0].legend(fontsize=8)
    axes[1].plot(steps, [r["heldout_accuracy"] for r in log], "o-", ms=2.5, color="C2")
    for (label, value), style in zip((lines or {}).items(), ("--", ":", "-.")):
        axes[1].axhline(value, color="black", lw=0.8, ls=style, label=label)
    if lines:
        axes[1].legend(fontsize=8)
    axes[1].set_title("held-out implicit-reward accuracy", fontsize=10)
    axes[2].plot(steps, [r["chosen_reward"] for r in log], "o-", ms=2.5, label="chosen")
    axes[2].plot(steps, [r["rejected_reward"] for r in log], "o-", ms=2.5, label="rejected")
    axes[2].set_title("implicit reward β(ℓθ − ℓref), held out", fontsize=10)
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    if title:
        axes[0].figure.suptitle(title, fontsize=11)
    axes[0].figure.tight_layout()
    return axes


def plot_grpo(log: list[dict], axes=None, title: str = ""):
    """A GRPO run's curves against the iteration, on four panels: the mean reward (for the
    exact-answer reward, the share of right answers), the share of groups with no spread,
    the KL to the reference (nats per answer) and the answers' length (tokens). Returns the
    four Axes."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 4, figsize=(13, 3.0))
    steps = [row["iteration"] for row in log]
    for ax, key, label, colour in zip(
            axes, ("reward", "no_spread", "kl", "answer_tokens"),
            ("mean reward", "groups with no spread", "KL to the SFT model (nats)",
             "answer length (tokens)"), ("C0", "C7", "C1", "C4")):
        ax.plot(steps, [row[key] for row in log], "o-", ms=2, color=colour)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    if title:
        axes[0].figure.suptitle(title, fontsize=11)
    axes[0].figure.tight_layout()
    return axes


class LiveDPOPlot(LiveLossPlot):
    """`plot_dpo` redrawn in a notebook after every step: pass its `update` as `on_step` to
    `train_dpo`. Outside a notebook it draws nothing."""

    def __init__(self, title: str = "DPO") -> None:
        super().__init__(title)

    def draw(self, run: DPORun):
        """The figure for `run` as it is now (a matplotlib Figure)."""
        axes = plot_dpo(run.log, title=f"{self.title} (step {run.step} of {run.settings.steps})")
        for ax in axes:
            ax.set_xlim(0, run.settings.steps + 0.5)
        return axes[0].figure


class LiveGRPOPlot(LiveLossPlot):
    """`plot_grpo` redrawn in a notebook after every iteration: pass its `update` as
    `on_iteration` to `train_grpo`. Outside a notebook it draws nothing."""

    def __init__(self, title: str = "GRPO") -> None:
        super().__init__(title)

    def draw(self, run: GRPORun):
        """The figure for `run` as it is now (a matplotlib Figure)."""
        axes = plot_grpo(run.log, title=f"{self.title} (iteration {run.iteration} of "
                                        f"{run.settings.iterations})")
        for ax in axes:
            ax.set_xlim(0, run.settings.iterations + 0.5)
        return axes[0].figure


METHOD_COLOURS = {"PPO": "C0", "DPO": "C1", "GRPO": "C2"}


def plot_comparison(record: dict, axes=None):
    """The comparison of `compare`'s record on two panels: each run's win rate against the
    SFT model over its KL to it (one dot per seed, a cross for each method's mean), and each
    method's training seconds (the mean, the bar; the seeds' range, the whisker). Returns
    the two Axes."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [3, 2]})
    left, right = axes
    for i, (method, row) in enumerate(record["table"].items()):
        colour = METHOD_COLOURS.get(method, f"C{i}")
        runs = [r for r in record["runs"] if r["method"] == method]
        left.scatter([r["kl"] for r in runs], [r["win_rate"] for r in runs], color=colour,
                     alpha=0.6, label=method)
        left.scatter(row["kl"]["mean"], row["win_rate"]["mean"], color=colour, marker="x",
                     s=90)
        seconds = row["train_seconds"]
        right.bar(i, seconds["mean"], color=colour, alpha=0.7,
                  yerr=[[seconds["mean"] - seconds["min"]], [seconds["max"] - seconds["mean"]]])
    left.axhline(0.5, color="grey", lw=0.8, ls=":")
    left.set_xlabel("KL to the SFT model (nats per answer)")
    left.set_ylabel("win rate against SFT")
    left.set_title("what each run bought, and how far it moved", fontsize=10)
    left.legend(fontsize=8)
    right.set_xticks(range(len(record["table"])), list(record["table"]))
    right.set_ylabel("seconds")
    right.set_title("training time (rewards and pairs not counted)", fontsize=10)
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].figure.tight_layout()
    return axes


def comparison_table(record: dict) -> str:
    """`compare`'s table as text, one method a row: the mean over the seeds and, in
    brackets, the lowest and highest, of win rate, KL, true score and training seconds,
    and the tokens sampled while training."""
    def cell(stats: dict, fmt: str) -> str:
        return f"{stats['mean']:{fmt}} [{stats['min']:{fmt}}–{stats['max']:{fmt}}]"

    lines = [f"{'':5} {'win rate vs SFT':>20} {'KL (nats)':>19} {'true score':>19} "
             f"{'seconds':>15} {'tokens sampled':>15}"]
    for method, row in record["table"].items():
        lines.append(f"{method:5} {cell(row['win_rate'], '.0%'):>20} {cell(row['kl'], '.1f'):>19} "
                     f"{cell(row['true_score'], '.2f'):>19} "
                     f"{cell(row['train_seconds'], '.0f'):>15} "
                     f"{row['sampled_tokens']['mean']:>15,.0f}")
    return "\n".join(lines)
