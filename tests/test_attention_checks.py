"""Lesson 03's checks reject plausible wrong attention code, each with a hint that names the
mistake, and accept differently written correct code."""

import math

import torch
import torch.nn.functional as F

from catalogue import catalogue_tests

from gptcourse import check

# --- attention.causal_mask -------------------------------------------------------------------


def mask_flipped(T):
    return torch.triu(torch.ones(T, T, dtype=torch.bool))


def mask_without_diagonal(T):
    return torch.tril(torch.ones(T, T, dtype=torch.bool), diagonal=-1)


def mask_inverted(T):
    return torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)


def mask_of_floats(T):
    return torch.tril(torch.ones(T, T))


def mask_by_comparison(T):
    i = torch.arange(T)
    return i[None, :] <= i[:, None]


def mask_by_loops(T):
    m = torch.zeros(T, T, dtype=torch.bool)
    for i in range(T):
        for j in range(i + 1):
            m[i, j] = True
    return m


# --- attention.scaled_dot_product_attention --------------------------------------------------

def _scores(q, k):
    return q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))


def attention_unscaled(q, k, v, mask=None):
    s = q @ k.transpose(-2, -1)
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    w = s.softmax(dim=-1)
    return w @ v, w


def attention_scaled_by_d(q, k, v, mask=None):
    s = q @ k.transpose(-2, -1) / q.size(-1)
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    w = s.softmax(dim=-1)
    return w @ v, w


def attention_scaled_by_the_values_width(q, k, v, mask=None):
    s = q @ k.transpose(-2, -1) / math.sqrt(v.size(-1))
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    w = s.softmax(dim=-1)
    return w @ v, w


def attention_with_k_dot_T(q, k, v, mask=None):
    s = q @ k.T / math.sqrt(q.size(-1))
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    w = s.softmax(dim=-1)
    return w @ v, w


def attention_softmax_over_queries(q, k, v, mask=None):
    s = _scores(q, k)
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    w = s.softmax(dim=-2)
    return w @ v, w


def attention_mask_after_softmax(q, k, v, mask=None):
    w = _scores(q, k).softmax(dim=-1)
    if mask is not None:
        w = w.masked_fill(~mask, 0.0)
    return w @ v, w


def attention_mask_by_multiplying_scores(q, k, v, mask=None):
    s = _scores(q, k)
    if mask is not None:
        s = s * mask
    w = s.softmax(dim=-1)
    return w @ v, w


def attention_keys_as_values(q, k, v, mask=None):
    s = _scores(q, k)
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    w = s.softmax(dim=-1)
    return w @ k, w


def attention_ignores_mask(q, k, v, mask=None):
    w = _scores(q, k).softmax(dim=-1)
    return w @ v, w


def attention_mask_convention_inverted(q, k, v, mask=None):
    s = _scores(q, k)
    if mask is not None:
        s = s.masked_fill(mask, float("-inf"))
    w = s.softmax(dim=-1)
    return w @ v, w


def attention_detached(q, k, v, mask=None):
    out, w = attention_by_matmul(q.detach(), k.detach(), v.detach(), mask)
    return out, w


def attention_returns_only_output(q, k, v, mask=None):
    return attention_by_matmul(q, k, v, mask)[0]


def attention_by_matmul(q, k, v, mask=None):
    s = _scores(q, k)
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    w = torch.softmax(s, dim=-1)
    return w @ v, w


def attention_by_einsum_and_large_negative(q, k, v, mask=None):
    s = torch.einsum("...id,...jd->...ij", q, k) * q.size(-1) ** -0.5
    if mask is not None:
        s = torch.where(mask, s, torch.full_like(s, -1e9))
    s = s - s.amax(dim=-1, keepdim=True)  # a numerically stable softmax, by hand
    e = s.exp()
    w = e / e.sum(dim=-1, keepdim=True)
    return torch.einsum("...ij,...jd->...id", w, v), w


