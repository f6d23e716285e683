"""Lesson 05, gpt_model: the whole GPT, from token ids to next-token logits.

Read top to bottom in the order of the idea: a config says how big the model is; a block is
attention then the feed-forward network, each behind a LayerNorm and wrapped in a residual
connection; the model embeds tokens and positions, runs the stack of blocks, normalises once
more, and scores every vocabulary entry with the token embedding itself (the tied head).

Shapes: B batch, T tokens, C = n_embd, V = vocab_size.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gptcourse.attention import KVCache, MultiHeadAttention
from gptcourse.config import GPTConfig
from gptcourse.feedforward import MLP


# --- block -----------------------------------------------------------------------------------

class Block(nn.Module):
    """One decoder block, pre-norm: x + attn(ln1(x)), then x + mlp(ln2(x)).

    The residual path x runs straight through the whole stack; each half only adds to it.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = MultiHeadAttention(config.n_embd, config.n_head, bias=config.bias)
        self.ln2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config.n_embd, bias=config.bias)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """(B, T, C) -> (B, T, C)."""
        x = x + self.attn(self.ln1(x), cache=cache)  # tokens gather from each other
        return x + self.mlp(self.ln2(x))  # each token thinks on its own


# --- model -----------------------------------------------------------------------------------

class GPT(nn.Module):
    """A decoder-only Transformer: ids (B, T) -> logits (B, T, V) for the next token at every
    position."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)  # token embedding
        self.wpe = nn.Embedding(config.block_size, config.n_embd)  # learned positions
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # Tied head: the score of token v is the dot product of the final vector with v's own
        # embedding; one matrix serves both ends and saves V · C parameters.
        self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)
        # Each block adds two outputs to the residual path; scaling their projections down by
        # √(2 · n_layer) keeps the path's variance from growing with depth (GPT-2's rule).
        for block in self.blocks:
            for proj in (block.attn.proj, block.mlp.proj):
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_parameters(self) -> int:
        """Parameters counted once each (the tied head shares the token embedding's)."""
        return sum(p.numel() for p in self.parameters())

    def features(self, idx: torch.Tensor, caches: list[KVCache] | None = None) -> torch.Tensor:
        """The final, normalised vector of every token: ids (B, T) -> (B, T, C).

        With `caches` (one per block, from `new_caches`), idx holds only the tokens after those
        already cached; their positions continue from there.
        """
        if idx.dim() != 2 or idx.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"expected token ids as an integer tensor of shape (B, T), got "
                             f"{idx.dtype} of shape {tuple(idx.shape)}")
        start = caches[0].length if caches else 0
        T = idx.size(1)
        if T == 0:
            raise ValueError("expected at least one token, got T = 0")
        if start + T > self.config.block_size:
            raise ValueError(f"{start + T} tokens do not fit in the context of "
                             f"block_size={self.config.block_size}; crop the input to its last "
                             f"{self.config.block_size} tokens")
        pos = torch.arange(start, start + T, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)  # (B, T, C)
        for i, block in enumerate(self.blocks):
            x = block(x, cache=caches[i] if caches else None)
        return self.ln_f(x)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                caches: list[KVCache] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """ids (B, T) -> (logits (B, T, V), loss).

        loss is the mean cross-entropy of the next-token predictions against targets (B, T)
        (positions holding -100 are left out), or None without targets.
        """
        logits = self.lm_head(self.features(idx, caches))  # (B, T, V)
        if targets is None:
            return logits, None
        if targets.shape != idx.shape:
            raise ValueError(f"targets must have the shape of idx {tuple(idx.shape)}, got "
                             f"{tuple(targets.shape)}")
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
        return logits, loss

    def new_caches(self, batch_size: int) -> list[KVCache]:
        """Empty key/value caches, one per block, for generating up to block_size tokens."""
        param = self.wte.weight
        return [KVCache(batch_size, self.config.n_head, self.config.block_size,
                        self.config.head_size, dtype=param.dtype, device=param.device)
                for _ in self.blocks]

    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, use_cache: bool = True,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Continue each prompt in idx (B, T) by max_new_tokens sampled tokens.

        Returns (B, T + max_new_tokens): the prompt, then the new ids. temperature=0 means
        greedy (always the most likely token); top_k / top_p keep only the k most likely tokens
        / the smallest set whose probability reaches p. A generator makes sampling repeatable.
        See `gptcourse.generation.generate`.
        """
        from gptcourse.generation import generate

        return generate(self, idx, max_new_tokens, temperature=temperature, top_k=top_k,
                        top_p=top_p, use_cache=use_cache, generator=generator)


# --- where the parameters live ---------------------------------------------------------------

def parameter_groups(config: GPTConfig) -> dict[str, int]:
    """The parameter count of each part of the model, from its config alone."""
    C, b = config.n_embd, int(config.bias)
    layer_norm = C + b * C  # weight (and bias)
    attention = C * 3 * C + b * 3 * C + C * C + b * C  # q, k, v in one matrix; the projection
    mlp = C * 4 * C + b * 4 * C + 4 * C * C + b * C  # widen to 4C, back to C
    return {
        "token embedding (= output head)": config.vocab_size * C,
        "position embedding": config.block_size * C,
        "attention": config.n_layer * attention,
        "feed-forward": config.n_layer * mlp,
        "LayerNorms": (2 * config.n_layer + 1) * layer_norm,  # two per block, one at the end
    }


def parameter_count(config: GPTConfig) -> int:
    """The number of parameters of GPT(config), the tied head counted once."""
    return sum(parameter_groups(config).values())


# --- GPT-2 weights ---------------------------------------------------------------------------

# Hugging Face's GPT-2 names, and ours. Its `Conv1D` layers store weights as (in, out), the
# transpose of torch.nn.Linear's (out, in).
_GPT2_NAMES = {
    "wte.weight": "wte.weight", "wpe.weight": "wpe.weight",
    "ln_f.weight": "ln_f.weight", "ln_f.bias": "ln_f.bias",
}
_GPT2_BLOCK_NAMES = {
    "ln_1": "ln1", "ln_2": "ln2", "attn.c_attn": "attn.qkv", "attn.c_proj": "attn.proj",
    "mlp.c_fc": "mlp.fc", "mlp.c_proj": "mlp.proj",
}
_GPT2_TRANSPOSED = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight",
                    "mlp.c_proj.weight")


def gpt2_state_dict(hf_state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict from a Hugging Face GPT-2 state dict (`GPT2LMHeadModel` or `GPT2Model`).

    Renames the entries, transposes the Conv1D weights and drops what we do not store (the
    attention mask buffers; lm_head.weight, which is tied to wte.weight).
    """
    ours: dict[str, torch.Tensor] = {}
    for name, tensor in hf_state_dict.items():
        name = name.removeprefix("transformer.")
        if name == "lm_head.weight" or name.endswith((".attn.bias", ".attn.masked_bias")):
            continue
        if name in _GPT2_NAMES:
            ours[_GPT2_NAMES[name]] = tensor
            continue
        parts = name.split(".")
        if parts[0] != "h" or len(parts) < 4:
            raise ValueError(f"{name!r} is not a GPT-2 weight name")
        layer, rest = parts[1], ".".join(parts[2:])
        module, _, kind = rest.rpartition(".")
        if module not in _GPT2_BLOCK_NAMES:
            raise ValueError(f"{name!r} is not a GPT-2 weight name")
        ours[f"blocks.{layer}.{_GPT2_BLOCK_NAMES[module]}.{kind}"] = (
            tensor.t().contiguous() if rest in _GPT2_TRANSPOSED else tensor)
    ours["lm_head.weight"] = ours["wte.weight"]  # tied
    return ours


