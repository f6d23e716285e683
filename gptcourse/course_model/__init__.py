"""The course model: a small GPT pretrained on the course's stories, shipped with the package.

Later lessons (attention maps, generation, fine-tuning, RLHF) start from it instead of
training first. It is made by a recipe that runs the same code as lesson 07:

    gptcourse train --out runs/course --ship

which trains a byte-level BPE tokenizer of VOCAB_SIZE tokens on CORPUS_BYTES of generated
stories (seed 0), pretrains the GPTConfig defaults with RECIPE on it, and writes the result
here: `model.pt` (a checkpoint without optimiser state, weights in float16) and
`training_log.json` (the losses and samples along the way, and what the run cost).

    from gptcourse import load_course_model
    model, tokenizer = load_course_model()

Beside it ships the **SFT model** (lesson 08): the course model fine-tuned to answer questions
about a story and to write stories on request, in the chat template of `gptcourse.finetuning`.
Lessons 09 and 10 start from it. Its recipe starts from the shipped course model:

    gptcourse train --stage sft --out runs/sft --ship

which writes `sft_model.pt` and `sft_training_log.json` here (SFT_RECIPE, and the held-out
figures it reached).

    model, tokenizer = load_course_model("sft")
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

from gptcourse.data import load_corpus
from gptcourse.model import GPT, GPTConfig
from gptcourse.pretraining import TrainingRun, TrainSettings, encode_text
from gptcourse.tokenizer import Tokenizer

HERE = Path(__file__).parent
CHECKPOINT = HERE / "model.pt"
TRAINING_LOG = HERE / "training_log.json"
SFT_CHECKPOINT = HERE / "sft_model.pt"
SFT_TRAINING_LOG = HERE / "sft_training_log.json"
# each stage's checkpoint, and the arguments of `gptcourse train` that rebuild it
STAGES = {"pretrained": CHECKPOINT, "sft": SFT_CHECKPOINT, "rlhf": HERE / "rlhf_model.pt",
          "rlhf_beta0": HERE / "rlhf_beta0_model.pt", "dpo": HERE / "dpo_model.pt",
          "grpo": HERE / "grpo_model.pt"}
RECIPES = {"pretrained": "--out runs/course", "sft": "--stage sft --out runs/sft",
           "rlhf": "--stage rlhf --out runs/rlhf", "rlhf_beta0": "--stage rlhf --out runs/rlhf",
           "dpo": "--stage dpo --out runs/dpo", "grpo": "--stage grpo --out runs/grpo"}

CORPUS_BYTES = 4_000_000  # ~1M tokens: the model sees each about four times in the recipe
VOCAB_SIZE = 2048  # GPTConfig's default vocab_size
RECIPE = TrainSettings(steps=800, batch_size=16, max_lr=2e-3, min_lr=2e-4, warmup=50,
                       weight_decay=0.1, grad_clip=1.0, eval_every=50, eval_batches=4, seed=0)


def course_data(path: str | os.PathLike | None = None, tokenizer: Tokenizer | None = None,
                n_bytes: int = CORPUS_BYTES) -> tuple[Tokenizer, torch.Tensor, torch.Tensor]:
    """(tokenizer, train ids (N,), validation ids (M,)) of the course corpus, or of the UTF-8
    file at `path`. Without a tokenizer, one of VOCAB_SIZE tokens is trained on the training
    split (the validation split stays unseen by both)."""
    corpus = load_corpus(path, n_bytes=n_bytes)
    if tokenizer is None:
        tokenizer = Tokenizer.train(corpus.train, VOCAB_SIZE)
    return tokenizer, encode_text(tokenizer, corpus.train), encode_text(tokenizer, corpus.val)


def load_course_model(stage: str = "pretrained", *,
                      device: str | None = "cpu") -> tuple[GPT, Tokenizer]:
    """The shipped model of `stage` (in eval mode, float32) and its tokenizer, read offline:
    "pretrained" (lesson 07), "sft" (lesson 08, with the chat markers of
    `gptcourse.finetuning` in its tokenizer), "rlhf" (lesson 09's policy, PPO on the KL
    leash), "rlhf_beta0" (the same run without the leash: the reward hacker), "dpo" or
    "grpo" (lesson 10's, DPO on lesson 09's pairs and GRPO on story questions)."""
    from gptcourse.checkpoint import load_model

    if stage not in STAGES:
        raise ValueError(f"stage must be one of {', '.join(map(repr, STAGES))}, got {stage!r}")
    path = STAGES[stage]
    if not path.is_file():
        raise FileNotFoundError(f"the {stage} course model is missing from the package "
                                f"({path}); reinstall gptcourse, or rebuild it with: gptcourse "
                                f"train {RECIPES[stage]} --ship")
    model, tokenizer = load_model(path, device=device)
    if stage != "pretrained":
        from gptcourse.finetuning import chat_ids

        chat_ids(tokenizer)  # a chat model's file without its markers is not one
    return model, tokenizer


def training_log(stage: str = "pretrained") -> dict:
    """The shipped model's training log: the recipe, the machine, and one row per evaluation
    (step, tokens, lr, train_loss, val_loss, seconds, and a sample or, for "sft", the
    pretraining validation loss), and for "sft" the held-out figures before and after."""
    path = SFT_TRAINING_LOG if stage == "sft" else TRAINING_LOG
    return json.loads(path.read_text(encoding="utf-8"))


def ship(run: TrainingRun, command: str, directory: str | os.PathLike = HERE) -> Path:
    """Write `run` as the course model into `directory`: the checkpoint in float16 without
    its optimiser, and the training log. Returns the checkpoint's path."""
    from gptcourse.checkpoint import save_checkpoint

    directory = Path(directory)
    path = save_checkpoint(directory / CHECKPOINT.name, run, with_optimizer=False,
                           dtype=torch.float16)
    log = {
        "command": command,
        "corpus": f"generated stories, seed 0, {CORPUS_BYTES:,} bytes",
        "vocab_size": run.tokenizer.vocab_size,
        "config": dict(vars(run.model.config)),
        "parameters": run.model.num_parameters(),
        "settings": run.settings.as_dict(),
        "steps": run.step,
        "tokens_seen": run.step * run.tokens_per_step,
        "train_seconds": round(run.seconds, 1),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
                   f"{run.device.type}",
        "torch": torch.__version__,
        "written": time.strftime("%Y-%m-%d"),
        "final_val_loss": run.log[-1]["val_loss"],
        "log": run.log,
    }
    (directory / TRAINING_LOG.name).write_text(json.dumps(log, indent=1) + "\n",
                                               encoding="utf-8")
    return path


