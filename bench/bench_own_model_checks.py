"""How long learners wait for the checks of the pieces they assemble into their own GPT:
one check() of a correct answer for each of attention.MultiHeadAttention, gpt_model.Block,
gpt_model.GPT, generation.generate and pretraining.train_step (target: median under 1 s on
2 cores)."""

from __future__ import annotations

import sys
from pathlib import Path

from run import Figure, median_seconds

from gptcourse import check

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def run() -> list[Figure]:
    import test_own_model_checks as learner  # correct answers written as a learner would

    answers = {"attention.MultiHeadAttention": learner.Attention,
               "gpt_model.Block": learner.Block, "gpt_model.GPT": learner.GPT,
               "generation.generate": learner.generate,
               "pretraining.train_step": learner.train_step}
    figures = []
    for exercise, answer in answers.items():
        assert check(exercise, answer).passed
        seconds = median_seconds(lambda: check(exercise, answer), repeat=7, warmup=1)
        figures.append(Figure(f"check({exercise!r}, correct answer): median latency",
                              seconds * 1e3, "ms", "target < 1000 ms"))
    return figures
