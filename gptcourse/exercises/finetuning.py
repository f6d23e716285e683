"""Checks for lesson 08, supervised fine-tuning."""

from __future__ import annotations

import torch

from gptcourse import finetuning
from gptcourse.exercises.contract import Case, Exercise, Mistake, Outcome
from gptcourse.exercises.registration import register
from gptcourse.finetuning import END, IGNORE_INDEX, ROLE_TOKENS, ROLES

# --- render_chat -----------------------------------------------------------------------------


def _m(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


_STORY = "Mia had a red kite. One day, Mia and Pip went to the park."


def _render_chat_cases(seed: int) -> list[Case]:
    names = ["Mia", "Tom", "Ivy"][seed % 3]
    question = f"Where did {names} go?"
    return [
        Case("one user message", ([_m("user", "Hello!")],)),
        Case("a question and its answer", ([_m("user", question), _m("assistant", "park")],)),
        Case("a system message first", ([_m("system", "Answer in one word."),
                                         _m("user", question), _m("assistant", "park")],)),
        Case("the prompt for the model's answer: add_generation_prompt=True",
             ([_m("user", f"{_STORY}\n\n{question}")],), {"add_generation_prompt": True}),
        Case("two turns, then the prompt for the next answer",
             ([_m("system", "Be brief."), _m("user", "What colour was the kite?"),
               _m("assistant", "red"), _m("user", question)],), {"add_generation_prompt": True}),
        Case("the assistant speaks first (any order is kept as given)",
             ([_m("assistant", "Ask me about a story."), _m("user", question)],)),
        Case("an empty list must be refused with a ValueError", ([],), probe="raises"),
        Case("an unknown role must be refused with a ValueError",
             ([_m("user", "Hi"), _m("narrator", "Once upon a time")],), probe="raises"),
    ]


def _chat(messages, add_generation_prompt=False, *, end=END, space=" ", order=None,
          prompt=ROLE_TOKENS["assistant"], check=True):
    if check and (not messages or any(m["role"] not in ROLES for m in messages)):
        raise ValueError("bad messages")
    if order is not None:
        messages = order(messages)
    text = "".join(f"<|{m['role']}|>{space}{m['content']}{end}" for m in messages)
    return text + (prompt if add_generation_prompt else "")


def _rendered(**change):
    """A wrong render_chat: _chat with one thing changed."""
    def wrong(messages, add_generation_prompt=False):
        return _chat(messages, add_generation_prompt, **change)
    return wrong


def _refused(case: Case, outcome: Outcome) -> bool:
    """An input that must be refused was accepted, or refused with another kind of error."""
    return case.probe == "raises" and outcome.error is None and \
        outcome.value != ("raised", "ValueError")


register(Exercise(
    id="finetuning.render_chat",
    title="the chat template",
    points=1,
    reference=finetuning.render_chat,
    make_cases=_render_chat_cases,
    mistakes=(
        Mistake("Every message ends with the end marker, <|end|>, the assistant's answer too: "
                "it is the token the model learns to produce when it has finished, so without "
                "it the model never learns to stop.",
                wrong=_rendered(end="")),
        Mistake("Keep the messages in the order given: the template is the conversation as it "
                "happened, turn after turn, not grouped or sorted by role.",
                wrong=_rendered(order=lambda ms: sorted(ms, key=lambda m: ROLES.index(m["role"])))),
        Mistake("Keep the messages in the order given: the template is the conversation as it "
                "happened, turn after turn, not reversed.",
                wrong=_rendered(order=lambda ms: ms[::-1])),
        Mistake("Put one space between the role marker and the content, `<|user|> Hello!`: "
                "then the first word is the same token as in running text (' red', not "
                "'red').",
                wrong=_rendered(space="")),
        Mistake("With add_generation_prompt=True, end the text with the assistant's marker "
                "`<|assistant|>` and nothing after it (no space: the model's first token "
                "brings its own), so that what the model writes next is the answer.",
                wrong=_rendered(prompt="")),
        Mistake("With add_generation_prompt=True, end the text with the assistant's marker "
                "`<|assistant|>` and nothing after it (no space: the model's first token "
                "brings its own), so that what the model writes next is the answer.",
                wrong=_rendered(prompt=ROLE_TOKENS["assistant"] + " ")),
        Mistake("Refuse what cannot be rendered with `raise ValueError(...)` and a message "
                "that says what was expected: an empty list of messages, and a role that is "
                "not one of 'system', 'user', 'assistant'.",
                symptom=_refused),
    ),
    hint="For each message in order: f\"<|{role}|> {content}<|end|>\"; join them; with "
         "add_generation_prompt add \"<|assistant|>\"; raise ValueError for an empty list or "
         "an unknown role.",
))


# --- sft_example -----------------------------------------------------------------------------

def _ids(g: torch.Generator, n: int, low: int, high: int) -> list[int]:
    return torch.randint(low, high, (n,), generator=g).tolist()


def _sft_example_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    # prompt ids below 100, answer ids from 100, the end marker 999: a misplaced mask or
    # shift shows in which ids land where
    return [
        Case("a prompt of 4 tokens, an answer of 2", ([11, 12, 13, 14], [101, 102], 999)),
        Case("a one-token answer", ([21, 22, 23], [105], 999)),
        Case("an empty answer: only the end marker is learned", ([31, 32, 33], [], 999)),
        Case("a one-token prompt (the assistant's marker alone)", ([7], [110, 111, 112], 999)),
        Case("random ids: a prompt of 9, an answer of 5",
             (_ids(g, 9, 0, 100), _ids(g, 5, 100, 200), 998)),
        Case("random ids: a prompt of 20, an answer of 12",
             (_ids(g, 20, 0, 100), _ids(g, 12, 100, 200), 997)),
    ]


def _example(prompt, answer, end, *, ignored=None, shift=1, end_token=True, end_target=True):
    sequence = [*prompt, *answer, *([end] if end_token else [])]
    inputs = sequence[:-1]
    targets = (sequence[shift:] + [IGNORE_INDEX] * (shift - 1))[:len(inputs)]
    n = len(prompt) - 1 if ignored is None else ignored(len(prompt))
    targets = [IGNORE_INDEX] * n + targets[n:]
    if not end_target:
        targets[-1] = IGNORE_INDEX
    return inputs, targets


register(Exercise(
    id="finetuning.sft_example",
    title="one example: the loss on the answer only",
    points=1,
    reference=finetuning.sft_example,
    make_cases=_sft_example_cases,
    mistakes=(
        Mistake("The prompt's targets are trained too: set the targets of the first "
                "len(prompt_ids) - 1 positions to -100. The model is given the prompt; "
                "learning to predict it (the story, the question) is not what SFT is for.",
                wrong=finetuning.unmasked_example),
        Mistake("The targets are not shifted: targets[t] must be the token *after* "
                "inputs[t], so take inputs = sequence[:-1] and targets = sequence[1:] of "
                "sequence = prompt + answer + [end_id].",
                wrong=lambda p, a, e: _example(p, a, e, shift=0)),
        Mistake("The targets are shifted twice: targets = sequence[1:] is already the next "
                "token at every position; shifting again makes each position predict two "
                "tokens ahead.",
                wrong=lambda p, a, e: _example(p, a, e, shift=2)),
        Mistake("The mask is off by one: the last prompt position (the assistant's marker) "
                "predicts the answer's first token, so it must be trained. Ignore the first "
                "len(prompt_ids) - 1 targets, not len(prompt_ids).",
                wrong=lambda p, a, e: _example(p, a, e, ignored=lambda n: n)),
        Mistake("The mask is off by one the other way: the target of position "
                "len(prompt_ids) - 2 is the assistant's marker, part of the prompt; ignore "
                "the first len(prompt_ids) - 1 targets.",
                wrong=lambda p, a, e: _example(p, a, e, ignored=lambda n: max(n - 2, 0))),
        Mistake("The end marker is not trained: append end_id after the answer and keep it "
                "as the last target. It is how the model learns to stop; without it, it "
                "never does.",
                wrong=lambda p, a, e: _example(p, a, e, end_target=False)),
        Mistake("The end marker is not trained: append end_id after the answer and keep it "
                "as the last target. It is how the model learns to stop; without it, it "
                "never does.",
                wrong=lambda p, a, e: _example(p, a, e, end_token=False)),
    ),
    hint="sequence = prompt_ids + answer_ids + [end_id]; inputs = sequence[:-1]; targets = "
         "sequence[1:] with its first len(prompt_ids) - 1 entries replaced by -100.",
))


# --- collate ---------------------------------------------------------------------------------

def _collate_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    end = 900

    def example(n_prompt: int, n_answer: int) -> tuple[list[int], list[int]]:
        return finetuning.sft_example(_ids(g, n_prompt, 1, 100), _ids(g, n_answer, 100, 200),
                                      end)

    return [
        Case("one example, nothing to pad", ([example(3, 2)], 0)),
        Case("two examples of lengths 5 and 3", ([example(3, 2), example(2, 1)], 0)),
        Case("three examples, the longest in the middle",
             ([example(2, 2), example(6, 4), example(3, 1)], 7)),
        Case("the padding id equals the end marker's id (900): ends must still be trained",
             ([example(4, 3), example(2, 1), example(3, 5)], end)),
        Case("random lengths, 6 examples", ([example(int(n), int(m)) for n, m in zip(
            torch.randint(1, 12, (6,), generator=g), torch.randint(0, 8, (6,), generator=g))],
            3)),
    ]


def _collate(examples, pad_id, *, side="right", pad_targets=IGNORE_INDEX, pad_inputs=None,
             mask_by_id=False):
    T = max(len(x) for x, _ in examples)
    rows_x, rows_y = [], []
    for inputs, targets in examples:
        n = T - len(inputs)
        fill_x = [pad_id if pad_inputs is None else pad_inputs] * n
        fill_y = [pad_targets] * n
        rows_x.append(inputs + fill_x if side == "right" else fill_x + inputs)
        rows_y.append(targets + fill_y if side == "right" else fill_y + targets)
    x, y = torch.tensor(rows_x), torch.tensor(rows_y)
    if mask_by_id:
        y = torch.where(y == pad_id, IGNORE_INDEX, y)
    return x, y


register(Exercise(
    id="finetuning.collate",
    title="padding a batch",
    points=1,
    reference=finetuning.collate,
    make_cases=_collate_cases,
    mistakes=(
        Mistake("The padded targets are trained: pad the targets with -100, not with "
                "pad_id, so that the loss ignores the padding.",
                wrong=lambda e, p: _collate(e, p, pad_targets=p)),
        Mistake("The padding is masked by comparing ids (targets == pad_id), which also masks "
                "every real target that happens to have that id: here the padding id is the "
                "end marker's, so the model would never learn to stop. Pad the targets with "
                "-100 by position instead.",
                wrong=lambda e, p: _collate(e, p, pad_targets=p, mask_by_id=True)),
        Mistake("Pad on the right, after the real tokens: x[b, :len(inputs)] = inputs. With "
                "padding on the left, the positions shift and the tokens read the padding "
                "before the text.",
                wrong=lambda e, p: _collate(e, p, side="left")),
        Mistake("Pad the inputs with pad_id and only the targets with -100: -100 is no token "
                "id, and the embedding cannot look it up.",
                wrong=lambda e, p: _collate(e, p, pad_inputs=IGNORE_INDEX)),
    ),
    hint="T = the longest example's length; x = torch.full((B, T), pad_id), y = "
         "torch.full((B, T), -100), both torch.long; copy each example into the start of "
         "its row.",
))