# --- the SFT model (lesson 08) ---------------------------------------------------------------

SFT_RECIPE = TrainSettings(steps=3000, batch_size=8, max_lr=2e-3, min_lr=2e-4, warmup=100,
                           weight_decay=0.1, grad_clip=1.0, eval_every=250, eval_batches=4,
                           sample_prompt="", seed=0)
# then a second, short cycle on fresh tasks of the same kinds (a warm restart): a new AdamW, a
# quarter of the first cycle's peak learning rate. After the first cycle a model of this recipe
# answers who and where but may guess an animal or an age (one run: 1 of 16 animals, 0 of 7
# ages right on the held-out questions); the second cycle teaches those lookups (16 of 16, 7 of
# 7). Cheaper fixes were worse: 4,000 steps in one cycle memorise the training split's names
# (held-out stories met their constraints 45 %, the names replaced by known ones), and a second
# cycle on questions alone lifted the answers but broke the stories (10 % met the rule).
SFT_SECOND_CYCLE = TrainSettings(steps=400, batch_size=8, max_lr=5e-4, min_lr=5e-5, warmup=20,
                                 weight_decay=0.1, grad_clip=1.0, eval_every=200,
                                 eval_batches=4, sample_prompt="", seed=1)
SFT_SECOND_TASKS_SEED = 11  # the second cycle's training tasks (the first's are seed 0)
SFT_MIX = 2  # rows of pretraining text in each batch of SFT_RECIPE.batch_size examples
SFT_TASKS = 12000  # training tasks, SFT_STORY_FRACTION of them constraint stories
SFT_STORY_FRACTION = 0.3
SFT_PER_STORY = 5  # questions asked about each training story, in one chat
SFT_HELDOUT = (100, 20)  # held-out story questions and constraint stories the figures use
SFT_REPLY_TOKENS = (64, 256)  # the most tokens a reply to each may have
SFT_PRETRAIN_BYTES = 1_000_000  # of the pretraining split, mixed in against forgetting


def sft_data(tokenizer: Tokenizer, masked: bool = True, n_tasks: int = SFT_TASKS,
             seed: int = 0) -> "SFTData":
    """The recipe's SFT data for a chat tokenizer: n_tasks training tasks and the held-out
    tasks as examples, the start of the course corpus's training split (to mix in) and its
    validation split (to measure forgetting on the windows the course model's recipe used).
    masked=False trains the prompts too (the ablation)."""
    from gptcourse.data.tasks import sft_tasks
    from gptcourse.finetuning import SFTData, encode_tasks

    block_size = GPTConfig().block_size
    tasks = sft_tasks(n_tasks, "train", seed, SFT_STORY_FRACTION, SFT_PER_STORY)
    mix, val = pretraining_streams(tokenizer)
    return SFTData(train=encode_tasks(tokenizer, tasks, block_size, masked),
                   heldout=encode_tasks(tokenizer, sft_heldout_tasks(), block_size, masked),
                   pretrain_train=mix, pretrain_val=val)


