"""Checks for lesson 04, feedforward."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gptcourse import feedforward
from gptcourse.exercises.compare import Tolerance
from gptcourse.exercises.contract import (NO_GRADIENT, Case, Exercise, Mistake, Outcome,
                                          error_says)
from gptcourse.exercises.registration import register

# The exact GELU and its tanh approximation differ by at most 4.8e-4; every wrong form caught
# below differs by 0.02 or more, so 1e-3 accepts both right forms and no wrong one.
GELU_TOLERANCE = Tolerance(rtol=1e-4, atol=1e-3)


def _randn(g: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=g) * scale


# --- gelu ------------------------------------------------------------------------------------

def _gelu_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    return [
        Case("from -6 to 6", (torch.linspace(-6, 6, 49),)),
        Case("a batch of activations (2, 3, 8)", (_randn(g, 2, 3, 8, scale=2.0),)),
        Case("small values near 0", (_randn(g, 16, scale=0.3),)),
        Case("a single number", (torch.tensor(-1.5),)),
        Case("large values", (torch.tensor([-30.0, -12.0, 12.0, 30.0]),)),
        Case("gradients", (_randn(g, 3, 5, scale=2.0),), probe="gradients"),
    ]


register(Exercise(
    id="feedforward.gelu",
    title="GELU",
    points=1,
    reference=feedforward.gelu,
    make_cases=_gelu_cases,
    tolerance=GELU_TOLERANCE,
    mistakes=(
        Mistake("That is ReLU, max(0, x). GELU is smooth and lets small negative values "
                "through a little: x · Φ(x), with Φ the normal CDF, 0.5 · (1 + erf(x / √2)).",
                wrong=torch.relu),
        Mistake("That is SiLU (swish), x · sigmoid(x). GELU weighs x by the normal CDF instead: "
                "0.5 · x · (1 + erf(x / √2)).", wrong=F.silu),
        Mistake("That is the rough sigmoid approximation x · sigmoid(1.702 x). Use the exact "
                "erf form, or the tanh approximation, which is 10× closer.",
                wrong=lambda x: x * torch.sigmoid(1.702 * x)),
        Mistake("The tanh approximation has a cubic term: 0.5 · x · (1 + tanh(√(2/π) · "
                "(x + 0.044715 · x³))).",
                wrong=lambda x: 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * x))),
        Mistake("Your tanh approximation is missing the factor √(2/π) ≈ 0.798 that scales "
                "(x + 0.044715 · x³) inside the tanh, so it bends too sharply near 0.",
                wrong=lambda x: 0.5 * x * (1 + torch.tanh(x + 0.044715 * x ** 3))),
        Mistake("Φ(x) = 0.5 · (1 + erf(x / √2)): divide x by √2 inside the erf.",
                wrong=lambda x: 0.5 * x * (1 + torch.erf(x))),
        Mistake("Φ(x) = 0.5 · (1 + erf(x / √2)): the factor 0.5 is missing.",
                wrong=lambda x: x * (1 + torch.erf(x / math.sqrt(2)))),
        NO_GRADIENT,
    ),
    hint="gelu(x) = 0.5 * x * (1 + torch.erf(x / math.sqrt(2))).",
))


# --- mlp -------------------------------------------------------------------------------------

def _mlp_args(g: torch.Generator, B: int, T: int, C: int) -> tuple:
    return (_randn(g, B, T, C), _randn(g, 4 * C, C, scale=C ** -0.5), _randn(g, 4 * C, scale=0.1),
            _randn(g, C, 4 * C, scale=(4 * C) ** -0.5), _randn(g, C, scale=0.1))


def _mlp_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    return [
        Case("B=2, T=3, C=4", _mlp_args(g, 2, 3, 4)),
        Case("B=1, T=5, C=8", _mlp_args(g, 1, 5, 8)),
        Case("a single token (T=1), C=6", _mlp_args(g, 3, 1, 6)),
        Case("gradients", _mlp_args(g, 2, 2, 4), probe="gradients"),
    ]


def _mlp(x, w_fc, b_fc, w_proj, b_proj, *, act=feedforward.gelu, act_last=False, biases=True):
    h = x @ w_fc.T + (b_fc if biases else 0)
    if not act_last:
        h = act(h)
    y = h @ w_proj.T + (b_proj if biases else 0)
    return act(y) if act_last else y


register(Exercise(
    id="feedforward.mlp",
    title="the feed-forward network",
    points=1,
    reference=feedforward.mlp,
    make_cases=_mlp_cases,
    tolerance=GELU_TOLERANCE,  # either GELU form may be used inside
    mistakes=(
        Mistake("The weights use torch.nn.Linear's layout, (out_features, in_features): "
                "multiply by their transpose, x @ w_fc.T + b_fc.",
                symptom=error_says("cannot be multiplied", "size mismatch", "must match")),
        Mistake("GELU goes between the two projections, on the 4C-wide hidden layer, not after "
                "the projection back to C.",
                wrong=lambda *a: _mlp(*a, act_last=True)),
        Mistake("Without an activation between them, two linear maps are just one linear map. "
                "Apply GELU to the hidden layer.",
                wrong=lambda *a: _mlp(*a, act=lambda h: h)),
        Mistake("Use GELU, not ReLU, on the hidden layer.",
                wrong=lambda *a: _mlp(*a, act=torch.relu)),
        Mistake("Add the biases: x @ w_fc.T + b_fc, and h @ w_proj.T + b_proj.",
                wrong=lambda *a: _mlp(*a, biases=False)),
        NO_GRADIENT,
    ),
    hint="h = gelu(x @ w_fc.T + b_fc); return h @ w_proj.T + b_proj.",
))


# --- layer_norm ------------------------------------------------------------------------------

def _layer_norm_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    affine = lambda C: (1 + _randn(g, C, scale=0.5), _randn(g, C, scale=0.5))  # noqa: E731
    return [
        Case("a batch (2, 3, 8)", (_randn(g, 2, 3, 8, scale=3.0), *affine(8))),
        Case("rows far from zero (mean 50)", (50 + _randn(g, 4, 6), *affine(6))),
        Case("a tiny spread (values ≈ 1e-3), where eps matters",
             (_randn(g, 3, 16, scale=1e-3), *affine(16))),
        Case("a constant vector (variance 0)", (torch.full((1, 1, 5), 2.5), *affine(5))),
        Case("eps = 0.1", (_randn(g, 2, 5), *affine(5)), {"eps": 0.1}),
        Case("one token, many channels (1, 1, 64)", (_randn(g, 1, 1, 64), *affine(64))),
        Case("gradients", (_randn(g, 2, 3, 6), *affine(6)), probe="gradients"),
    ]


def _lost_precision_far_from_zero(case: Case, outcome: Outcome) -> bool:
    """Right in shape and roughly in value, but not precise, on rows whose mean is far larger
    than their spread: the variance came from E[x²] - mean², which cancels there."""
    x, value = case.args[0], outcome.value
    if not isinstance(value, torch.Tensor) or value.shape != x.shape:
        return False
    if not bool((x.mean(-1).abs() > 10 * x.std(-1)).all()):
        return False
    expected = feedforward.layer_norm(*case.args, **case.kwargs)
    error = (value.detach() - expected).abs().max()
    return bool(torch.isfinite(value).all()) and bool(error < 0.5 * expected.abs().max())


def _norm(x, weight, bias, eps=1e-5, *, unbiased=False, eps_outside=False, dim=-1, affine=True):
    mean = x.mean(dim=dim, keepdim=True)
    var = x.var(dim=dim, keepdim=True, unbiased=unbiased)
    y = (x - mean) / (var.sqrt() + eps if eps_outside else torch.sqrt(var + eps))
    return y * weight + bias if affine else y


register(Exercise(
    id="feedforward.layer_norm",
    title="LayerNorm",
    points=1,
    reference=feedforward.layer_norm,
    make_cases=_layer_norm_cases,
    tolerance=Tolerance(rtol=1e-4, atol=1e-5),
    mistakes=(
        Mistake("Use the biased variance, the plain mean of squared deviations (divide by C, "
                "as torch.nn.LayerNorm does): x.var(..., unbiased=False), not the default "
                "unbiased one (divide by C - 1).",
                wrong=lambda x, w, b, eps=1e-5: _norm(x, w, b, eps, unbiased=True)),
        Mistake("eps belongs inside the square root: (x - mean) / sqrt(var + eps). Outside, it "
                "barely protects tiny variances.",
                wrong=lambda x, w, b, eps=1e-5: _norm(x, w, b, eps, eps_outside=True)),
        Mistake("Normalise each vector over its own channels, the last axis (dim=-1, "
                "keepdim=True), not over the tokens or the batch.",
                wrong=lambda x, w, b, eps=1e-5: _norm(x, w, b, eps, dim=0)),
        Mistake("Normalise each vector over its own channels, the last axis (dim=-1, "
                "keepdim=True), not over the tokens or the batch.",
                wrong=lambda x, w, b, eps=1e-5: _norm(x, w, b, eps, dim=-2)),
        Mistake("After normalising, scale by `weight` and shift by `bias`: y * weight + bias.",
                wrong=lambda x, w, b, eps=1e-5: _norm(x, w, b, eps, affine=False)),
        Mistake("Use the `eps` argument rather than a fixed number.",
                wrong=lambda x, w, b, eps=1e-5: _norm(x, w, b, 1e-5)),
        Mistake("Close, but not precise on rows far from zero: that is what the variance as "
                "E[x²] - mean² does. Where the mean is 50 and the spread 1, E[x²] and mean² are "
                "both about 2500 and agree in their first three or four digits; float32 keeps "
                "about seven, so their difference keeps only three or four correct ones. "
                "Subtract the mean first and average the squared deviations, "
                "((x - mean)²).mean(...), which never cancels.",
                symptom=_lost_precision_far_from_zero),
        NO_GRADIENT,
    ),
    hint="mean and biased variance over dim=-1 (keepdim=True); "
         "(x - mean) / sqrt(var + eps) * weight + bias.",
))
