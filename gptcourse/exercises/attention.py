"""Checks for lesson 03, attention."""

from __future__ import annotations

import math

import torch

from gptcourse import attention
from gptcourse.exercises.contract import NO_GRADIENT, Case, Exercise, Mistake, Outcome, error_says
from gptcourse.exercises.modules import (ModelExercise, future_leak, module_case,
                                         not_a_module_hint, weight_names)
from gptcourse.exercises.registration import register


def _randn(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=generator)



def _got_dtype_other_than_bool(case: Case, outcome: Outcome) -> bool:
    return isinstance(outcome.value, torch.Tensor) and outcome.value.dtype != torch.bool


# --- causal_mask -----------------------------------------------------------------------------

def _causal_mask_cases(seed: int) -> list[Case]:
    return [Case(f"T = {T}", (T,)) for T in (4, 1, 2, 7)]


register(Exercise(
    id="attention.causal_mask",
    title="the causal mask",
    points=1,
    reference=attention.causal_mask,
    make_cases=_causal_mask_cases,
    mistakes=(
        Mistake("Row i is token i, column j the token it looks at. Your mask lets tokens look "
                "ahead (j > i) and hides the past: the triangle is flipped. Keep the lower "
                "triangle, torch.tril.", wrong=lambda T: torch.ones(T, T, dtype=torch.bool).triu()),
        Mistake("A token may attend to itself: the diagonal must be True too (torch.tril "
                "keeps it; diagonal=-1 drops it).",
                wrong=lambda T: torch.ones(T, T, dtype=torch.bool).tril(-1)),
        Mistake("True means 'may attend'. Your mask is True exactly where attention should be "
                "blocked: invert it.", wrong=lambda T: ~torch.ones(T, T, dtype=torch.bool).tril()),
        Mistake("The mask should be a bool tensor (dtype=torch.bool), True where attention is "
                "allowed: masked_fill and ~ need bools.", symptom=_got_dtype_other_than_bool),
    ),
    hint="Entry [i, j] is True when j <= i: torch.ones(T, T, dtype=torch.bool).tril().",
))


# --- scaled_dot_product_attention ------------------------------------------------------------

def _attention_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    mask = attention.causal_mask
    qkv = lambda *shape: tuple(_randn(g, *shape) for _ in range(3))  # noqa: E731
    arbitrary = torch.rand(5, 5, generator=g) < 0.5
    arbitrary.fill_diagonal_(True)  # every token may at least see itself
    q, k, _ = qkv(3, 5, 4)
    return [
        Case("one sequence, no mask (T=4, d=8)", qkv(4, 8)),
        Case("a batch of 2, causal mask (T=5, d=8)", qkv(2, 5, 8), {"mask": mask(5)}),
        Case("batch 2 × 3 heads, causal mask (T=6, d=4)", qkv(2, 3, 6, 4), {"mask": mask(6)}),
        Case("values wider than keys (d=4, dv=7)", (q, k, _randn(g, 3, 5, 7)), {"mask": mask(5)}),
        Case("a single token (T=1)", qkv(2, 1, 8), {"mask": mask(1)}),
        Case("a mask that is not causal", qkv(2, 5, 8), {"mask": arbitrary}),
        Case("wide heads (d=64), no mask", qkv(1, 6, 64)),
        Case("gradients reach q, k and v", qkv(2, 4, 8), {"mask": mask(4)}, probe="gradients"),
    ]


def _attend(q, k, v, mask=None, *, scale=None, dim=-1, how="fill", values=None):
    """Attention with one thing done differently, for predicting learners' mistakes."""
    d = q.size(-1)
    scores = q @ k.transpose(-2, -1) * (1 / math.sqrt(d) if scale is None else scale)
    if mask is not None and how == "fill":
        scores = scores.masked_fill(~mask, float("-inf"))
    if mask is not None and how == "times zero":
        scores = scores * mask
    weights = torch.softmax(scores, dim=dim)
    if mask is not None and how == "after softmax":
        weights = weights * mask
    return weights @ (v if values is None else values(q, k, v)), weights


def _reversed_every_axis(case: Case, outcome: Outcome) -> bool:
    """`k.T` on a batch of keys: torch warns (and will refuse) since it reverses every axis."""
    texts = [*outcome.warnings, outcome.error.message if outcome.error else ""]
    return any("`x.T`" in text or "x.T on tensors" in text for text in texts)


def _nan_in_weights(case: Case, outcome: Outcome) -> bool:
    value = outcome.value
    value = value[0] if case.probe == "gradients" and isinstance(value, tuple) else value
    return isinstance(value, (tuple, list)) and len(value) == 2 and \
        isinstance(value[1], torch.Tensor) and bool(torch.isnan(value[1]).any())


