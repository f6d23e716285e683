"""Training speed of the reference GPT against a plain, flat GPT of the same configuration.

The yardstick is the leanest way to write the same model: one attention module that calls
torch's fused `scaled_dot_product_attention`, no cache logic, no checks on the input. Both run
forward + backward on the same batch, interleaved, so that a busy machine slows both alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from run import Figure, median_seconds
from torch import nn

from gptcourse.model import GPT, GPTConfig

CONFIG = GPTConfig(vocab_size=2048, block_size=128, n_layer=4, n_head=4, n_embd=128)
BATCH = 32


class _FlatBlock(nn.Module):
    def __init__(self, C: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.norm1, self.norm2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.qkv, self.out = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.up, self.down = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(B, T, 3, self.n_head, C // self.n_head).unbind(2)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                           v.transpose(1, 2), is_causal=True)
        x = x + self.out(y.transpose(1, 2).reshape(B, T, C))
        return x + self.down(F.gelu(self.up(self.norm2(x)), approximate="tanh"))


class FlatGPT(nn.Module):
    """The same computation as gptcourse.model.GPT, written as flat as possible."""

    def __init__(self, c: GPTConfig) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(c.vocab_size, c.n_embd), nn.Embedding(c.block_size,
                                                                                 c.n_embd)
        self.blocks = nn.Sequential(*(_FlatBlock(c.n_embd, c.n_head) for _ in range(c.n_layer)))
        self.norm = nn.LayerNorm(c.n_embd)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos(torch.arange(idx.size(1)))
        logits = self.norm(self.blocks(x)) @ self.tok.weight.T
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def _step(forward) -> None:
    forward().backward()


def run() -> list[Figure]:
    torch.manual_seed(0)
    ours, flat = GPT(CONFIG), FlatGPT(CONFIG)
    assert ours.num_parameters() == sum(p.numel() for p in flat.parameters())
    x, y = torch.randint(0, CONFIG.vocab_size, (2, BATCH, CONFIG.block_size))
    ours_step = lambda: _step(lambda: ours(x, y)[1])  # noqa: E731
    flat_step = lambda: _step(lambda: flat(x, y))  # noqa: E731
    times = {"ours": [], "flat": []}
    for _ in range(5):  # interleaved rounds: drift in machine load hits both alike
        times["ours"].append(median_seconds(ours_step, repeat=3, warmup=1))
        times["flat"].append(median_seconds(flat_step, repeat=3, warmup=1))
    t_ours, t_flat = min(times["ours"]), min(times["flat"])
    tokens = BATCH * CONFIG.block_size
    return [
        Figure("GPT forward+backward (4L 4H 128 wide, ctx 128, batch 32): ours", t_ours * 1e3,
               "ms"),
        Figure("  flat nanoGPT-style model with fused attention", t_flat * 1e3, "ms"),
        Figure("  ratio ours / flat", t_ours / t_flat, "x", "target <= 1.1"),
        Figure("  training tokens/s, ours", tokens / t_ours, "tok/s"),
    ]