def attention_masked_after_softmax_then_renormalised(q, k, v, mask=None):
    w = _scores(q, k).softmax(dim=-1)
    if mask is not None:
        w = w * mask
        w = w / w.sum(dim=-1, keepdim=True)
    return w @ v, w


# --- attention.split_heads and merge_heads ---------------------------------------------------

def split_by_bare_reshape(x, n_head):
    B, T, C = x.shape
    return x.reshape(B, n_head, T, C // n_head)


def split_channels_in_wrong_order(x, n_head):
    B, T, C = x.shape
    return x.view(B, T, C // n_head, n_head).permute(0, 3, 1, 2)


def split_by_view_then_transpose(x, n_head):
    B, T, C = x.shape
    return x.view(B, T, n_head, C // n_head).transpose(1, 2)


def split_by_einops_style_permute(x, n_head):
    B, T, C = x.shape
    return torch.stack(x.chunk(n_head, dim=-1), dim=1)


def merge_by_bare_reshape(x):
    B, nh, T, hs = x.shape
    return x.reshape(B, T, nh * hs)


def merge_interleaving_heads(x):
    B, nh, T, hs = x.shape
    return x.permute(0, 2, 3, 1).reshape(B, T, nh * hs)


def merge_by_view_after_transpose(x):
    B, nh, T, hs = x.shape
    return x.transpose(1, 2).view(B, T, nh * hs)


def merge_by_transpose_reshape(x):
    B, nh, T, hs = x.shape
    return x.transpose(1, 2).reshape(B, T, nh * hs)


def merge_by_concatenating_heads(x):
    return torch.cat(x.unbind(dim=1), dim=-1)


# exercise -> {wrong implementation: words its hint must contain}
WRONG = {
    "attention.causal_mask": {
        mask_flipped: ["flipped"],
        mask_without_diagonal: ["attend to itself"],
        mask_inverted: ["invert it"],
        mask_of_floats: ["bool"],
    },
    "attention.scaled_dot_product_attention": {
        attention_unscaled: ["missing the 1/√d scale"],
        attention_scaled_by_d: ["not 1/d"],
        attention_scaled_by_the_values_width: ["not of the values"],
        attention_with_k_dot_T: ["`k.T` reverses every axis"],
        attention_softmax_over_queries: ["over the queries"],
        attention_mask_after_softmax: ["before the softmax"],
        attention_mask_by_multiplying_scores: ["Multiplying scores by 0"],
        attention_keys_as_values: ["not weights @ k"],
        attention_ignores_mask: ["`mask` is ignored"],
        attention_mask_convention_inverted: ["NaN", "~mask"],
        attention_detached: ["gradient does not flow"],
        attention_returns_only_output: ["(out, weights)"],
    },
    "attention.split_heads": {
        split_by_bare_reshape: ["bare reshape", "transpose(1, 2)"],
        split_channels_in_wrong_order: ["(B, T, nh, hs)"],
    },
    "attention.merge_heads": {
        merge_by_bare_reshape: ["tokens and heads are mixed up"],
        merge_interleaving_heads: ["interleaves"],
        merge_by_view_after_transpose: ["contiguous"],
    },
}

CORRECT = {
    "attention.causal_mask": [mask_by_comparison, mask_by_loops],
    "attention.scaled_dot_product_attention": [
        attention_by_matmul, attention_by_einsum_and_large_negative,
        attention_masked_after_softmax_then_renormalised],
    "attention.split_heads": [split_by_view_then_transpose, split_by_einops_style_permute],
    "attention.merge_heads": [merge_by_transpose_reshape, merge_by_concatenating_heads],
}


(test_wrong_implementation_is_rejected_with_feedback_naming_the_mistake,
 test_correct_variants_pass, test_the_stub_is_not_attempted) = catalogue_tests(WRONG, CORRECT)


def test_torchs_own_attention_passes_the_check():
    """An outside implementation agrees with the check (weights recomputed the same way)."""
    def with_torch(q, k, v, mask=None):
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return out, attention_by_matmul(q, k, v, mask)[1]

    assert check("attention.scaled_dot_product_attention", with_torch).passed