register(Exercise(
    id="attention.scaled_dot_product_attention",
    title="scaled dot-product attention",
    points=2,
    reference=attention.scaled_dot_product_attention,
    make_cases=_attention_cases,
    mistakes=(
        Mistake("The scores are missing the 1/√d scale: divide q @ kᵀ by math.sqrt(d), with d "
                "the last dimension of q. Without it, scores grow with d and softmax saturates.",
                wrong=lambda q, k, v, mask=None: _attend(q, k, v, mask, scale=1.0)),
        Mistake("Scale by 1/√d, not 1/d: dividing by d shrinks the scores too much, and the "
                "weights come out too flat.",
                wrong=lambda q, k, v, mask=None: _attend(q, k, v, mask, scale=1 / q.size(-1))),
        Mistake("Scale by √d of the queries and keys, q.size(-1), not of the values: the scale "
                "keeps the dot products q · k from growing with their length, and the values' "
                "width dv plays no part in the scores.",
                wrong=lambda q, k, v, mask=None: _attend(q, k, v, mask,
                                                         scale=v.size(-1) ** -0.5)),
        Mistake("`k.T` reverses every axis of a batch of keys ((B, T, d) becomes (d, T, B)), "
                "not just the last two: the scores need only T and d swapped, each batch's "
                "keys transposed on their own.", symptom=_reversed_every_axis),
        Mistake("Softmax runs over the keys (the last axis, dim=-1): each query's weights over "
                "the tokens it looks at sum to 1. Yours normalises over the queries (dim=-2).",
                wrong=lambda q, k, v, mask=None: _attend(q, k, v, mask, dim=-2)),
        Mistake("The mask must act before the softmax: masked_fill the scores with -inf where "
                "the mask is False. Zeroing weights after the softmax leaves rows that no "
                "longer sum to 1.",
                wrong=lambda q, k, v, mask=None: _attend(q, k, v, mask, how="after softmax")),
        Mistake("Multiplying scores by 0 does not block attention: a score of 0 still gets "
                "weight exp(0) = 1. Fill the blocked scores with -inf (masked_fill) instead.",
                wrong=lambda q, k, v, mask=None: _attend(q, k, v, mask, how="times zero")),
        Mistake("The weighted sum is over the values: weights @ v, not weights @ k.",
                wrong=lambda q, k, v, mask=None: _attend(q, k, v, mask,
                                                         values=lambda q, k, v: k)),
        Mistake("`mask` is ignored: where it is False the score must become -inf before the "
                "softmax.", wrong=lambda q, k, v, mask=None: _attend(q, k, v, None)),
        Mistake("NaN weights come from a row whose scores are all -inf: True in the mask means "
                "'allowed', so fill where the mask is False: scores.masked_fill(~mask, -inf).",
                symptom=_nan_in_weights),
        NO_GRADIENT,
        Mistake("Return two things: (out, weights).",
                symptom=lambda case, outcome: isinstance(outcome.value, torch.Tensor)),
    ),
    hint="scores = q @ k.transpose(-2, -1) / math.sqrt(d); masked_fill(~mask, -inf) when a "
         "mask is given; weights = softmax over dim=-1; return weights @ v, weights.",
))


# --- split_heads and merge_heads -------------------------------------------------------------

def _split_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    return [Case(f"B={B}, T={T}, C={C} into {nh} head{'s' * (nh > 1)}",
                 (_randn(g, B, T, C), nh))
            for B, T, C, nh in ((2, 3, 8, 2), (1, 5, 6, 3), (2, 4, 4, 1), (2, 1, 8, 4),
                                (1, 3, 4, 4))]


_VIEW_HINT = ("`.view` needs a contiguous tensor, and a transposed one is not: use "
              "`.reshape(...)`, or `.contiguous().view(...)`.")

register(Exercise(
    id="attention.split_heads",
    title="split into heads",
    points=1,
    reference=attention.split_heads,
    make_cases=_split_cases,
    mistakes=(
        Mistake("The shape is right but the positions are mixed into the heads: a bare "
                "reshape to (B, nh, T, hs) cuts the sequence, not each token's channels. "
                "Reshape to (B, T, nh, hs) first, then swap the T and nh axes with "
                ".transpose(1, 2).",
                wrong=lambda x, n_head: x.reshape(x.size(0), n_head, x.size(1), -1)),
        Mistake("Each head takes a contiguous block of hs channels: view as (B, T, nh, hs) "
                "(heads first, then the channels within a head), not (B, T, hs, nh).",
                wrong=lambda x, n_head: x.view(x.size(0), x.size(1), -1, n_head)
                .permute(0, 3, 1, 2)),
        Mistake(_VIEW_HINT, symptom=error_says("view size is not compatible")),
    ),
    hint="B, T, C = x.shape; x.view(B, T, n_head, C // n_head).transpose(1, 2).",
))


def _merge_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    return [Case(f"B={B}, {nh} head{'s' * (nh > 1)}, T={T}, hs={hs}", (_randn(g, B, nh, T, hs),))
            for B, nh, T, hs in ((2, 2, 3, 4), (1, 3, 5, 2), (2, 1, 4, 8), (2, 4, 1, 3))]


