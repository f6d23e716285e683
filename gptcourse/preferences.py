"""Preferences (lesson 09): pairs of the SFT model's own answers, the labeler's choice between
them, and the reward model that learns to predict that choice.

In the order of the lesson:

1. the pairs: for each constraint-story request, the model writes a few answers
   (`rollouts.sample_answers`); they are paired off, answers 0 and 1, 2 and 3, ..., so that
   no answer is in two pairs and the pairs stay independent (held-out pairs, which measure),
   or every two of them are paired (training pairs: four answers give six comparisons
   instead of two, for the price of sampling four); the simulated labeler
   (`gptcourse.data.labeler`) draws its choice (`make_preference_pairs`). Saved and loaded as
   gzip'd JSON lines (`save_pairs`, `load_pairs`): sampling them takes minutes.
2. a batch: each answer rendered after its request in the chat template, exactly as the
   policy wrote it (with the end marker only when it ended), chosen rows first, then the
   rejected ones (`pair_batch`).
3. the reward model's training: the Bradley–Terry loss of its two rewards, AdamW with a
   short warm-up and a cosine decay, the gradient clipped (`train_reward_model`), and its
   accuracy on held-out pairs, which the labeler's own noise caps (`pairwise_accuracy`,
   `Labeler.agreement_ceiling`).

Shapes: B pairs, 2B rows (chosen then rejected), T tokens per row (at most block_size).
"""

from __future__ import annotations

import gzip
import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, Sequence

import torch

from gptcourse.atomic import write_atomically
from gptcourse.data.labeler import Labeler
from gptcourse.data.tasks import Task
from gptcourse.finetuning import END, PAD, chat_ids, encode_chat
from gptcourse.model import GPT
from gptcourse.pretraining import _progress_bar, lr_at, make_optimizer
from gptcourse.rlhf import RewardModel, bradley_terry_loss
from gptcourse.rollouts import sample_answers
from gptcourse.tokenizer import Tokenizer

# The reward model's training defaults. From the shipped SFT model, on the pairs of lesson 09's
# recipe (2,400 training requests, 4 answers each, every two of them paired; 200 held-out
# requests, disjoint pairs) they reach 78.8 % held-out pairwise accuracy against a ceiling of
# 84.0 % (`gptcourse.course_model.rlhf`). What mattered, measured on the same 400 held-out
# pairs: more comparisons. On 2,400 disjoint pairs it reached 75.5 % at 300 steps, and at most
# 79.8 % run longer before overfitting from 700 steps on; on 14,400 its held-out loss fell lower
# than on any fewer, and did not rise again by 1,000 steps. Labels without the labeler's
# noise did no better on 2,400 pairs. Yet in expectation over the labeler's draws every variant
# tried orders the same pairs wrong (78-79 %, against the 84.0 % the labeler's noise allows):
# a head that also pools over the tokens, more steps, two more blocks, ensembles.
STEPS = 1000
LR = 2e-4  # the peak, after a warm-up of min(WARMUP, steps // 10) steps, cosine to 0 at steps
WARMUP = 30
HEAD_LR_SCALE = 10.0  # the head starts at zero and has everything to learn: it moves faster
WEIGHT_DECAY = 0.1
GRAD_CLIP = 1.0
EVAL_EVERY = 50
EVAL_BATCH = 32  # pairs per forward pass when measuring


@dataclass(frozen=True)
class PreferencePair:
    """One comparison: the request as a chat (one user message), its constraints, the answer
    the labeler chose and the one it rejected, and the probability p_chosen with which it
    prefers the chosen one (a draw chose it, so p_chosen may be below 0.5). chosen_ended and
    rejected_ended say whether the model ended each answer with the end marker."""

    messages: list[dict[str, str]]
    constraints: dict[str, str]
    chosen: str
    rejected: str
    p_chosen: float
    chosen_ended: bool = True
    rejected_ended: bool = True


# --- the pairs -------------------------------------------------------------------------------

