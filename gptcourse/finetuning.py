"""Lesson 08, supervised fine-tuning (SFT): teach the story model to answer when asked.

A pretrained model continues text; an assistant answers. SFT closes the gap with worked
examples: conversations written in a fixed template, and training on them with the pretraining
loss, but only where the assistant speaks. In the order of the lesson:

1. the chat template: each message between a role marker and an end marker, special tokens
   the tokenizer never splits (`render_chat`, `add_chat_tokens`, `encode_chat`);
2. one example: inputs and next-token targets, the prompt's targets ignored (-100) and the
   end marker trained, so the model learns to stop (`sft_example`; `chat_example` for a
   chat of several turns, every answer trained);
3. a batch: examples of different lengths right-padded to the longest, padded targets
   ignored (`collate`);
4. the loop: batches of examples, some pretraining text mixed in against forgetting, a loss
   in which every example counts the same (`example_loss`), the usual AdamW step
   (`finetune`);
5. the evaluation: greedy answers that stop at the end marker (`reply`), exact match on
   held-out questions, the rule on constraint stories (`evaluate`).

Shapes: B batch, T tokens per example (at most block_size), V vocabulary size.
Lessons 09 and 10 start from the shipped SFT model and reuse this template, `reply` and the
tasks of `gptcourse.data.tasks`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from gptcourse.data.tasks import Task, meets_constraints
from gptcourse.model import GPT, GPTConfig
from gptcourse.pretraining import (IGNORE_INDEX, LiveLossPlot, StopRequest, TrainingRun,
                                   _finite, _progress_bar, cross_entropy, estimate_loss)
from gptcourse.tokenizer import ENDOFTEXT, Tokenizer

# --- the chat template -----------------------------------------------------------------------

ROLES = ("system", "user", "assistant")
ROLE_TOKENS = {role: f"<|{role}|>" for role in ROLES}
END = "<|end|>"  # ends every message; after the assistant's, it means "I am done"
CHAT_TOKENS = (*ROLE_TOKENS.values(), END)
PAD = ENDOFTEXT  # pads a batch; never a target, and never the end marker (see `collate`)


def render_chat(messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
    """The conversation as one text in the chat template.

    Each message {"role": ..., "content": ...} becomes `<|role|> content<|end|>`, in the order
    given; the space after the marker makes the message's first word the same token as in
    running text (" red", not "red"). With add_generation_prompt, `<|assistant|>` follows, so
    that the model's next tokens are the assistant's answer. Raises ValueError for an empty
    list, an unknown role, a system message anywhere but first, or content that contains a
    marker (which would let a user forge a turn).
    """
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError("render_chat needs a non-empty list of messages like "
                         "[{'role': 'user', 'content': 'Where did Mia go?'}]")
    parts = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            raise ValueError(f"message {i} must be a dict with the keys 'role' and 'content', "
                             f"got {message!r:.80}")
        role, content = message["role"], message["content"]
        if role not in ROLE_TOKENS:
            raise ValueError(f"message {i} has the role {role!r}; the roles are "
                             f"{', '.join(ROLES)}")
        if role == "system" and i > 0:
            raise ValueError(f"message {i} is a system message: only the first message may be")
        if not isinstance(content, str):
            raise ValueError(f"message {i}'s content must be a string, got "
                             f"{type(content).__name__}")
        forged = [t for t in (*CHAT_TOKENS, PAD) if t in content]
        if forged:
            raise ValueError(f"message {i}'s content contains the marker {forged[0]!r}; "
                             f"markers belong to the template, not to a message")
        parts.append(f"{ROLE_TOKENS[role]} {content}{END}")
    if add_generation_prompt:
        parts.append(ROLE_TOKENS["assistant"])
    return "".join(parts)


def add_chat_tokens(model: GPT, tokenizer: Tokenizer) -> tuple[GPT, Tokenizer]:
    """A copy of (model, tokenizer) that knows the chat markers: the tokenizer gains
    CHAT_TOKENS as special tokens with the next free ids, and the model's embedding (and so
    its tied output head) grows by one row for each.

    A new row is the mean of the trained rows. Starting at the centre of the embeddings keeps
    the new tokens' scores ordinary (each is the mean of the old tokens' scores, so no new
    token takes over the predictions), and an input vector the blocks have seen the like of.
    Rows, and so the scores of the old tokens on any text without markers, are unchanged.
    A tokenizer that already has the markers is returned as it is, with the model copied.
    """
    import copy

    if all(t in tokenizer.special_tokens for t in CHAT_TOKENS):
        if max(tokenizer.special_tokens[t] for t in CHAT_TOKENS) >= model.config.vocab_size:
            raise ValueError(f"the tokenizer's chat markers have ids beyond the model's "
                             f"vocab_size={model.config.vocab_size}: they do not belong together")
        return copy.deepcopy(model), tokenizer
    if any(t in tokenizer.special_tokens for t in CHAT_TOKENS):
        raise ValueError(f"the tokenizer has some of the chat markers {CHAT_TOKENS} but not all")
    first = max(tokenizer.vocab_size, model.config.vocab_size)
    special = {**tokenizer.special_tokens, **{t: first + k for k, t in enumerate(CHAT_TOKENS)}}
    chat_tokenizer = Tokenizer(tokenizer.merges, tokenizer.pattern, special, tokenizer.byte_ids)
    config = GPTConfig(**{**vars(model.config), "vocab_size": first + len(CHAT_TOKENS)})
    grown = GPT(config).to(model.wte.weight.device)
    weights = model.state_dict()
    old = weights["wte.weight"]  # (V, C)
    new_rows = old.mean(dim=0, keepdim=True).expand(config.vocab_size - old.size(0), -1)
    weights["wte.weight"] = weights["lm_head.weight"] = torch.cat([old, new_rows])
    grown.load_state_dict(weights)
    return grown.train(model.training), chat_tokenizer


def chat_ids(tokenizer: Tokenizer) -> dict[str, int]:
    """The ids of the chat markers and of the padding token; a ValueError names what a
    tokenizer without them lacks."""
    missing = [t for t in (*CHAT_TOKENS, PAD) if t not in tokenizer.special_tokens]
    if missing:
        raise ValueError(f"this tokenizer has no {', '.join(missing)}: it is not a chat "
                         f"tokenizer. Make one with add_chat_tokens(model, tokenizer), or "
                         f"load the SFT model with load_course_model('sft')")
    return {t: tokenizer.special_tokens[t] for t in (*CHAT_TOKENS, PAD)}


def encode_chat(tokenizer: Tokenizer, messages: list[dict[str, str]],
                add_generation_prompt: bool = False, block_size: int | None = None) -> list[int]:
    """The token ids of `render_chat(messages, add_generation_prompt)`. With block_size, a
    chat longer than the context raises a ValueError naming both lengths (no turn is cut
    silently: an answer to half a story would be a wrong answer)."""
    chat_ids(tokenizer)
    ids = tokenizer.encode(render_chat(messages, add_generation_prompt),
                           allowed_special=set(CHAT_TOKENS))
    if block_size is not None and len(ids) > block_size:
        raise ValueError(f"the chat is {len(ids)} tokens long, more than the model's context "
                         f"of block_size={block_size} tokens; shorten the messages or leave "
                         f"out the oldest turns")
    return ids


# --- examples and batches --------------------------------------------------------------------

def sft_example(prompt_ids: list[int], answer_ids: list[int],
                end_id: int) -> tuple[list[int], list[int]]:
    """(inputs, targets) of one conversation, each of length len(prompt) + len(answer).

    The sequence is prompt + answer + [end_id]; inputs are all of it but its last token,
    targets all but its first (targets[t] is the token after inputs[t]). The targets of the
    first len(prompt) - 1 positions are IGNORE_INDEX: the prompt is given, not learned. The
    last prompt position predicts the answer's first token, and the last answer position
    predicts end_id, which is how the model learns to stop.
    """
    if len(prompt_ids) == 0:
        raise ValueError("the prompt must hold at least one token (the assistant's marker) "
                         "to predict the answer from")
    sequence = [*prompt_ids, *answer_ids, end_id]
    inputs, targets = sequence[:-1], sequence[1:]
    n_ignored = len(prompt_ids) - 1
    return inputs, [IGNORE_INDEX] * n_ignored + targets[n_ignored:]


def unmasked_example(prompt_ids: list[int], answer_ids: list[int],
                     end_id: int) -> tuple[list[int], list[int]]:
    """Like `sft_example`, but every position is trained, the prompt's too: the ablation that
    shows what the mask is for."""
    sequence = [*prompt_ids, *answer_ids, end_id]
    return sequence[:-1], sequence[1:]


def collate(examples: list[tuple[list[int], list[int]]],
            pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch: x and y, each (B, T) LongTensors with T the longest example's length.

    Each example is (inputs, targets) of equal length; shorter ones are right-padded, inputs
    with pad_id and targets with IGNORE_INDEX. Padding on the right comes after the real
    tokens, so the causal mask keeps them from seeing it; and because padded targets are
    ignored by their position, never by comparing ids, an end marker that happens to equal
    pad_id would still be trained.
    """
    if not examples:
        raise ValueError("collate needs at least one example")
    for i, (inputs, targets) in enumerate(examples):
        if len(inputs) != len(targets) or not inputs:
            raise ValueError(f"example {i} has {len(inputs)} inputs and {len(targets)} "
                             f"targets; they must be equal and at least 1")
    T = max(len(inputs) for inputs, _ in examples)
    x = torch.full((len(examples), T), pad_id, dtype=torch.long)
    y = torch.full((len(examples), T), IGNORE_INDEX, dtype=torch.long)
    for b, (inputs, targets) in enumerate(examples):
        x[b, :len(inputs)] = torch.tensor(inputs, dtype=torch.long)
        y[b, :len(targets)] = torch.tensor(targets, dtype=torch.long)
    return x, y


