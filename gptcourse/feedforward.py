"""Lesson 04, feedforward: the second half of every block.

After attention has let tokens gather information from each other, each token's vector goes
through the same small network on its own: widen to 4× with a linear map, bend with GELU,
project back. LayerNorm keeps every vector at a steady scale before each half of the block,
and residual connections add each half's output to its input, so that a deep stack trains.

Shapes: B batch, T tokens, C model width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def gelu(x: torch.Tensor) -> torch.Tensor:
    """GELU, exact form: x · Φ(x), with Φ the standard normal's cumulative distribution.
    Any shape in, the same shape out."""
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
               eps: float = 1e-5) -> torch.Tensor:
    """Normalise each vector over its last axis to mean 0 and variance 1, then scale and shift.

    x: (..., C); weight, bias: (C,). Returns (..., C). The variance is the biased one (divided
    by C, not C - 1), and eps sits inside the square root, as in torch.nn.LayerNorm.
    """
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def mlp(x: torch.Tensor, w_fc: torch.Tensor, b_fc: torch.Tensor, w_proj: torch.Tensor,
        b_proj: torch.Tensor) -> torch.Tensor:
    """The position-wise feed-forward network: project, GELU, project back.

    x: (B, T, C); w_fc: (4C, C), b_fc: (4C,); w_proj: (C, 4C), b_proj: (C,) — the weight
    layout of torch.nn.Linear (out_features, in_features). Returns (B, T, C).
    """
    return gelu(x @ w_fc.T + b_fc) @ w_proj.T + b_proj


class MLP(nn.Module):
    """The feed-forward half of a block, as a module: C -> 4C -> GELU -> C.

    GPT-2 used the tanh approximation of GELU; `approximate="tanh"` keeps its weights usable.
    """

    def __init__(self, n_embd: int, bias: bool = True, approximate: str = "tanh") -> None:
        super().__init__()
        self.fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, T, C)."""
        return self.proj(F.gelu(self.fc(x), approximate=self.approximate))
