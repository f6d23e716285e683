"""Lesson 07's checks reject plausible wrong pretraining code, each with a hint that names the
mistake, and accept differently written correct code."""

import math

import torch
import torch.nn.functional as F

from catalogue import catalogue_tests


# --- pretraining.get_batch -------------------------------------------------------------------

def _starts(data, block_size, batch_size, generator, high=None):
    high = len(data) - block_size if high is None else high
    return torch.randint(0, high, (batch_size,), generator=generator)


def batch_targets_not_shifted(data, block_size, batch_size, generator):
    ix = _starts(data, block_size, batch_size, generator)
    x = torch.stack([data[i:i + block_size] for i in ix])
    return x, x.clone()


def batch_windows_run_past_the_end(data, block_size, batch_size, generator):
    ix = _starts(data, block_size, batch_size, generator, high=len(data) - block_size + 1)
    return (torch.stack([data[i:i + block_size] for i in ix]),
            torch.stack([data[i + 1:i + 1 + block_size] for i in ix]))


def batch_windows_run_past_the_end_by_indexing(data, block_size, batch_size, generator):
    ix = _starts(data, block_size, batch_size, generator, high=len(data) - block_size + 1)
    offsets = torch.arange(block_size)
    return data[ix[:, None] + offsets], data[ix[:, None] + offsets + 1]


def batch_never_reaches_the_last_token(data, block_size, batch_size, generator):
    ix = _starts(data, block_size, batch_size, generator, high=len(data) - block_size - 1)
    return (torch.stack([data[i:i + block_size] for i in ix]),
            torch.stack([data[i + 1:i + 1 + block_size] for i in ix]))


def batch_ignores_the_generator(data, block_size, batch_size, generator):
    ix = torch.randint(0, len(data) - block_size, (batch_size,))
    return (torch.stack([data[i:i + block_size] for i in ix]),
            torch.stack([data[i + 1:i + 1 + block_size] for i in ix]))


def batch_as_in_nanogpt(data, block_size, batch_size, generator):
    ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    x = torch.stack([data[i:i + block_size] for i in ix])
    y = torch.stack([data[i + 1:i + 1 + block_size] for i in ix])
    return x, y


def batch_by_unfold(data, block_size, batch_size, generator):
    ix = torch.randint(0, len(data) - block_size, (batch_size,), generator=generator)
    windows = data.unfold(0, block_size + 1, 1)[ix]  # (B, T + 1)
    return windows[:, :-1], windows[:, 1:]


# --- pretraining.cross_entropy ---------------------------------------------------------------

def _picked(log_probs, targets, keep):
    return log_probs.gather(-1, torch.where(keep, targets, 0).unsqueeze(-1)).squeeze(-1)


def ce_sum(logits, targets, ignore_index=-100):
    keep = targets != ignore_index
    return -(_picked(logits.log_softmax(-1), targets, keep) * keep).sum()


def ce_ignore_index_not_ignored(logits, targets, ignore_index=-100):
    return -logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).mean()


def ce_ignored_positions_in_the_mean(logits, targets, ignore_index=-100):
    keep = targets != ignore_index
    return -(_picked(logits.log_softmax(-1), targets, keep) * keep).mean()


def ce_fixed_ignore_index(logits, targets, ignore_index=-100):
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def ce_log_softmax_over_tokens(logits, targets, ignore_index=-100):
    keep = targets != ignore_index
    return -(_picked(logits.log_softmax(1), targets, keep) * keep).sum() / keep.sum()


def ce_log_of_softmax(logits, targets, ignore_index=-100):
    keep = targets != ignore_index
    log_probs = torch.log(torch.softmax(logits, dim=-1))
    return -(_picked(log_probs, targets, keep) * keep).sum() / keep.sum()


def ce_through_numpy(logits, targets, ignore_index=-100):
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=ignore_index)
    return torch.tensor(loss.item())


def ce_torch(logits, targets, ignore_index=-100):
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1),
                           ignore_index=ignore_index)


def ce_logsumexp_by_hand(logits, targets, ignore_index=-100):
    keep = (targets != ignore_index).float()
    safe = targets.clamp(min=0) * (targets != ignore_index)
    top = logits.max(dim=-1, keepdim=True).values
    lse = top.squeeze(-1) + (logits - top).exp().sum(-1).log()  # (B, T)
    right = torch.take_along_dim(logits, safe.unsqueeze(-1), dim=-1).squeeze(-1)
    return ((lse - right) * keep).sum() / keep.sum()


def ce_by_masked_select(logits, targets, ignore_index=-100):
    keep = targets != ignore_index
    return F.nll_loss(F.log_softmax(logits[keep], dim=-1), targets[keep])


