"""Lesson 03, attention: how each token gathers information from the tokens before it.

Every token asks a question (its query), every token offers a label (its key) and an answer
(its value). A token's output is the average of all the values, weighted by how well its
query matches each key: softmax(q · k / √d). In a GPT a token may only look back, never
ahead (the causal mask), and several heads ask different questions side by side.

Shapes: B batch, T tokens, C model width, nh heads, hs = C // nh head size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def causal_mask(T: int) -> torch.Tensor:
    """(T, T) bool: entry [i, j] is True where token i may attend to token j, i.e. j <= i."""
    if T < 1:
        raise ValueError(f"T is a number of tokens, at least 1; got {T}")
    return torch.ones(T, T, dtype=torch.bool).tril()


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 mask: torch.Tensor | None = None
                                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of every query over all keys.

    q, k: (..., T, d); v: (..., T, dv); mask: bool, broadcastable to (..., T, T), True where
    attention is allowed (every row needs at least one True).
    Returns (out (..., T, dv), weights (..., T, T)); each row of weights sums to 1.
    """
    # Dividing by √d keeps the scores' spread independent of d, so softmax does not saturate.
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (..., T, T)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))  # exp(-inf) = 0: exactly no weight
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights


def split_heads(x: torch.Tensor, n_head: int) -> torch.Tensor:
    """(B, T, C) -> (B, nh, T, hs): the C channels of each token cut into nh groups of hs."""
    B, T, C = x.shape
    if C % n_head:
        raise ValueError(f"the width C={C} must divide into n_head={n_head} equal heads")
    return x.view(B, T, n_head, C // n_head).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, nh, T, hs) -> (B, T, nh * hs): each token's heads side by side again."""
    B, nh, T, hs = x.shape
    return x.transpose(1, 2).reshape(B, T, nh * hs)


class MultiHeadAttention(nn.Module):
    """Causal self-attention with nh heads: project to q, k, v, attend per head, merge,
    project back."""

    def __init__(self, n_embd: int, n_head: int, bias: bool = True) -> None:
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd={n_embd} must divide into n_head={n_head} equal heads")
        self.n_head = n_head
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=bias)  # the three projections in one
        self.proj = nn.Linear(n_embd, n_embd, bias=bias)

    def forward(self, x: torch.Tensor, return_weights: bool = False):
        """x: (B, T, C) -> (B, T, C); with return_weights, also the weights (B, nh, T, T).

        Without weights to return, torch's fused kernel does the same computation faster.
        """
        q, k, v = (split_heads(t, self.n_head) for t in self.qkv(x).chunk(3, dim=-1))
        if return_weights:
            mask = causal_mask(x.size(1)).to(x.device)
            out, weights = scaled_dot_product_attention(q, k, v, mask)
            return self.proj(merge_heads(out)), weights
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(merge_heads(out))


def plot_attention(weights: torch.Tensor, tokens: list[str], ax=None, title: str = ""):
    """Heatmap of attention weights (T, T): row i is what token i attends to; returns the Axes."""
    import matplotlib.pyplot as plt

    weights = weights.detach().cpu()
    if weights.shape != (len(tokens), len(tokens)):
        raise ValueError(f"expected weights of shape ({len(tokens)}, {len(tokens)}) for "
                         f"{len(tokens)} tokens, got {tuple(weights.shape)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(0.42 * len(tokens) + 1.5, 0.42 * len(tokens) + 1))
    image = ax.imshow(weights, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(tokens)), tokens, rotation=90)
    ax.set_yticks(range(len(tokens)), tokens)
    ax.set_xlabel("looks at (key)")
    ax.set_ylabel("token (query)")
    ax.set_title(title)
    ax.figure.colorbar(image, ax=ax, fraction=0.04, label="weight")
    return ax
