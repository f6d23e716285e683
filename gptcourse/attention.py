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


class KVCache:
    """The keys and values of the tokens one attention layer has already seen.

    When generating, each new token needs its own query but the keys and values of every token
    before it, and those never change: keep them, and each step computes one token's worth of
    work instead of the whole prefix again. Buffers (B, nh, max_len, hs), filled from the left.
    """

    def __init__(self, batch_size: int, n_head: int, max_len: int, head_size: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> None:
        self.k = torch.zeros(batch_size, n_head, max_len, head_size, dtype=dtype, device=device)
        self.v = torch.zeros_like(self.k)
        self.length = 0  # tokens stored so far

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, nh, T, hs) after the tokens already there; return all keys and values
        so far, (B, nh, length, hs) each."""
        end = self.length + k.size(2)
        if end > self.k.size(2):
            raise ValueError(f"the cache holds at most {self.k.size(2)} tokens; "
                             f"{end} do not fit")
        self.k[:, :, self.length:end] = k
        self.v[:, :, self.length:end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]


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

    def forward(self, x: torch.Tensor, return_weights: bool = False,
                cache: KVCache | None = None):
        """x: (B, T, C) -> (B, T, C); with return_weights, also the weights (B, nh, T, T).

        With a cache, x holds only the tokens after those cached: they attend to the cached
        tokens and to each other causally, and their keys and values join the cache. Without
        weights to return, torch's fused kernel does the same computation faster.
        """
        q, k, v = (split_heads(t, self.n_head) for t in self.qkv(x).chunk(3, dim=-1))
        past = 0
        if cache is not None:
            past = cache.length
            k, v = cache.append(k, v)  # (B, nh, past + T, hs)
        T = q.size(2)
        if return_weights or (past and T > 1):
            # Query i sits at position past + i and may see keys 0 .. past + i.
            mask = causal_mask(past + T)[past:].to(x.device)  # (T, past + T)
            if return_weights:
                out, weights = scaled_dot_product_attention(q, k, v, mask)
                return self.proj(merge_heads(out)), weights
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            # No past: the usual causal mask; one new token after a past: it sees everything.
            out = F.scaled_dot_product_attention(q, k, v, is_causal=not past)
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