# --- pretraining.lr_at -----------------------------------------------------------------------

def _cosine(step, warmup, max_steps, max_lr, min_lr, span=0, low=None):
    low = min_lr if low is None else low
    progress = (step - warmup) / (max_steps - warmup + span)
    return low + 0.5 * (1 + math.cos(math.pi * progress)) * (max_lr - low)


def lr_warmup_off_by_one(step, warmup, max_steps, max_lr, min_lr):
    if step < warmup:
        return max_lr * step / warmup
    return min_lr if step >= max_steps else _cosine(step, warmup, max_steps, max_lr, min_lr)


def lr_cosine_misses_min_lr(step, warmup, max_steps, max_lr, min_lr):
    if step < warmup:
        return max_lr * (step + 1) / warmup
    if step > max_steps:
        return min_lr
    return _cosine(step, warmup, max_steps, max_lr, min_lr, span=1)


def lr_rises_after_max_steps(step, warmup, max_steps, max_lr, min_lr):
    if step < warmup:
        return max_lr * (step + 1) / warmup
    return _cosine(step, warmup, max_steps, max_lr, min_lr)


def lr_decays_to_zero(step, warmup, max_steps, max_lr, min_lr):
    if step < warmup:
        return max_lr * (step + 1) / warmup
    return 0.0 if step >= max_steps else _cosine(step, warmup, max_steps, max_lr, min_lr, low=0.0)


def lr_divides_by_zero_warmup(step, warmup, max_steps, max_lr, min_lr):
    ramp = max_lr * (step + 1) / warmup
    if step < warmup:
        return ramp
    return min_lr if step >= max_steps else _cosine(step, warmup, max_steps, max_lr, min_lr)


def lr_with_torch_cos(step, warmup, max_steps, max_lr, min_lr):
    if step < warmup:
        return max_lr * (step + 1) / warmup
    if step >= max_steps:
        return min_lr
    progress = torch.tensor((step - warmup) / (max_steps - warmup))
    return min_lr + 0.5 * (1 + torch.cos(torch.pi * progress)) * (max_lr - min_lr)


def lr_written_with_clamps(step, warmup, max_steps, max_lr, min_lr):
    if step < warmup:
        return max_lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    return min_lr + (max_lr - min_lr) * (math.cos(math.pi * progress) + 1) / 2


def lr_with_torch(step, warmup, max_steps, max_lr, min_lr):
    if step < warmup:
        return max_lr * (step + 1) / warmup
    if step >= max_steps:
        return min_lr
    ratio = torch.tensor((step - warmup) / (max_steps - warmup), dtype=torch.float64)
    return float(min_lr + (max_lr - min_lr) * 0.5 * (1 + torch.cos(torch.pi * ratio)))


WRONG = {
    "pretraining.get_batch": {
        batch_targets_not_shifted: ["shifted by one"],
        batch_windows_run_past_the_end: ["block_size + 1 tokens"],
        batch_windows_run_past_the_end_by_indexing: ["block_size + 1 tokens"],
        batch_never_reaches_the_last_token: ["never drawn"],
        batch_ignores_the_generator: ["generator you were given"],
    },
    "pretraining.cross_entropy": {
        ce_sum: ["mean over the positions"],
        ce_ignore_index_not_ignored: ["must be left out"],
        ce_ignored_positions_in_the_mean: ["must not dilute the mean"],
        ce_fixed_ignore_index: ["`ignore_index` argument"],
        ce_log_softmax_over_tokens: ["the last axis"],
        ce_log_of_softmax: ["underflows"],
        ce_through_numpy: ["gradient does not flow"],
    },
    "pretraining.lr_at": {
        lr_warmup_off_by_one: ["off by one"],
        lr_cosine_misses_min_lr: ["exactly at max_steps"],
        lr_rises_after_max_steps: ["rises again"],
        lr_decays_to_zero: ["not to 0"],
        lr_divides_by_zero_warmup: ["warmup = 0"],
        lr_with_torch_cos: ["plain Python number", "torch.cos"],
    },
}

CORRECT = {
    "pretraining.get_batch": [batch_as_in_nanogpt, batch_by_unfold],
    "pretraining.cross_entropy": [ce_torch, ce_logsumexp_by_hand, ce_by_masked_select],
    "pretraining.lr_at": [lr_written_with_clamps, lr_with_torch],
}


(test_wrong_implementation_is_rejected_with_feedback_naming_the_mistake,
 test_correct_variants_pass, test_the_stub_is_not_attempted) = catalogue_tests(WRONG, CORRECT)
