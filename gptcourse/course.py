"""The course's lessons, in order. A lesson's name is its notebook's topic
(`solutions/NN_name.ipynb`), its reference module's name and its exercises' id prefix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Lesson:
    """modules: the package modules that hold the lesson's reference implementations, when
    they are not simply `gptcourse.<name>`; grading blocks them in the learner's process."""

    number: str
    name: str
    title: str
    modules: tuple[str, ...] = ()

    @property
    def reference_modules(self) -> tuple[str, ...]:
        return tuple(f"gptcourse.{module}" for module in self.modules or (self.name,))

    @property
    def notebook(self) -> str:
        return f"{self.number}_{self.name}.ipynb"


LESSONS: tuple[Lesson, ...] = (
    Lesson("00", "welcome", "Welcome: what G, P and T stand for"),
    Lesson("01", "tokenization", "Tokenization: from text to token ids, byte-pair encoding",
           ("tokenizer",)),
    Lesson("02", "embeddings", "Embeddings: from token ids to vectors, and where they stand"),
    Lesson("03", "attention", "Attention: how tokens gather information from each other"),
    Lesson("04", "feedforward", "The feed-forward network, LayerNorm and residual connections"),
    Lesson("05", "gpt_model", "The whole GPT: blocks, the stack, the output head", ("model",)),
    Lesson("06", "generation", "Generation: how a GPT writes, one token at a time"),
    Lesson("07", "pretraining", "Pretraining: teaching the GPT to predict the next token"),
    Lesson("08", "finetuning", "Fine-tuning: from a story model to an assistant"),
    Lesson("09", "rlhf", "RLHF: learning which answers people prefer"),
    Lesson("10", "preference_optimisation", "DPO and GRPO: preference optimisation past PPO"),
)


def lesson_named(name: str) -> Lesson:
    for lesson in LESSONS:
        if lesson.name == name:
            return lesson
    raise KeyError(f"no lesson named {name!r}; the lessons are "
                   f"{', '.join(lesson.name for lesson in LESSONS)}")


def lesson_of_notebook(filename: str) -> Lesson | None:
    """The lesson a notebook file belongs to, from its name `NN_name.ipynb`, if any."""
    for lesson in LESSONS:
        if filename == lesson.notebook:
            return lesson
    return None
