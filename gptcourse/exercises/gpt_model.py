"""Checks for lesson 05, gpt_model."""

from __future__ import annotations

import random
from dataclasses import replace

from gptcourse import model
from gptcourse.exercises.contract import Case, Exercise, Mistake
from gptcourse.exercises.registration import register
from gptcourse.model import GPTConfig


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