def chat_example(tokenizer: Tokenizer, messages: list[dict[str, str]],
                 masked: bool = True) -> tuple[list[int], list[int]]:
    """(inputs, targets) of a whole chat that ends with an assistant message: every
    assistant message is an answer to learn, with all that comes before it as its prompt
    (`sft_example`, turn by turn), so its tokens and its end marker are trained and the rest
    is -100. For one question and its answer this is sft_example of the two. masked=False
    trains every position (`unmasked_example`)."""
    if not messages or messages[-1].get("role") != "assistant":
        raise ValueError("a chat to learn from ends with the assistant's answer")
    end = chat_ids(tokenizer)[END]
    make = sft_example if masked else unmasked_example
    inputs: list[int] = []
    targets: list[int] = []
    for k, message in enumerate(messages):
        if message["role"] == "assistant":
            prompt = encode_chat(tokenizer, messages[:k], add_generation_prompt=True)
            answer = tokenizer.encode_ordinary(" " + message["content"])  # the template's space
            inputs, turn_targets = make(prompt, answer, end)
            targets = targets + turn_targets[len(targets):]  # earlier answers stay trained
    return inputs, targets


def encode_tasks(tokenizer: Tokenizer, tasks: Sequence[Task], block_size: int,
                 masked: bool = True) -> list[tuple[list[int], list[int]]]:
    """`chat_example` of every task's chat that fits in the context; raises ValueError when
    none does."""
    examples = [chat_example(tokenizer, task.messages, masked) for task in tasks]
    examples = [e for e in examples if len(e[0]) <= block_size]
    if not examples:
        raise ValueError(f"none of the {len(tasks)} tasks fits in the context of "
                         f"block_size={block_size} tokens: there is nothing to train on")
    return examples