def pretraining_streams(tokenizer: Tokenizer, train_bytes: int = SFT_PRETRAIN_BYTES,
                        val_bytes: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(the first train_bytes of the course corpus's training split, its validation split or
    the first val_bytes of it) as token ids: text to mix into SFT batches, and the text whose
    loss measures forgetting."""
    corpus = load_corpus(n_bytes=CORPUS_BYTES)
    return (encode_text(tokenizer, corpus.train[:train_bytes]),
            encode_text(tokenizer, corpus.val[:val_bytes]))


def sft_heldout_tasks(seed: int = 0) -> list:
    """The held-out tasks the recipe's figures are measured on (SFT_HELDOUT)."""
    from gptcourse.data.tasks import constraint_stories, story_questions

    n_questions, n_stories = SFT_HELDOUT
    return story_questions(n_questions, "heldout", seed) + \
        constraint_stories(n_stories, "heldout", seed)


def start_sft(settings: TrainSettings = SFT_RECIPE, device: str | None = None) -> TrainingRun:
    """A fresh SFT run: the shipped course model with the chat markers added
    (`finetuning.add_chat_tokens`), and a new AdamW optimiser."""
    from gptcourse.finetuning import add_chat_tokens
    from gptcourse.pretraining import make_optimizer, pick_device

    model, tokenizer = add_chat_tokens(*load_course_model(device=pick_device(device)))
    torch.manual_seed(settings.seed)
    return TrainingRun(model.train(), tokenizer, settings,
                       make_optimizer(model, settings.max_lr, settings.weight_decay),
                       torch.Generator().manual_seed(settings.seed))


def ship_sft(run: TrainingRun, command: str, figures: dict,
             directory: str | os.PathLike = HERE,
             settings: TrainSettings = SFT_RECIPE) -> Path:
    """Write `run` (the recipe's second cycle, after a first of `settings`) as the SFT model
    into `directory`: the checkpoint in float16 without its optimiser, and its training log
    with the held-out `figures`. Returns the checkpoint's path."""
    from gptcourse.checkpoint import save_checkpoint

    directory = Path(directory)
    path = save_checkpoint(directory / SFT_CHECKPOINT.name, run, with_optimizer=False,
                           dtype=torch.float16)
    log = {
        "command": command,
        "start": "the shipped course model (gptcourse/course_model/model.pt), chat markers "
                 "added",
        "data": f"{SFT_TASKS:,} training tasks of gptcourse.data.tasks (seed 0), then as "
                f"many fresh ones (seed {SFT_SECOND_TASKS_SEED}) for the second cycle; "
                f"{SFT_MIX} rows of pretraining text per batch",
        "vocab_size": run.tokenizer.vocab_size,
        "config": dict(vars(run.model.config)),
        "settings": settings.as_dict(),
        "second_cycle": run.settings.as_dict(),
        "mix": SFT_MIX,
        "steps": run.log[-1]["step"],
        "train_seconds": round(run.seconds, 1),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
                   f"{run.device.type}",
        "torch": torch.__version__,
        "written": time.strftime("%Y-%m-%d"),
        "figures": figures,
        "log": run.log,
    }
    (directory / SFT_TRAINING_LOG.name).write_text(json.dumps(log, indent=1) + "\n",
                                                   encoding="utf-8")
    return path


def sft_figures(model: GPT, tokenizer: Tokenizer, pretrain_val: torch.Tensor,
                progress: bool = False) -> dict:
    """The figures the SFT model is judged by, on the held-out tasks (`sft_heldout_tasks`):
    `finetuning.evaluate`'s rates (a question's reply may have up to 64 tokens, a story's
    256: SFT_REPLY_TOKENS), and the pretraining validation loss on the windows the course
    model's recipe measured (forgetting)."""
    from gptcourse.finetuning import evaluate
    from gptcourse.pretraining import estimate_loss

    tasks = sft_heldout_tasks()
    kinds = [evaluate(model, tokenizer, [t for t in tasks if t.kind == kind], most,
                      progress=progress) for kind, most in zip(("question", "story"),
                                                               SFT_REPLY_TOKENS)]
    asked, told = kinds
    n = asked["questions"] + told["stories"]
    figures = {"exact_match": asked["exact_match"], "meets_rule": told["meets_rule"],
               "ended": (asked["ended"] * asked["questions"] + told["ended"] * told["stories"]) / n,
               "leaked": (asked["leaked"] * asked["questions"]
                          + told["leaked"] * told["stories"]) / n,
               "questions_ended": asked["ended"], "questions": asked["questions"],
               "stories": told["stories"],
               "pretrain_val_loss": estimate_loss(model, pretrain_val, RECIPE.batch_size,
                                                  RECIPE.eval_batches, seed=RECIPE.seed)}
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}