def gpt2_config(hf_state_dict: dict[str, torch.Tensor], n_head: int) -> GPTConfig:
    """The GPTConfig of a GPT-2 state dict (the number of heads is not in the weights)."""
    sd = {name.removeprefix("transformer."): t for name, t in hf_state_dict.items()}
    layers = {int(name.split(".")[1]) for name in sd if name.startswith("h.")}
    vocab_size, n_embd = sd["wte.weight"].shape
    return GPTConfig(vocab_size=vocab_size, block_size=sd["wpe.weight"].shape[0],
                     n_layer=len(layers), n_head=n_head, n_embd=n_embd,
                     bias="ln_f.bias" in sd)


def load_gpt2(directory: str | Path) -> GPT:
    """A GPT holding GPT-2 weights from a Hugging Face model folder on disk (`config.json` and
    `model.safetensors` or `pytorch_model.bin`). Nothing is downloaded."""
    directory = Path(directory)
    config_file = directory / "config.json"
    if not config_file.exists():
        raise FileNotFoundError(f"no config.json in {directory}: expected a Hugging Face GPT-2 "
                                f"folder with config.json and model.safetensors or "
                                f"pytorch_model.bin")
    n_head = json.loads(config_file.read_text(encoding="utf-8"))["n_head"]
    if (directory / "model.safetensors").exists():
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise ImportError("reading model.safetensors needs the safetensors package: "
                              "pip install safetensors") from exc
        hf = load_file(directory / "model.safetensors")
    elif (directory / "pytorch_model.bin").exists():
        hf = torch.load(directory / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise FileNotFoundError(f"no model.safetensors or pytorch_model.bin in {directory}")
    model = GPT(gpt2_config(hf, n_head))
    model.load_state_dict(gpt2_state_dict(hf))
    return model