def answer_ids(tokenizer: Tokenizer, messages: list[dict[str, str]], answer: str,
               ended: bool, block_size: int | None = None) -> list[int]:
    """The tokens of one row: the chat with its generation prompt, " " + answer (the
    template's space), and the end marker when the answer ended.

    With block_size, a row longer than that is cut to it when the answer did not end (the
    model was cut off there too; re-encoding its text can take a few tokens more than it
    wrote), and raises ValueError when the answer ended (cutting would drop the end marker).
    """
    ids = [*encode_chat(tokenizer, messages, add_generation_prompt=True),
           *tokenizer.encode_ordinary(" " + answer)]
    if ended:
        ids.append(chat_ids(tokenizer)[END])
    if block_size is not None and len(ids) > block_size:
        if ended:
            raise ValueError(f"the answer and its chat are {len(ids)} tokens long, more than "
                             f"the context of block_size={block_size}")
        ids = ids[:block_size]
    return ids


def _fits(tokenizer: Tokenizer, messages: list[dict[str, str]], answer: str, ended: bool,
          block_size: int) -> bool:
    try:
        answer_ids(tokenizer, messages, answer, ended, block_size)
    except ValueError:
        return False
    return True


PAIRINGS = ("disjoint", "all")


def answer_pairs(n: int, pairing: str) -> list[tuple[int, int]]:
    """Which of n answers are compared: "disjoint", answers (0, 1), (2, 3), ... (an odd last
    one is left out; no answer is in two pairs, so the pairs are independent); "all", every
    two of them, (0, 1), (0, 2), ..., (n - 2, n - 1)."""
    if pairing == "disjoint":
        return [(i, i + 1) for i in range(0, n - 1, 2)]
    if pairing == "all":
        return [(i, j) for i in range(n) for j in range(i + 1, n)]
    raise ValueError(f"pairing must be one of {', '.join(map(repr, PAIRINGS))}, got "
                     f"{pairing!r}")


def make_preference_pairs(model: GPT, tokenizer: Tokenizer, tasks: Sequence[Task],
                          labeler: Labeler, answers_per_task: int = 4,
                          max_new_tokens: int = 256, temperature: float = 1.0, seed: int = 0,
                          pairing: str = "disjoint",
                          progress: bool = True) -> list[PreferencePair]:
    """Preference pairs from the model's own answers: for each constraint-story task,
    answers_per_task answers sampled together (`rollouts.sample_answers`, one generator
    seeded with `seed` for the whole run), paired as `answer_pairs(answers_per_task,
    pairing)` says, and the labeler's draw between the two of each pair (a draw of its own
    for every pair, also where "all" compares an answer more than once).

    A pair of identical answers is skipped (there is nothing to prefer), and so is a pair
    with an ended answer that no longer fits the context once its text is encoded again
    (rare: a model may write a word in more pieces than the tokenizer would). So there are
    at most len(answer_pairs(answers_per_task, pairing)) pairs per task.
    """
    from tqdm.auto import tqdm

    if not (isinstance(answers_per_task, int) and answers_per_task >= 2):
        raise ValueError(f"answers_per_task must be a whole number >= 2 (a pair needs two "
                         f"answers), got {answers_per_task!r}")
    compared = answer_pairs(answers_per_task, pairing)
    not_stories = [i for i, task in enumerate(tasks) if task.kind != "story"]
    if not_stories:
        raise ValueError(f"preference pairs need constraint-story tasks (kind 'story', from "
                         f"tasks.constraint_stories), but tasks {not_stories[:5]} are not")
    block_size = model.config.block_size
    generator = torch.Generator().manual_seed(seed)
    pairs = []
    for task in tqdm(tasks, desc="sampling answers", disable=not progress, mininterval=0.5):
        messages, constraints = task.messages[:1], task.constraints
        rollout = sample_answers(model, tokenizer, messages, answers_per_task, max_new_tokens,
                                 temperature, generator)
        ended = rollout.ended.tolist()
        for i, j in compared:
            (a, a_ended), (b, b_ended) = ((rollout.texts[k], ended[k]) for k in (i, j))
            if a == b or not (_fits(tokenizer, messages, a, a_ended, block_size)
                              and _fits(tokenizer, messages, b, b_ended, block_size)):
                continue
            p = labeler.probability(a, b, constraints)
            if not labeler.prefers(a, b, constraints):
                (a, a_ended), (b, b_ended), p = (b, b_ended), (a, a_ended), 1 - p
            pairs.append(PreferencePair(messages, dict(constraints), a, b, p, a_ended, b_ended))
    return pairs