def train_sft(out: str | os.PathLike, settings: TrainSettings = SFT_RECIPE,
              device: str | None = None, ablation: bool = True,
              report=print) -> tuple[TrainingRun, dict]:
    """The SFT recipe: fine-tune the shipped course model on `sft_data` with `settings`, then
    a `second_cycle`, saving `out`/checkpoint.pt at every evaluation (atomically), and measure
    `sft_figures` before, after the first cycle and at the end; with `ablation`, also the same
    two cycles with the prompts trained too (`unmasked_figures`). Returns the final run and
    {"pretrained", "first_cycle", "sft", "unmasked"} figures; `report` receives one line at
    each stage. Refuses an `out` that holds a checkpoint already."""
    from gptcourse.checkpoint import save_checkpoint
    from gptcourse.finetuning import finetune

    checkpoint = Path(out) / "checkpoint.pt"
    if checkpoint.exists():
        raise ValueError(f"{checkpoint} exists; an SFT run is not resumed (it takes minutes): "
                         f"choose another --out, or delete it")
    run = start_sft(settings, device)
    data = sft_data(run.tokenizer)
    report(f"fine-tuning {run.model.num_parameters():,} parameters on {len(data.train):,} "
           f"examples for {settings.steps} + {SFT_SECOND_CYCLE.steps} steps on {run.device}, "
           f"measuring on {len(data.heldout)} held-out tasks")
    figures = {"pretrained": sft_figures(run.model, run.tokenizer, data.pretrain_val)}
    report(f"before: {_summary(figures['pretrained'])}")

    def save(r: TrainingRun) -> None:
        save_checkpoint(checkpoint, r)

    finetune(run, data, mix=SFT_MIX, save=save)
    if run.step < settings.steps:
        report(f"stopped at step {run.step} of {settings.steps}; start again to finish")
        return run, figures
    figures["first_cycle"] = sft_figures(run.model, run.tokenizer, data.pretrain_val)
    report(f"after {run.step} steps ({run.seconds:.0f} s): {_summary(figures['first_cycle'])}")
    run = second_cycle(run, save=save)
    if run.step < SFT_SECOND_CYCLE.steps:
        report(f"stopped at step {run.step} of the second cycle's {SFT_SECOND_CYCLE.steps}")
        return run, figures
    figures["sft"] = sft_figures(run.model, run.tokenizer, data.pretrain_val)
    report(f"after the second cycle ({run.seconds:.0f} s): {_summary(figures['sft'])}")
    if ablation:
        figures["unmasked"] = unmasked_figures(settings, device)
        report(f"unmasked (the prompt trained too): {_summary(figures['unmasked'])}")
    return run, figures


def second_cycle(first: TrainingRun, settings: TrainSettings = SFT_SECOND_CYCLE,
                 masked: bool = True, save=None) -> TrainingRun:
    """The recipe's second cycle after `first` has run its schedule: the same model on fresh
    tasks (`sft_data` of seed SFT_SECOND_TASKS_SEED) with a new AdamW and `settings`' schedule.
    Returns the new run; its log goes on from first's (steps and seconds counted from the
    start of the first cycle)."""
    from gptcourse.finetuning import finetune
    from gptcourse.pretraining import make_optimizer

    run = TrainingRun(first.model, first.tokenizer, settings,
                      make_optimizer(first.model, settings.max_lr, settings.weight_decay),
                      torch.Generator().manual_seed(settings.seed), log=list(first.log),
                      seconds=first.seconds)
    done = len(run.log)
    try:
        finetune(run, sft_data(run.tokenizer, masked, seed=SFT_SECOND_TASKS_SEED), mix=SFT_MIX,
                 save=save)
    finally:
        run.log[done:] = [dict(row, step=row["step"] + first.step) for row in run.log[done:]]
    return run


def unmasked_figures(settings: TrainSettings = SFT_RECIPE, device: str | None = None) -> dict:
    """The ablation: `sft_figures` of the recipe's two cycles run with the prompts trained
    too (masked=False)."""
    from gptcourse.finetuning import finetune

    run = start_sft(settings, device)
    data = sft_data(run.tokenizer, masked=False)
    finetune(run, data, mix=SFT_MIX)
    run = second_cycle(run, masked=False)
    return sft_figures(run.model, run.tokenizer, data.pretrain_val)


def _summary(f: dict) -> str:
    return (f"exact match {f['exact_match']:.1%} of {f['questions']} questions, constraints "
            f"met {f['meets_rule']:.1%} of {f['stories']} stories, ended {f['ended']:.1%}, "
            f"leaked {f['leaked']:.1%}, pretraining validation loss "
            f"{f['pretrain_val_loss']:.3f}")
