"""Lesson 08's checks reject plausible wrong fine-tuning code, each with a hint that names the
mistake, and accept differently written correct code."""

import numpy as np
import torch

from catalogue import catalogue_tests

# --- finetuning.render_chat ------------------------------------------------------------------

ROLES = ("system", "user", "assistant")


def _refuse(messages):
    if not messages:
        raise ValueError("no messages")
    for m in messages:
        if m["role"] not in ROLES:
            raise ValueError(f"unknown role {m['role']}")


def chat_by_join(messages, add_generation_prompt=False):
    _refuse(messages)
    text = "".join(f"<|{m['role']}|> {m['content']}<|end|>" for m in messages)
    return text + ("<|assistant|>" if add_generation_prompt else "")


def chat_by_appending(messages, add_generation_prompt=False):
    if len(messages) == 0:
        raise ValueError("expected at least one message")
    parts = []
    for message in messages:
        role = message["role"]
        if role not in {"system": 0, "user": 1, "assistant": 2}:
            raise ValueError(f"unknown role {role!r}")
        parts += ["<|" + role + "|>", " ", message["content"], "<|end|>"]
    if add_generation_prompt:
        parts.append("<|assistant|>")
    return "".join(parts)


def chat_without_end_marker(messages, add_generation_prompt=False):
    _refuse(messages)
    text = "".join(f"<|{m['role']}|> {m['content']}" for m in messages)
    return text + ("<|assistant|>" if add_generation_prompt else "")


def chat_end_marker_only_between_messages(messages, add_generation_prompt=False):
    _refuse(messages)
    text = "<|end|>".join(f"<|{m['role']}|> {m['content']}" for m in messages)
    return text + ("<|assistant|>" if add_generation_prompt else "")


def chat_roles_grouped(messages, add_generation_prompt=False):
    _refuse(messages)
    ordered = [m for role in ROLES for m in messages if m["role"] == role]
    return chat_by_join(ordered, add_generation_prompt)


def chat_reversed(messages, add_generation_prompt=False):
    _refuse(messages)
    return chat_by_join(messages[::-1], add_generation_prompt)


def chat_without_space(messages, add_generation_prompt=False):
    _refuse(messages)
    text = "".join(f"<|{m['role']}|>{m['content']}<|end|>" for m in messages)
    return text + ("<|assistant|>" if add_generation_prompt else "")


def chat_ignores_generation_prompt(messages, add_generation_prompt=False):
    return chat_by_join(messages)


def chat_generation_prompt_with_space(messages, add_generation_prompt=False):
    return chat_by_join(messages) + ("<|assistant|> " if add_generation_prompt else "")


def chat_accepts_anything(messages, add_generation_prompt=False):
    text = "".join(f"<|{m['role']}|> {m['content']}<|end|>" for m in messages)
    return text + ("<|assistant|>" if add_generation_prompt else "")


def chat_unknown_role_keyerror(messages, add_generation_prompt=False):
    if not messages:
        raise ValueError("no messages")
    markers = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
    text = "".join(f"{markers[m['role']]} {m['content']}<|end|>" for m in messages)
    return text + ("<|assistant|>" if add_generation_prompt else "")


# --- finetuning.sft_example ------------------------------------------------------------------

def example_by_slicing(prompt_ids, answer_ids, end_id):
    sequence = prompt_ids + answer_ids + [end_id]
    targets = sequence[1:]
    for t in range(len(prompt_ids) - 1):
        targets[t] = -100
    return sequence[:-1], targets


def example_mask_before_shifting(prompt_ids, answer_ids, end_id):
    """The mask built on the whole sequence first, then shifted with it."""
    sequence = prompt_ids + answer_ids + [end_id]
    trained = [False] * len(prompt_ids) + [True] * (len(answer_ids) + 1)
    targets = [tok if keep else -100 for tok, keep in zip(sequence[1:], trained[1:])]
    return sequence[:-1], targets


def example_by_numpy(prompt_ids, answer_ids, end_id):
    sequence = np.array(prompt_ids + answer_ids + [end_id])
    targets = sequence[1:].copy()
    targets[:len(prompt_ids) - 1] = -100
    return sequence[:-1].tolist(), targets.tolist()


def example_loss_on_prompt_too(prompt_ids, answer_ids, end_id):
    sequence = prompt_ids + answer_ids + [end_id]
    return sequence[:-1], sequence[1:]


def example_not_shifted(prompt_ids, answer_ids, end_id):
    sequence = prompt_ids + answer_ids + [end_id]
    inputs = sequence[:-1]
    return inputs, [-100] * (len(prompt_ids) - 1) + inputs[len(prompt_ids) - 1:]


def example_shifted_twice(prompt_ids, answer_ids, end_id):
    sequence = prompt_ids + answer_ids + [end_id]
    targets = sequence[2:] + [-100]
    return sequence[:-1], [-100] * (len(prompt_ids) - 1) + targets[len(prompt_ids) - 1:]


