"""The GPT's size, as plain data: the config that lesson 05's model (`gptcourse.model`) is
built from.

It lives apart from the model so that code which must not see the model's implementation
(a learner's process while grading) can still describe and receive one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GPTConfig:
    """How big the model is. The defaults are the course model's; `gpt2_small()` is GPT-2's."""

    vocab_size: int = 2048
    block_size: int = 256  # the context: the most tokens the model sees at once
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    bias: bool = True  # biases in the linear maps and LayerNorms, as in GPT-2

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive whole number, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must divide into n_head={self.n_head} "
                             f"equal heads")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @classmethod
    def gpt2_small(cls) -> "GPTConfig":
        """GPT-2 small (2019): 12 layers, 12 heads, 768 wide, 1024 tokens of context."""
        return cls(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)
