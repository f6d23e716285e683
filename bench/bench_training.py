"""The training loop's cost, measured in one run (lesson 07):

1. training tokens per second of the reference loop (`pretraining.train`: schedule, clipping,
   progress bar, the divergence check) against a bare loop (batch, forward, backward, clip,
   AdamW step, nothing else), same model, same batches. The two alternate in chunks, so that
   a busy machine slows both alike; each reference chunk ends with one evaluation of one batch
   per split, which is counted against it;
2. the same, with the lesson's evaluation cadence (every 30 steps, 2 batches per split, and a
   40-token sample);
3. peak memory (resident set) of a process that loads the data and runs the lesson's training
   run for 60 steps, against a process that only imports torch and the course.
"""

from __future__ import annotations

import dataclasses
import statistics
import subprocess
import sys
import time

import torch
from run import Figure

from gptcourse.course_model import course_data
from gptcourse.pretraining import TrainingRun, TrainSettings, get_batch, train

CHUNK = 30  # steps per timed chunk
ROUNDS = 3
LESSON = TrainSettings(steps=300, batch_size=8, max_lr=2e-3, min_lr=2e-4, warmup=30,
                       eval_every=30, eval_batches=2, sample_tokens=40)


def _bare_chunk(run: TrainingRun, train_ids: torch.Tensor) -> float:
    model, optimizer = run.model, run.optimizer
    start = time.perf_counter()
    for _ in range(CHUNK):
        x, y = get_batch(train_ids, model.config.block_size, run.settings.batch_size,
                         run.generator)
        _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), run.settings.grad_clip)
        optimizer.step()
    return time.perf_counter() - start


def _reference_chunk(run: TrainingRun, train_ids, val_ids) -> float:
    start = time.perf_counter()
    train(run, train_ids, val_ids, until=run.step + CHUNK)
    return time.perf_counter() - start


def _overhead(settings: TrainSettings, tokenizer, train_ids, val_ids) -> tuple[float, float]:
    """(bare tokens/s, reference tokens/s), medians over alternating chunks."""
    bare = TrainingRun.start(tokenizer, settings, device="cpu")
    reference = TrainingRun.start(tokenizer, settings, device="cpu")
    _bare_chunk(bare, train_ids)  # warm-up: allocator, threads
    bare_s, reference_s = [], []
    for _ in range(ROUNDS):
        bare_s.append(_bare_chunk(bare, train_ids))
        reference_s.append(_reference_chunk(reference, train_ids, val_ids))
    tokens = CHUNK * settings.batch_size * bare.model.config.block_size
    return tokens / statistics.median(bare_s), tokens / statistics.median(reference_s)


_MEMORY = """
import resource, sys, torch
import gptcourse.pretraining
from gptcourse import load_course_model
if sys.argv[1] == "train":
    from gptcourse.course_model import course_data
    from gptcourse.pretraining import TrainingRun, TrainSettings, train
    _, tokenizer = load_course_model()
    tokenizer, train_ids, val_ids = course_data(tokenizer=tokenizer)
    settings = TrainSettings(**eval(sys.argv[2]))
    run = TrainingRun.start(tokenizer, settings, device="cpu")
    train(run, train_ids, val_ids, until=60, progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
"""


def _peak_mib(*args: str) -> float:
    out = subprocess.run([sys.executable, "-c", _MEMORY, *args], capture_output=True,
                         text=True, check=True)
    kib = int(out.stdout.split()[-1])
    return kib / 1024 / (1024 if sys.platform == "darwin" else 1)  # macOS reports bytes


def run() -> list[Figure]:
    from gptcourse import load_course_model

    _, tokenizer = load_course_model()
    tokenizer, train_ids, val_ids = course_data(tokenizer=tokenizer)
    figures = []

    quiet = dataclasses.replace(LESSON, steps=10_000, eval_every=10_000, eval_batches=1,
                                sample_prompt="")
    bare, reference = _overhead(quiet, tokenizer, train_ids, val_ids)
    figures.append(Figure("training tokens/s, bare loop (batch 8 x 256)", bare, "tok/s"))
    figures.append(Figure("  reference loop (schedule, clipping, progress bar)", reference,
                          "tok/s"))
    figures.append(Figure("  overhead of the reference loop", 100 * (bare / reference - 1), "%",
                          "target <= 5%"))
    bare, reference = _overhead(dataclasses.replace(LESSON, steps=10_000), tokenizer, train_ids,
                                val_ids)
    figures.append(Figure("  with the lesson's evaluations and samples every 30 steps",
                          100 * (bare / reference - 1), "%", "(reported)"))

    baseline = _peak_mib("import")
    peak = _peak_mib("train", repr(LESSON.as_dict()))
    figures.append(Figure("peak memory of the lesson's training run (resident)", peak, "MiB",
                          "target < 2048 MiB"))
    figures.append(Figure("  of which importing torch and the course", baseline, "MiB"))
    return figures