def example_first_answer_token_not_trained(prompt_ids, answer_ids, end_id):
    sequence = prompt_ids + answer_ids + [end_id]
    targets = sequence[1:]
    return sequence[:-1], [-100] * len(prompt_ids) + targets[len(prompt_ids):]


def example_end_token_not_appended(prompt_ids, answer_ids, end_id):
    sequence = prompt_ids + answer_ids
    targets = sequence[1:]
    return sequence[:-1], [-100] * (len(prompt_ids) - 1) + targets[len(prompt_ids) - 1:]


def example_end_token_masked(prompt_ids, answer_ids, end_id):
    inputs, targets = example_by_slicing(prompt_ids, answer_ids, end_id)
    return inputs, targets[:-1] + [-100]


# --- finetuning.collate ----------------------------------------------------------------------

def collate_by_full(examples, pad_id):
    T = max(len(x) for x, _ in examples)
    x = torch.full((len(examples), T), pad_id, dtype=torch.long)
    y = torch.full((len(examples), T), -100, dtype=torch.long)
    for b, (inputs, targets) in enumerate(examples):
        x[b, :len(inputs)] = torch.tensor(inputs)
        y[b, :len(targets)] = torch.tensor(targets)
    return x, y


def collate_by_list_comprehension(examples, pad_id):
    T = max(len(x) for x, _ in examples)
    x = [inputs + [pad_id] * (T - len(inputs)) for inputs, _ in examples]
    y = [targets + [-100] * (T - len(targets)) for _, targets in examples]
    return torch.tensor(x, dtype=torch.long), torch.tensor(y, dtype=torch.long)


def collate_by_numpy(examples, pad_id):
    T = max(len(x) for x, _ in examples)
    x = np.full((len(examples), T), pad_id, dtype=np.int64)
    y = np.full((len(examples), T), -100, dtype=np.int64)
    for b, (inputs, targets) in enumerate(examples):
        x[b, :len(inputs)], y[b, :len(targets)] = inputs, targets
    return torch.from_numpy(x), torch.from_numpy(y)


def collate_padded_targets_trained(examples, pad_id):
    T = max(len(x) for x, _ in examples)
    x = [inputs + [pad_id] * (T - len(inputs)) for inputs, _ in examples]
    y = [targets + [pad_id] * (T - len(targets)) for _, targets in examples]
    return torch.tensor(x), torch.tensor(y)


def collate_masks_padding_by_id(examples, pad_id):
    x, y = collate_padded_targets_trained(examples, pad_id)
    return x, torch.where(y == pad_id, -100, y)


def collate_left_padded(examples, pad_id):
    T = max(len(x) for x, _ in examples)
    x = [[pad_id] * (T - len(inputs)) + inputs for inputs, _ in examples]
    y = [[-100] * (T - len(targets)) + targets for _, targets in examples]
    return torch.tensor(x), torch.tensor(y)


def collate_inputs_padded_with_ignore_index(examples, pad_id):
    T = max(len(x) for x, _ in examples)
    x = [inputs + [-100] * (T - len(inputs)) for inputs, _ in examples]
    y = [targets + [-100] * (T - len(targets)) for _, targets in examples]
    return torch.tensor(x), torch.tensor(y)


WRONG = {
    "finetuning.render_chat": {
        chat_without_end_marker: ["end marker", "stop"],
        chat_end_marker_only_between_messages: ["end marker"],
        chat_roles_grouped: ["order given"],
        chat_reversed: ["order given"],
        chat_without_space: ["one space"],
        chat_ignores_generation_prompt: ["add_generation_prompt=True"],
        chat_generation_prompt_with_space: ["nothing after it"],
        chat_accepts_anything: ["ValueError", "empty list"],
        chat_unknown_role_keyerror: ["ValueError", "role"],
    },
    "finetuning.sft_example": {
        example_loss_on_prompt_too: ["prompt's targets are trained", "-100"],
        example_not_shifted: ["not shifted"],
        example_shifted_twice: ["shifted twice"],
        example_first_answer_token_not_trained: ["off by one", "answer's first token"],
        example_end_token_not_appended: ["end marker is not trained", "stop"],
        example_end_token_masked: ["end marker is not trained"],
    },
    "finetuning.collate": {
        collate_padded_targets_trained: ["padded targets are trained", "-100"],
        collate_masks_padding_by_id: ["comparing ids", "end marker"],
        collate_left_padded: ["on the right"],
        collate_inputs_padded_with_ignore_index: ["inputs with pad_id"],
    },
}
CORRECT = {
    "finetuning.render_chat": [chat_by_join, chat_by_appending],
    "finetuning.sft_example": [example_by_slicing, example_mask_before_shifting,
                               example_by_numpy],
    "finetuning.collate": [collate_by_full, collate_by_list_comprehension, collate_by_numpy],
}

(test_wrong_implementation_is_rejected_with_feedback_naming_the_mistake,
 test_correct_variants_pass, test_the_stub_is_not_attempted) = catalogue_tests(WRONG, CORRECT)