register(Exercise(
    id="attention.merge_heads",
    title="merge the heads",
    points=1,
    reference=attention.merge_heads,
    make_cases=_merge_cases,
    mistakes=(
        Mistake("The shape is right but tokens and heads are mixed up: bring T next to B "
                "first with .transpose(1, 2), then reshape to (B, T, nh * hs).",
                wrong=lambda x: x.reshape(x.size(0), x.size(2), -1)),
        Mistake("The heads should sit side by side, each a block of hs channels: transpose "
                "to (B, T, nh, hs) and then reshape. Yours interleaves the heads' channels.",
                wrong=lambda x: x.permute(0, 2, 3, 1).reshape(x.size(0), x.size(2), -1)),
        Mistake(_VIEW_HINT, symptom=error_says("view size is not compatible")),
    ),
    hint="B, nh, T, hs = x.shape; x.transpose(1, 2).reshape(B, T, nh * hs).",
))


# --- MultiHeadAttention, the learner's module -------------------------------------------------

def _mha_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    cls = attention.MultiHeadAttention

    def x(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    return [
        module_case("C = 12, 3 heads, a batch of 2 × 5 tokens", cls,
                    {"n_embd": 12, "n_head": 3}, (x(2, 5, 12),), seed, causal_from=3),
        module_case("one head (C = 8), 4 tokens", cls, {"n_embd": 8, "n_head": 1},
                    (x(1, 4, 8),), seed + 1, causal_from=2),
        module_case("4 heads of 4, without biases, 6 tokens", cls,
                    {"n_embd": 16, "n_head": 4, "bias": False}, (x(2, 6, 16),), seed + 2,
                    causal_from=1),
        module_case("a single token", cls, {"n_embd": 12, "n_head": 2}, (x(3, 1, 12),),
                    seed + 3),
    ]


def _heads_attend(m: attention.MultiHeadAttention, x: torch.Tensor, *, scale="head", mask=True,
                  transpose=True, project=True, order="qkv") -> torch.Tensor:
    """Multi-head attention with the reference's weights and one thing done differently."""
    B, T, C = x.shape
    nh, hs = m.n_head, C // m.n_head
    parts = dict(zip(order, m.qkv(x).chunk(3, dim=-1)))
    split = (lambda t: t.view(B, T, nh, hs).transpose(1, 2)) if transpose else \
        (lambda t: t.reshape(B, nh, T, hs))
    q, k, v = (split(parts[name]) for name in "qkv")
    divisor = {"head": math.sqrt(hs), "width": math.sqrt(C), None: 1.0}[scale]
    scores = q @ k.transpose(-2, -1) / divisor
    if mask:
        scores = scores.masked_fill(~attention.causal_mask(T), float("-inf"))
    out = torch.softmax(scores, dim=-1) @ v
    merged = out.transpose(1, 2).reshape(B, T, C) if transpose else out.reshape(B, T, C)
    return m.proj(merged) if project else merged


def _wrong_attention(**mistake) -> type:
    class WrongAttention(attention.MultiHeadAttention):
        def forward(self, x):
            return _heads_attend(self, x, **mistake)
    return WrongAttention


QKV_ORDER = ("Take q, k and v from qkv(x) in that order: q, k, v = self.qkv(x).chunk(3, "
             "dim=-1) (or .split(C, dim=-1)); the weights were trained with the queries in "
             "the first C outputs, the keys next, the values last.")

register(ModelExercise(
    id="attention.MultiHeadAttention",
    title="multi-head attention, the module",
    points=3,
    reference=attention.MultiHeadAttention,
    make_cases=_mha_cases,
    not_built_from=("gptcourse.attention.MultiHeadAttention",),
    mistakes=(
        weight_names("`qkv`, one nn.Linear(n_embd, 3 * n_embd, bias=bias), and `proj`, "
                     "nn.Linear(n_embd, n_embd, bias=bias)"),
        not_a_module_hint("MultiHeadAttention"),
        future_leak("A token sees the future: changing a later token changed an earlier "
                    "token's output. Pass the causal mask to the attention, "
                    "causal_mask(T), so that token i only looks at tokens j <= i."),
        Mistake("The scores are missing the 1/√d scale, with d the head size hs = C // "
                "n_head.", wrong=_wrong_attention(scale=None)),
        Mistake("Scale by 1/√d with d the head size, hs = C // n_head, not C: each head's "
                "scores are dot products of hs numbers.", wrong=_wrong_attention(scale="width")),
        Mistake("Splitting with view(B, n_head, T, hs) alone cuts the sequence, not each "
                "token's channels: view to (B, T, n_head, hs), then transpose(1, 2), as your "
                "split_heads does.", wrong=_wrong_attention(transpose=False)),
        Mistake("The heads' merged output goes through the output projection, self.proj, "
                "before it is returned.", wrong=_wrong_attention(project=False)),
        *(Mistake(QKV_ORDER, wrong=_wrong_attention(order=order))
          for order in ("kqv", "qvk", "vkq", "kvq", "vqk")),
        NO_GRADIENT,
    ),
    hint="q, k, v = self.qkv(x).chunk(3, dim=-1); split each into heads; attend with the "
         "causal mask; merge the heads; return self.proj(merged).",
))