# --- the loop --------------------------------------------------------------------------------

@dataclass(frozen=True)
class SFTData:
    """What `finetune` trains and measures on: training and held-out examples, and the
    pretraining streams (train ids mixed into batches against forgetting, validation ids to
    measure forgetting)."""

    train: list[tuple[list[int], list[int]]]
    heldout: list[tuple[list[int], list[int]]]
    pretrain_train: torch.Tensor
    pretrain_val: torch.Tensor


def sft_batch(data: SFTData, batch_size: int, mix: int, pad_id: int,
              generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """batch_size examples drawn at random, collated, and `mix` more rows of plain pretraining
    text of the same length (every target trained): x, y (batch_size + mix, T)."""
    picks = torch.randint(0, len(data.train), (batch_size,), generator=generator).tolist()
    x, y = collate([data.train[i] for i in picks], pad_id)
    if mix:
        T, stream = x.size(1), data.pretrain_train
        starts = torch.randint(0, len(stream) - T, (mix,), generator=generator)
        windows = stream[starts[:, None] + torch.arange(T + 1)]  # (mix, T + 1)
        x = torch.cat([x, windows[:, :-1]])
        y = torch.cat([y, windows[:, 1:]])
    return x, y


def example_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The training loss of a batch: each row's mean cross-entropy over its trained targets,
    then the mean over the rows that have any. logits (B, T, V), targets (B, T) -> a scalar.

    A mean over all trained tokens instead would let a whole story (200 targets) outweigh a
    one-word answer (2 targets) a hundredfold; per row, every example counts the same.
    """
    per_token = torch.nn.functional.cross_entropy(
        logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX,
        reduction="none").view(targets.shape)  # (B, T), 0 where ignored
    keep = targets != IGNORE_INDEX
    counts = keep.sum(dim=1)  # (B,)
    rows = counts > 0
    return (per_token.sum(dim=1)[rows] / counts[rows]).mean()


@torch.no_grad()
def sft_loss(model: GPT, examples: list[tuple[list[int], list[int]]], pad_id: int,
             batch_size: int = 16) -> float:
    """The mean loss over the trained targets of `examples` (all of them, in order)."""
    was_training = model.training
    model.eval()
    device = model.wte.weight.device
    total, count = 0.0, 0
    for i in range(0, len(examples), batch_size):
        x, y = collate(examples[i:i + batch_size], pad_id)
        n = int((y != IGNORE_INDEX).sum())
        total += model(x.to(device), y.to(device))[1].item() * n
        count += n
    model.train(was_training)
    return total / count


def finetune(run: TrainingRun, data: SFTData, *, mix: int = 0, eval_examples: int = 64,
             progress: bool = True, time_limit: float | None = None,
             on_eval: Callable[[TrainingRun], None] | None = None,
             save: Callable[[TrainingRun], None] | None = None) -> TrainingRun:
    """Fine-tune run.model on data.train until the end of run.settings' schedule (or for at
    most time_limit seconds), as `pretraining.train` pretrains: the scheduled learning rate,
    AdamW, the gradient clipped.

    Each batch holds settings.batch_size examples and `mix` rows of pretraining text; its loss
    is the examples' `example_loss` (every example counting the same) plus the pretraining
    loss of the mixed-in rows (so that what pretraining taught stays in practice). Every
    eval_every steps, before the first and at the end, a row joins run.log: the SFT loss on
    the first eval_examples training and held-out examples ("train_loss", "val_loss") and the
    pretraining validation loss ("pretrain_val_loss", forgetting); then on_eval(run) and
    save(run). The stop button ends the loop cleanly after the step under way; a loss that is
    not finite raises FloatingPointError before anything is saved.
    """
    settings, model, optimizer = run.settings, run.model, run.optimizer
    pad_id = run.tokenizer.special_tokens[PAD]
    device = run.device
    model.train()
    started, seconds_before = time.perf_counter(), run.seconds
    last_loss = None

    def evaluate() -> None:
        row = {"step": run.step, "lr": settings.lr(max(run.step - 1, 0)),
               "batch_loss": last_loss,
               "train_loss": sft_loss(model, data.train[:eval_examples], pad_id),
               "val_loss": sft_loss(model, data.heldout[:eval_examples], pad_id),
               "pretrain_val_loss": estimate_loss(model, data.pretrain_val, 16,
                                                  settings.eval_batches, seed=settings.seed),
               "seconds": round(run.seconds, 2)}
        row["tokens"] = run.log[-1]["tokens"] + tokens if run.log else 0
        _finite(row["train_loss"] + row["val_loss"] + row["pretrain_val_loss"], run.step)
        run.log.append(row)
        if on_eval is not None:
            on_eval(run)
        if save is not None:
            save(run)

    tokens = 0  # trained on since the last evaluation
    with _progress_bar(run.step, settings.steps, disable=not progress) as bar, \
            StopRequest() as stop:
        if run.step == 0 and not run.log:
            evaluate()
        while run.step < settings.steps and not stop.requested:
            if time_limit is not None and time.perf_counter() - started > time_limit:
                stop.requested = True
                break
            lr = settings.lr(run.step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = sft_batch(data, settings.batch_size, mix, pad_id, run.generator)
            logits, y = model(x.to(device))[0], y.to(device)
            n = settings.batch_size
            loss = example_loss(logits[:n], y[:n])
            if mix:  # plus the pretraining loss on the mixed-in text, against forgetting
                loss = loss + cross_entropy(logits[n:], y[n:])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            last_loss = _finite(loss.item(), run.step)
            optimizer.step()
            run.step += 1
            tokens += int((y != IGNORE_INDEX).sum())
            run.seconds = seconds_before + time.perf_counter() - started
            bar.set_postfix(loss=f"{last_loss:.3f}", lr=f"{lr:.2e}", refresh=False)
            bar.update(1)
            if run.step % settings.eval_every == 0 or run.step == settings.steps:
                evaluate()
                tokens = 0
        if stop.requested and (not run.log or run.log[-1]["step"] != run.step):
            evaluate()
            bar.write(f"stopped at step {run.step} of {settings.steps}; the model keeps what "
                      f"it learned")
    return run


# --- answering and evaluation ----------------------------------------------------------------

@torch.no_grad()
def reply(model: GPT, tokenizer: Tokenizer, messages: list[dict[str, str]],
          max_new_tokens: int = 64) -> tuple[str, bool]:
    """(the assistant's answer, whether it ended with the end marker): greedy decoding after
    the chat and its generation prompt, stopping at the end marker, after max_new_tokens, or
    when the context is full. Raises ValueError when the chat alone does not fit."""
    block_size = model.config.block_size
    ids = encode_chat(tokenizer, messages, add_generation_prompt=True, block_size=block_size)
    end = chat_ids(tokenizer)[END]
    was_training = model.training
    model.eval()
    device = model.wte.weight.device
    caches = model.new_caches(1)
    new = torch.tensor([ids], dtype=torch.long, device=device)
    out: list[int] = []
    ended = False
    try:
        for _ in range(min(max_new_tokens, block_size - len(ids))):
            token = int(model.lm_head(model.features(new, caches)[:, -1]).argmax(-1))
            if token == end:
                ended = True
                break
            out.append(token)
            new = torch.tensor([[token]], dtype=torch.long, device=device)
    finally:
        model.train(was_training)
    return tokenizer.decode(out).strip(), ended


def leaks_template(text: str) -> bool:
    """Whether an answer contains template text: a marker, or its pieces spelled out."""
    return any(t in text for t in (*CHAT_TOKENS, PAD)) or "<|" in text or "|>" in text


def evaluate(model: GPT, tokenizer: Tokenizer, tasks: Sequence[Task], max_new_tokens: int = 64,
             progress: bool = False) -> dict[str, float]:
    """Rates over `tasks` (in [0, 1]): "exact_match" of the story questions, "meets_rule" of
    the constraint stories, and over all answers "ended" (the end marker within
    max_new_tokens) and "leaked" (template text in the answer). A rate of no tasks is nan."""
    from tqdm.auto import tqdm

    counts = {"question": 0, "story": 0, "exact_match": 0, "meets_rule": 0, "ended": 0,
              "leaked": 0}
    for task in tqdm(tasks, desc="answering", disable=not progress, mininterval=0.5):
        answer, ended = reply(model, tokenizer, task.messages[:1], max_new_tokens)
        counts[task.kind] += 1
        if task.kind == "question":
            counts["exact_match"] += answer == task.answer
        else:
            counts["meets_rule"] += meets_constraints(answer, task.constraints)
        counts["ended"] += ended
        counts["leaked"] += leaks_template(answer)
    rate = lambda k, n: counts[k] / n if n else math.nan  # noqa: E731
    n = counts["question"] + counts["story"]
    return {"exact_match": rate("exact_match", counts["question"]),
            "meets_rule": rate("meets_rule", counts["story"]),
            "ended": rate("ended", n), "leaked": rate("leaked", n),
            "questions": counts["question"], "stories": counts["story"]}


# --- pictures --------------------------------------------------------------------------------

def show_example(tokenizer: Tokenizer, inputs: Sequence[int], targets: Sequence[int],
                 ) -> "TrainedTokens":
    """One example's tokens, each coloured by whether the loss trains what follows it: the
    target of inputs[t] is targets[t]. In a notebook, trained tokens are green and ignored
    ones grey; as text, trained tokens are marked with [ ]. The last target (after the last
    input) is shown as the final box."""
    from gptcourse.tokenizer import token_text

    shown = [token_text(tokenizer.token_bytes(i)) for i in [*inputs, targets[-1]]]
    # box k is coloured by whether it is *predicted*: input k is the target of position k - 1
    trained = [False] + [t != IGNORE_INDEX for t in targets]
    return TrainedTokens(shown, trained)


class TrainedTokens:
    def __init__(self, tokens: list[str], trained: list[bool]) -> None:
        self.tokens, self.trained = tokens, trained

    def __repr__(self) -> str:
        return "".join(f"[{t}]" if keep else t for t, keep in zip(self.tokens, self.trained))

    def _repr_html_(self) -> str:
        import html

        spans = "".join(
            f'<span style="background:{"#aceebb" if keep else "#eaeef2"};'
            f'color:{"#1f2328" if keep else "#6e7781"};padding:1px 0;margin:0 1px;'
            f'border-radius:3px;white-space:pre">{html.escape(t.replace(" ", "·"))}</span>'
            for t, keep in zip(self.tokens, self.trained))
        n = sum(self.trained)
        return (f'<div style="font-family:monospace;line-height:1.9">{spans}'
                f'<div style="color:#57606a;font-size:smaller">{n} of {len(self.tokens) - 1} '
                f'predictions trained (green): the answer and the end marker; the prompt '
                f'(grey) is given</div></div>')


def plot_sft(log: list[dict], ax=None, title: str = ""):
    """An SFT run's curves against the step: the loss on the answers of training and of
    held-out tasks, and the pretraining validation loss (forgetting). Returns the Axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.4))
    steps = [row["step"] for row in log]
    for key, label in (("train_loss", "answers, training tasks"),
                       ("val_loss", "answers, held-out tasks"),
                       ("pretrain_val_loss", "stories: pretraining validation (forgetting)")):
        ax.plot(steps, [row[key] for row in log], "o-", ms=3, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


class LiveSFTPlot(LiveLossPlot):
    """`plot_sft` redrawn in a notebook at every evaluation: pass its `update` as `on_eval`
    to `finetune`. Outside a notebook it draws nothing."""

    def __init__(self, title: str = "fine-tuning") -> None:
        super().__init__(title)

    def draw(self, run: TrainingRun):
        """The figure for `run` as it is now (a matplotlib Figure)."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.4))
        plot_sft(run.log, ax=ax, title=f"{self.title} (step {run.step})")
        return fig
