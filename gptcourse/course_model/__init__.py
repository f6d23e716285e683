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
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

from gptcourse.data import load_corpus
from gptcourse.model import GPT
from gptcourse.pretraining import TrainingRun, TrainSettings, encode_text
from gptcourse.tokenizer import Tokenizer

HERE = Path(__file__).parent
CHECKPOINT = HERE / "model.pt"
TRAINING_LOG = HERE / "training_log.json"

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


def load_course_model(device: str | None = "cpu") -> tuple[GPT, Tokenizer]:
    """The shipped course model (in eval mode, float32) and its tokenizer, read offline."""
    from gptcourse.checkpoint import load_model

    if not CHECKPOINT.is_file():
        raise FileNotFoundError(f"the course model is missing from the package ({CHECKPOINT}); "
                                f"reinstall gptcourse, or rebuild it with: gptcourse train "
                                f"--out runs/course --ship")
    return load_model(CHECKPOINT, device=device)


def training_log() -> dict:
    """The shipped model's training log: the recipe, the machine, and one row per evaluation
    (step, tokens, lr, train_loss, val_loss, seconds, sample)."""
    return json.loads(TRAINING_LOG.read_text(encoding="utf-8"))


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