def save_pairs(path: str | os.PathLike, pairs: Sequence[PreferencePair]) -> Path:
    """Write `pairs` to `path` as gzip'd JSON lines, one pair a line, atomically; returns the
    path. The same pairs give the same bytes."""
    lines = "".join(json.dumps(asdict(pair), sort_keys=True) + "\n" for pair in pairs)
    return write_atomically(path, gzip.compress(lines.encode("utf-8"), mtime=0))


_FIELD_TYPES = {"messages": list, "constraints": dict, "chosen": str, "rejected": str,
                "p_chosen": (int, float), "chosen_ended": bool, "rejected_ended": bool}


def load_pairs(path: str | os.PathLike) -> list[PreferencePair]:
    """The pairs `save_pairs` wrote to `path`. A file that is not gzip'd JSON lines of
    pairs raises ValueError naming the file and the line."""
    path = Path(path)
    try:
        text = gzip.decompress(path.read_bytes()).decode("utf-8")
    except (gzip.BadGzipFile, EOFError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not a file of preference pairs (gzip'd JSON lines, as "
                         f"save_pairs writes): {exc}") from None
    names = {f.name for f in fields(PreferencePair)}
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}, line {number}: not JSON ({exc})") from None
        if not isinstance(row, dict) or set(row) != names:
            raise ValueError(f"{path}, line {number}: expected a pair with the keys "
                             f"{sorted(names)}, got {line:.120}")
        wrong = [name for name, kind in _FIELD_TYPES.items()
                 if not isinstance(row[name], kind)
                 or (kind is not bool and isinstance(row[name], bool))]
        if wrong:
            raise ValueError(f"{path}, line {number}: {', '.join(wrong)} of the wrong type")
        pairs.append(PreferencePair(**row))
    return pairs


# --- a batch ---------------------------------------------------------------------------------

