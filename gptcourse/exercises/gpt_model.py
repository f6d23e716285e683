"""Checks for lesson 05, gpt_model."""

from __future__ import annotations

import random
from dataclasses import replace

import torch

from gptcourse import model
from gptcourse.exercises.contract import NO_GRADIENT, Case, Exercise, Mistake, Outcome
from gptcourse.exercises.modules import (ModelExercise, future_leak, module_case,
                                         not_a_module_hint, weight_names)
from gptcourse.exercises.registration import register
from gptcourse.model import GPTConfig


# --- Block and GPT, the learner's modules ------------------------------------------------------

def _small_config(**changes) -> GPTConfig:
    return replace(GPTConfig(vocab_size=23, block_size=8, n_layer=2, n_head=2, n_embd=12),
                   **changes)


def _block_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)

    def x(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    return [
        module_case("C = 12, 2 heads, a batch of 2 × 5 tokens", model.Block,
                    {"config": _small_config()}, (x(2, 5, 12),), seed, causal_from=2),
        module_case("C = 16, 4 heads, 7 tokens", model.Block,
                    {"config": _small_config(n_embd=16, n_head=4)}, (x(1, 7, 16),), seed + 1,
                    causal_from=4),
        module_case("without biases", model.Block, {"config": _small_config(bias=False)},
                    (x(2, 3, 12),), seed + 2),
    ]


def _wrong_block(forward) -> type:
    class WrongBlock(model.Block):
        def forward(self, x):
            return forward(self, x)
    return WrongBlock


def _post_norm(b, x):
    x = b.ln1(x + b.attn(x))
    return b.ln2(x + b.mlp(x))


def _no_attention_residual(b, x):
    x = b.attn(b.ln1(x))
    return x + b.mlp(b.ln2(x))


def _no_mlp_residual(b, x):
    x = x + b.attn(b.ln1(x))
    return b.mlp(b.ln2(x))


def _normalised_residual(b, x):
    x = b.ln1(x)
    x = x + b.attn(x)
    x = b.ln2(x)
    return x + b.mlp(x)


def _one_layer_norm(b, x):
    x = x + b.attn(b.ln1(x))
    return x + b.mlp(b.ln1(x))


def _parallel_halves(b, x):  # both halves read the block's input (GPT-J's layout)
    return x + b.attn(b.ln1(x)) + b.mlp(b.ln2(x))


register(ModelExercise(
    id="gpt_model.Block",
    title="the decoder block",
    points=2,
    reference=model.Block,
    make_cases=_block_cases,
    not_built_from=("gptcourse.model.Block",),
    mistakes=(
        weight_names("`ln1`, `attn`, `ln2` and `mlp`: nn.LayerNorm(config.n_embd, "
                     "bias=config.bias), MultiHeadAttention(config.n_embd, config.n_head, "
                     "bias=config.bias), another LayerNorm, MLP(config.n_embd, bias=config.bias)"),
        not_a_module_hint("Block"),
        future_leak("A token sees the future: its output changed when only a later token did. "
                    "Use the causal MultiHeadAttention, and mix tokens nowhere else: "
                    "LayerNorm and the MLP work on each token alone."),
        Mistake("That is post-norm (the 2017 Transformer's): normalise the input of each half, "
                "not the sum: x = x + attn(ln1(x)), then x + mlp(ln2(x)).",
                wrong=_wrong_block(_post_norm)),
        Mistake("The attention half's residual connection is missing: add its output to the "
                "input, x = x + self.attn(self.ln1(x)).",
                wrong=_wrong_block(_no_attention_residual)),
        Mistake("The feed-forward half's residual connection is missing: return "
                "x + self.mlp(self.ln2(x)), not the MLP's output alone.",
                wrong=_wrong_block(_no_mlp_residual)),
        Mistake("LayerNorm goes on the input of each half only; the residual path x itself "
                "runs through unnormalised: x = x + attn(ln1(x)), not x = ln1(x) first.",
                wrong=_wrong_block(_normalised_residual)),
        Mistake("Each half has its own LayerNorm: ln1 before attention, ln2 before the MLP. "
                "Yours uses one for both.", wrong=_wrong_block(_one_layer_norm)),
        Mistake("The halves run one after the other: the MLP reads x after attention has "
                "added to it, x + mlp(ln2(x)) with the new x.",
                wrong=_wrong_block(_parallel_halves)),
        NO_GRADIENT,
    ),
    hint="x = x + self.attn(self.ln1(x)); return x + self.mlp(self.ln2(x)).",
))


def _gpt_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)

    def ids(config: GPTConfig, B: int, T: int) -> torch.Tensor:
        return torch.randint(0, config.vocab_size, (B, T), generator=g)

    small, wide = _small_config(), _small_config(n_layer=1, n_head=4, n_embd=16, vocab_size=31)
    full = ids(small, 2, 8)
    return [
        module_case("2 blocks, 2 × 6 tokens", model.GPT, {"config": small}, (ids(small, 2, 6),),
                    seed, causal_from=3),
        module_case("the whole context, block_size = 8 tokens", model.GPT, {"config": small},
                    (full,), seed, causal_from=5),
        module_case("one block, 4 heads, 5 tokens", model.GPT, {"config": wide},
                    (ids(wide, 1, 5),), seed + 1, causal_from=1),
        module_case("with targets: (logits, loss)", model.GPT, {"config": small},
                    (ids(small, 2, 6),), seed + 2, targets=ids(small, 2, 6)),
        module_case("without biases", model.GPT, {"config": _small_config(bias=False)},
                    (ids(small, 1, 4),), seed + 3),
    ]


