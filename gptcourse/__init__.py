"""gptcourse: build a GPT piece by piece in JupyterLab, with instant feedback.

`check(exercise_id, fn)` checks a learner's function against the reference of that exercise;
the reference implementations live in one module per lesson (`gptcourse.welcome`, ...).
"""

from gptcourse.exercises import CheckResult, check

__version__ = "0.1.0"
__all__ = ["CheckResult", "check", "load_course_model"]


def load_course_model(stage: str = "pretrained", *, device: str | None = "cpu"):
    """(model, tokenizer): a small GPT trained on the course's stories that ships with the
    package (see `gptcourse.course_model`), read offline. stage: "pretrained" (lesson 07's
    course model), "sft" (lesson 08's fine-tuned assistant, whose tokenizer has the chat
    markers of `gptcourse.finetuning`), "rlhf" or "rlhf_beta0" (lesson 09's policies, with
    and without the KL leash). A function rather than an import so that
    `import gptcourse` stays fast and does not load torch."""
    from gptcourse.course_model import load_course_model as load

    return load(stage, device=device)