def pair_batch(tokenizer: Tokenizer, pairs: Sequence[PreferencePair],
               block_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows the reward model scores: ids (2B, T) int64 and lengths (2B,) int64.

    Rows 0 .. B-1 are the chosen answers, rows B .. 2B-1 the rejected ones, pair i in rows i
    and B + i. Each row is `answer_ids` (the chat, the answer, its end marker if it ended),
    right-padded with PAD to the longest row; lengths counts each row's real tokens. With
    block_size, rows are fitted to it as `answer_ids` says.
    """
    if not pairs:
        raise ValueError("pair_batch needs at least one pair")
    rows = [answer_ids(tokenizer, p.messages, p.chosen, p.chosen_ended, block_size)
            for p in pairs] + \
        [answer_ids(tokenizer, p.messages, p.rejected, p.rejected_ended, block_size)
         for p in pairs]
    lengths = torch.tensor([len(row) for row in rows], dtype=torch.long)
    ids = torch.full((len(rows), int(lengths.max())), chat_ids(tokenizer)[PAD],
                     dtype=torch.long)
    for b, row in enumerate(rows):
        ids[b, :len(row)] = torch.tensor(row, dtype=torch.long)
    return ids, lengths


def pair_rewards(reward_model: RewardModel, tokenizer: Tokenizer,
                 pairs: Sequence[PreferencePair]) -> tuple[torch.Tensor, torch.Tensor]:
    """The reward model's (r_chosen (B,), r_rejected (B,)) for `pairs`, in one batch."""
    ids, lengths = pair_batch(tokenizer, pairs, reward_model.body.config.block_size)
    device = reward_model.head.weight.device
    rewards = reward_model(ids.to(device), lengths.to(device))  # (2B,)
    return rewards[:len(pairs)], rewards[len(pairs):]


# --- the reward model ------------------------------------------------------------------------

@torch.no_grad()
def evaluate_pairs(reward_model: RewardModel, tokenizer: Tokenizer,
                   pairs: Sequence[PreferencePair]) -> tuple[float, float]:
    """(the mean Bradley–Terry loss, the pairwise accuracy) of the reward model on `pairs`,
    in batches of EVAL_BATCH pairs, in eval mode."""
    if not pairs:
        raise ValueError("there are no pairs to measure on")
    was_training = reward_model.training
    reward_model.eval()
    loss, right = 0.0, 0.0
    try:
        for i in range(0, len(pairs), EVAL_BATCH):
            chunk = pairs[i:i + EVAL_BATCH]
            r_chosen, r_rejected = pair_rewards(reward_model, tokenizer, chunk)
            loss += bradley_terry_loss(r_chosen, r_rejected).item() * len(chunk)
            right += ((r_chosen > r_rejected).sum() + 0.5 * (r_chosen == r_rejected).sum()
                      ).item()
    finally:
        reward_model.train(was_training)
    return loss / len(pairs), right / len(pairs)


def pairwise_accuracy(reward_model: RewardModel, tokenizer: Tokenizer,
                      pairs: Sequence[PreferencePair]) -> float:
    """The share of `pairs` whose chosen answer the reward model scores higher than the
    rejected one; a tie counts half (a coin toss), so a reward model that scores everything
    alike gets 0.5."""
    return evaluate_pairs(reward_model, tokenizer, pairs)[1]


def train_reward_model(reward_model: RewardModel, tokenizer: Tokenizer,
                       train_pairs: Sequence[PreferencePair],
                       heldout_pairs: Sequence[PreferencePair], *, steps: int = STEPS,
                       batch_size: int = 16, lr: float = LR, weight_decay: float = WEIGHT_DECAY,
                       seed: int = 0, progress: bool = True, eval_every: int = EVAL_EVERY,
                       bradley_terry_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
                       = bradley_terry_loss) -> list[dict]:
    """Train `reward_model` in place on train_pairs; returns the log, one row before the first
    step, every eval_every steps and after the last. bradley_terry_loss((B,), (B,)) -> scalar
    is the training loss (lesson 09 passes the learner's; the held-out loss is always the
    course's).

    Each step takes batch_size pairs (the training pairs in a seeded random order, reshuffled
    after each pass), scores both answers, and takes an AdamW step (weight decay on the
    matrices) on their Bradley–Terry loss, the gradient's norm clipped to GRAD_CLIP. The
    learning rate rises over the first min(WARMUP, steps // 10) steps to lr and falls along a
    cosine to 0 at the last step (`pretraining.lr_at`); the head's is HEAD_LR_SCALE times the
    body's. A row: step; loss, the mean training loss of the steps since the previous row
    (None in the first row); heldout_loss and heldout_accuracy on heldout_pairs
    (`evaluate_pairs`); seconds since the start. A loss that is not finite raises
    FloatingPointError.
    """
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"steps must be a whole number >= 1, got {steps!r}")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    if not (isinstance(eval_every, int) and eval_every >= 1):
        raise ValueError(f"eval_every must be a whole number >= 1, got {eval_every!r}")
    if not train_pairs or not heldout_pairs:
        raise ValueError(f"need training and held-out pairs, got {len(train_pairs)} and "
                         f"{len(heldout_pairs)}")
    generator = torch.Generator().manual_seed(seed)
    optimizer = make_optimizer(reward_model.body, lr, weight_decay)
    head = reward_model.head
    optimizer.add_param_group({"params": [head.weight], "weight_decay": weight_decay,
                               "lr_scale": HEAD_LR_SCALE})
    optimizer.add_param_group({"params": [head.bias], "weight_decay": 0.0,
                               "lr_scale": HEAD_LR_SCALE})
    warmup = min(WARMUP, steps // 10)
    reward_model.train()
    started = time.perf_counter()
    order: list[int] = []
    log: list[dict] = []
    losses: list[float] = []

    def record(step: int) -> None:
        heldout_loss, heldout_accuracy = evaluate_pairs(reward_model, tokenizer, heldout_pairs)
        log.append({"step": step, "loss": sum(losses) / len(losses) if losses else None,
                    "heldout_loss": heldout_loss, "heldout_accuracy": heldout_accuracy,
                    "seconds": round(time.perf_counter() - started, 2)})
        losses.clear()

    record(0)
    with _progress_bar(0, steps, disable=not progress) as bar:
        for step in range(1, steps + 1):
            while len(order) < batch_size:
                order += torch.randperm(len(train_pairs), generator=generator).tolist()
            batch, order = [train_pairs[i] for i in order[:batch_size]], order[batch_size:]
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step - 1, warmup, steps, lr, 0.0) * \
                    group.get("lr_scale", 1.0)
            loss = bradley_terry_loss(*pair_rewards(reward_model, tokenizer, batch))
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"the reward model's loss became {loss.item()} at "
                                         f"step {step}: training diverged; lower lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(reward_model.parameters(), GRAD_CLIP)
            optimizer.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            bar.update(1)
            if step % eval_every == 0 or step == steps:
                record(step)
    return log