def _gpt_forward(m, idx, targets=None, *, positions="before", final_norm=True,
                 probabilities=False):
    """The reference GPT's forward with one thing done differently."""
    T = idx.size(1)
    x = m.wte(idx) + (m.wpe(torch.arange(T)) if positions == "before" else 0)
    for block in m.blocks:
        x = block(x)
    if positions == "after":
        x = x + m.wpe(torch.arange(T))
    logits = m.lm_head(m.ln_f(x) if final_norm else x)
    loss = None if targets is None else \
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
    return (logits.softmax(dim=-1) if probabilities else logits), loss


def _wrong_gpt(**mistake) -> type:
    class WrongGPT(model.GPT):
        def forward(self, idx, targets=None):
            return _gpt_forward(self, idx, targets, **mistake)
    return WrongGPT


class _UntiedGPT(model.GPT):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__(config)
        self.lm_head.weight = torch.nn.Parameter(self.wte.weight.detach().clone())


def _logits_only(case: Case, outcome: Outcome) -> bool:
    report = outcome.value if isinstance(outcome.value, dict) else {}
    return isinstance(report.get("output"), torch.Tensor)


register(ModelExercise(
    id="gpt_model.GPT",
    title="the whole GPT",
    points=3,
    reference=model.GPT,
    make_cases=_gpt_cases,
    not_built_from=("gptcourse.model.GPT", "gptcourse.model.Block"),
    mistakes=(
        weight_names("`wte` (nn.Embedding(vocab_size, n_embd)), `wpe` (nn.Embedding("
                     "block_size, n_embd)), `blocks` (an nn.ModuleList of n_layer Blocks), "
                     "`ln_f` (a LayerNorm) and `lm_head` (nn.Linear(n_embd, vocab_size, "
                     "bias=False))"),
        not_a_module_hint("GPT"),
        Mistake("forward returns two things, (logits, loss), with loss None when no targets "
                "are given: the course's code unpacks logits, loss = model(idx, targets).",
                symptom=_logits_only),
        future_leak("A position sees the future: its logits changed when only a later token "
                    "did. The blocks' causal attention is the only place tokens mix."),
        Mistake("The positions are missing: add wpe(torch.arange(T)) to the token embeddings "
                "before the first block, so the model knows where each token sits.",
                wrong=_wrong_gpt(positions=None)),
        Mistake("Add the position embedding to the token embedding at the start, before the "
                "blocks: attention needs to know where each token sits.",
                wrong=_wrong_gpt(positions="after")),
        Mistake("The final LayerNorm is missing: the last block's output goes through ln_f "
                "before the head.", wrong=_wrong_gpt(final_norm=False)),
        Mistake("Return the logits, the raw scores: softmax comes later (in the loss, and "
                "when sampling).", wrong=_wrong_gpt(probabilities=True)),
        Mistake("The head is tied to the token embedding: one matrix for both, "
                "self.lm_head.weight = self.wte.weight. Yours are two matrices, so their "
                "gradients differ (the weights only look the same because they were loaded "
                "alike).", wrong=_UntiedGPT),
        NO_GRADIENT,
    ),
    hint="x = wte(idx) + wpe(arange(T)); every block; ln_f; logits = lm_head(x); loss = "
         "cross_entropy of the flattened logits and targets when targets are given; return "
         "(logits, loss).",
))


# --- parameter_count -------------------------------------------------------------------------

def _random_config(rng: random.Random) -> GPTConfig:
    n_head = rng.randint(1, 6)
    return GPTConfig(vocab_size=rng.randint(50, 5000), block_size=rng.randint(8, 700),
                     n_layer=rng.randint(2, 9), n_head=n_head,
                     n_embd=n_head * rng.randint(3, 40))


def _parameter_count_cases(seed: int) -> list[Case]:
    rng = random.Random(seed)
    return [
        Case("the course model's config", (GPTConfig(),)),
        Case("GPT-2 small", (GPTConfig.gpt2_small(),)),
        Case("a tiny model, every size different",
             (GPTConfig(vocab_size=11, block_size=7, n_layer=3, n_head=1, n_embd=5),)),
        Case("one layer", (GPTConfig(vocab_size=100, block_size=16, n_layer=1, n_head=2,
                                     n_embd=6),)),
        Case("a random config", (_random_config(rng),)),
        Case("another random config", (_random_config(rng),)),
    ]


def _without(part: str):
    """A count that leaves one of the reference's groups out."""
    return lambda config: sum(n for name, n in model.parameter_groups(config).items()
                              if name != part)


def _plus(extra):
    return lambda config: model.parameter_count(config) + extra(config)


def _mlp_widened(width: int):
    """A count whose feed-forward network widens to width × C instead of 4 × C."""
    def count(c: GPTConfig) -> int:
        C, b = c.n_embd, int(c.bias)
        mlp = 2 * width * C * C + b * (width * C + C)
        return _without("feed-forward")(c) + c.n_layer * mlp
    return count


register(Exercise(
    id="gpt_model.parameter_count",
    title="counting a GPT's parameters",
    points=1,
    reference=model.parameter_count,
    make_cases=_parameter_count_cases,
    mistakes=(
        Mistake("The position embedding has parameters too: one vector of n_embd per position, "
                "block_size × n_embd.",
                wrong=_without("position embedding")),
        Mistake("The output head is tied to the token embedding: they are one matrix, so count "
                "vocab_size × n_embd once.",
                wrong=_plus(lambda c: c.vocab_size * c.n_embd)),
        Mistake("Each LayerNorm has a weight and a bias of n_embd each; there are two per block "
                "and one final LayerNorm.",
                wrong=_without("LayerNorms")),
        Mistake("Count the final LayerNorm (ln_f) too, after the last block: 2 × n_embd.",
                wrong=_plus(lambda c: -2 * c.n_embd)),
        Mistake("A LayerNorm has a bias as well as a weight: 2 × n_embd per LayerNorm.",
                wrong=_plus(lambda c: -(2 * c.n_layer + 1) * c.n_embd)),
        Mistake("Every linear map has a bias too (the config has bias=True): 3C for q, k, v; C "
                "for the attention's projection; 4C and C in the feed-forward network.",
                wrong=lambda c: model.parameter_count(replace(c, bias=False))
                + (2 * c.n_layer + 1) * c.n_embd),
        *(Mistake("The feed-forward network widens to 4 × n_embd: two matrices of C × 4C, "
                  "and biases of 4C and C.", wrong=_mlp_widened(width)) for width in (1, 2)),
        Mistake("Attention has three input projections (query, key and value, C × 3C together, "
                "with 3C biases) and one output projection (C × C, plus C).",
                wrong=_plus(lambda c: -c.n_layer * (2 * c.n_embd * c.n_embd + 2 * c.n_embd))),
        Mistake("Attention ends with an output projection, C × C plus a bias of C, in every "
                "block.",
                wrong=_plus(lambda c: -c.n_layer * (c.n_embd * c.n_embd + c.n_embd))),
        Mistake("Splitting into heads adds no parameters: the heads share the C × 3C projection "
                "between them.",
                wrong=_plus(lambda c: (c.n_head - 1) * model.parameter_groups(c)["attention"])),
        Mistake("Every one of the n_layer blocks has its own attention, feed-forward network and "
                "two LayerNorms.",
                wrong=lambda c: model.parameter_count(replace(c, n_layer=1))),
    ),
    hint="Add up: the token embedding (V × C, shared with the head), the position embedding "
         "(block_size × C), and per block two LayerNorms (2C each), attention (C × 3C + 3C + "
         "C × C + C) and the MLP (C × 4C + 4C + 4C × C + C); then the final LayerNorm (2C).",
))
