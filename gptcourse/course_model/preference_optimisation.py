"""Lesson 10's recipes: the DPO model, the GRPO model, and the comparison with PPO.

    gptcourse train --stage dpo --out runs/dpo --ship
    gptcourse train --stage grpo --out runs/grpo --ship
    gptcourse train --stage compare --out runs/compare --ship

All three start from the shipped SFT model (lesson 08), and use lesson 09's labeler, pairs and
reward model as they are shipped.

* **dpo** trains on lesson 09's training pairs with DPO (DPO_RECIPE), measures the held-out
  pairs' implicit-reward accuracy against the labeler's ceiling, and judges the policy
  against the SFT model by the labeler on held-out requests, as lesson 09's PPO policy was.
* **grpo** trains on training-split story questions with GRPO and the verifiable reward (1 for
  the exact answer, GRPO_RECIPE), and measures pass@1 on lesson 08's held-out questions
  before and after, by the fact asked for.
* **compare** runs PPO, DPO and GRPO (with the reward model, so that all three aim at the same
  thing) from the SFT model, COMPARISON_SEEDS seeds each, on about the same training time
  (COMPARISON), judges each against the SFT model, and saves the table lesson 10 shows. Its
  runs go two at a time on a machine with two cores or more.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import torch

from gptcourse.course_model import HERE, load_course_model
from gptcourse.ppo import PPOSettings
from gptcourse.preference_optimisation import DPOSettings, GRPOSettings

DPO_CHECKPOINT = HERE / "dpo_model.pt"
DPO_TRAINING_LOG = HERE / "dpo_training_log.json"
GRPO_CHECKPOINT = HERE / "grpo_model.pt"
GRPO_TRAINING_LOG = HERE / "grpo_training_log.json"
COMPARISON_FILE = HERE / "comparison.json"

DPO_RECIPE = DPOSettings(steps=200, batch_size=16, lr=5e-5, beta=0.5, eval_every=25)
# The SFT model answers lesson 08's held-out questions 97 % right (pass@1); what it misses are
# pets with made-up names ("Fimitor", "Micas"), rare words it must copy exactly: it answers 23
# of 60 such held-out questions, and samples 14 % of its answers to training ones right. So
# GRPO practises ...
GRPO_QUESTIONS = 4000  # training-split story questions (seed 1), ...
GRPO_FOCUS_SHARE = 0.5  # ... this share of them asking for a made-up pet name (`made_up_pet`)
GRPO_RECIPE = GRPOSettings(iterations=150, questions_per_batch=16, answers_per_question=8,
                           epochs=1, minibatch=16, lr=5e-5, beta=0.04, max_new_tokens=16)
HELDOUT_QUESTIONS = 100  # lesson 08's held-out story questions (seed 0)
MADE_UP_PET_QUESTIONS = 60  # held-out questions for a made-up pet name (seed 5)
JUDGED_REQUESTS = 100  # held-out requests the policies are judged on (seed 1, as lesson 09)

COMPARISON_SEEDS = (0, 1, 2)
# About two minutes of training each (86-133 s) on one core of an idle 2-core machine, two
# runs at a time; all nine runs, with their judging, took 20.6 minutes.
COMPARISON = {
    "PPO": PPOSettings(iterations=40, requests_per_batch=4, answers_per_request=4, epochs=2,
                       minibatch=8, lr=3e-5, beta=0.2, clip=0.2, max_new_tokens=200),
    "DPO": dataclasses.replace(DPO_RECIPE, steps=100, eval_every=50),
    "GRPO": GRPOSettings(iterations=40, questions_per_batch=4, answers_per_question=4,
                         epochs=2, minibatch=8, lr=3e-5, beta=0.04, clip=0.2,
                         max_new_tokens=200),
}


def training_log(stage: str) -> dict:
    """A shipped log: "dpo", "grpo" (settings, every log row, the figures) or "compare"
    (every run's figures and the table)."""
    paths = {"dpo": DPO_TRAINING_LOG, "grpo": GRPO_TRAINING_LOG, "compare": COMPARISON_FILE}
    if stage not in paths:
        raise ValueError(f"stage must be one of {', '.join(map(repr, paths))}, got {stage!r}")
    return json.loads(paths[stage].read_text(encoding="utf-8"))


def _fresh(out, name: str) -> Path:
    out = Path(out)
    if (out / name).exists():
        raise ValueError(f"{out} holds a run already ({name}): choose another --out, or "
                         f"delete it")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _machine() -> dict:
    return {"machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
            "torch": torch.__version__, "written": time.strftime("%Y-%m-%d")}


def _pairs():
    from gptcourse.course_model.rlhf import PAIRS_FILE, training_log as rlhf_log
    from gptcourse.preferences import load_pairs

    pairs = load_pairs(PAIRS_FILE)
    n_train = rlhf_log()["pairs"]["train"]  # saved training pairs first, then held-out ones
    return pairs[:n_train], pairs[n_train:]


def _judge(policy, sft, tokenizer, max_new_tokens: int, progress: bool,
           requests: int | None = None) -> dict:
    from gptcourse.data.labeler import Labeler
    from gptcourse.data.tasks import constraint_stories
    from gptcourse.ppo import compare_with_reference

    judged = constraint_stories(requests or JUDGED_REQUESTS, "heldout", seed=1)
    return compare_with_reference(policy, sft, tokenizer, judged, Labeler(seed=0),
                                  max_new_tokens, progress=progress)


# --- dpo ---------------------------------------------------------------------------------------

def train_dpo_stage(out, settings: DPOSettings = DPO_RECIPE, *, report=print,
                    progress: bool = True) -> dict:
    """DPO from the SFT model on lesson 09's pairs; writes `out`/dpo_model.pt (only when the
    run finished: a diverging run raises DivergedError first) and its log; returns the log."""
    from gptcourse.checkpoint import save_model
    from gptcourse.course_model.rlhf import training_log as rlhf_log
    from gptcourse.preference_optimisation import DPORun, train_dpo

    out = _fresh(out, DPO_CHECKPOINT.name)
    sft, tokenizer = load_course_model("sft")
    train_pairs, heldout_pairs = _pairs()
    report(f"DPO on {len(train_pairs)} training pairs, measured on {len(heldout_pairs)} "
           f"held-out ones")
    run = train_dpo(DPORun.start(sft, tokenizer, train_pairs, heldout_pairs, settings),
                    progress=progress)
    save_model(out / DPO_CHECKPOINT.name, run.policy, tokenizer, dtype=torch.float16)
    ceiling = rlhf_log()["reward_model"]["ceiling"]
    figures = {"heldout_accuracy": run.log[-1]["heldout_accuracy"], "ceiling": ceiling,
               "reward_model_accuracy": rlhf_log()["reward_model"]["heldout_accuracy"],
               **_judge(run.policy, sft, tokenizer, 200, progress)}
    report(f"DPO: held-out implicit-reward accuracy {figures['heldout_accuracy']:.1%} "
           f"(labeler ceiling {ceiling:.1%}); win rate against SFT {figures['win_rate']:.1%}, "
           f"KL {figures['kl']:.2f} nats per answer, ended {figures['ended']:.0%}")
    record = {"start": "the shipped SFT model (gptcourse/course_model/sft_model.pt)",
              "pairs": {"train": len(train_pairs), "heldout": len(heldout_pairs),
                        "file": "preference_pairs.jsonl.gz (lesson 09's)"},
              "settings": dataclasses.asdict(settings), "figures": figures, "log": run.log,
              "seconds": round(run.seconds, 1), **_machine()}
    (out / DPO_TRAINING_LOG.name).write_text(json.dumps(record, indent=1) + "\n",
                                             encoding="utf-8")
    return record


# --- grpo --------------------------------------------------------------------------------------

def heldout_questions() -> list:
    """The held-out story questions pass@1 is measured on: lesson 08's (seed 0)."""
    from gptcourse.data.tasks import story_questions

    return story_questions(HELDOUT_QUESTIONS, "heldout", seed=0)


def made_up_pet(task) -> bool:
    """Whether a story question asks for the name of a pet that has a made-up name (one of
    `stories.made_up_name`'s, not of ANIMAL_NAMES): a rare word, to be copied exactly."""
    from gptcourse.data.stories import ANIMAL_NAMES
    from gptcourse.preference_optimisation import question_fact

    return question_fact(task) == "pet" and task.answer not in ANIMAL_NAMES


def made_up_pet_questions() -> list:
    """The held-out questions for a made-up pet name GRPO is measured on (MADE_UP_PET_QUESTIONS
    of seed 5), the kind the SFT model misses."""
    return _split_by(made_up_pet, "heldout", 5, MADE_UP_PET_QUESTIONS, 0)[0]


def grpo_questions() -> list:
    """The training questions GRPO practises on: GRPO_QUESTIONS story questions of the
    training split (seed 1), a GRPO_FOCUS_SHARE of them asking for a made-up pet name, the
    rest of every other kind (so that practice on one kind does not cost the others)."""
    focus = round(GRPO_QUESTIONS * GRPO_FOCUS_SHARE)
    chosen, others = _split_by(made_up_pet, "train", 1, focus, GRPO_QUESTIONS - focus)
    return chosen + others


def _split_by(wanted, split: str, seed: int, n_wanted: int, n_others: int
              ) -> tuple[list, list]:
    """(the first n_wanted story questions of split (seed) for which wanted(task) holds, the
    first n_others for which it does not), drawn from one stream of questions."""
    from gptcourse.data.tasks import story_questions

    pool = story_questions(max(30 * n_wanted, 2 * n_others, 1000), split, seed=seed)
    chosen = [t for t in pool if wanted(t)][:n_wanted]
    others = [t for t in pool if not wanted(t)][:n_others]
    if len(chosen) < n_wanted or len(others) < n_others:
        raise ValueError(f"too few {split} questions: {len(chosen)} of {n_wanted} wanted, "
                         f"{len(others)} of {n_others} others")
    return chosen, others


def train_grpo_stage(out, settings: GRPOSettings = GRPO_RECIPE, *, report=print,
                     progress: bool = True) -> dict:
    """GRPO from the SFT model on story questions with the exact-answer reward; writes
    `out`/grpo_model.pt (only when the run finished) and its log; returns the log."""
    from gptcourse.checkpoint import save_model
    from gptcourse.preference_optimisation import (GRPORun, exact_answer_rewards, pass_at_1,
                                                   train_grpo)

    out = _fresh(out, GRPO_CHECKPOINT.name)
    sft, tokenizer = load_course_model("sft")
    heldout, made_up = heldout_questions(), made_up_pet_questions()
    before = pass_at_1(sft, tokenizer, heldout)
    before_made_up = pass_at_1(sft, tokenizer, made_up)
    report(f"GRPO on {GRPO_QUESTIONS} training questions ({GRPO_FOCUS_SHARE:.0%} for a made-up "
           f"pet name); the SFT model's pass@1 on {len(heldout)} held-out questions: "
           f"{before['all']:.0%}, on {len(made_up)} for a made-up pet name: "
           f"{before_made_up['all']:.0%}")
    run = GRPORun.start(sft, tokenizer, grpo_questions(), exact_answer_rewards, settings)
    train_grpo(run, progress=progress)
    save_model(out / GRPO_CHECKPOINT.name, run.policy, tokenizer, dtype=torch.float16)
    after = pass_at_1(run.policy, tokenizer, heldout)
    after_made_up = pass_at_1(run.policy, tokenizer, made_up)
    errors = (1 - before["all"], 1 - after["all"])
    figures = {"pass_at_1_before": before, "pass_at_1_after": after,
               "error_cut": 1 - errors[1] / errors[0] if errors[0] else None,
               "made_up_pet_before": before_made_up, "made_up_pet_after": after_made_up,
               "no_spread": sum(r["no_spread"] for r in run.log) / len(run.log),
               "kl": run.log[-1]["kl"], "answer_tokens": run.log[-1]["answer_tokens"]}
    report(f"GRPO: pass@1 {before['all']:.0%} -> {after['all']:.0%}; for a made-up pet name "
           f"{before_made_up['all']:.0%} -> {after_made_up['all']:.0%}; by fact: " + ", ".join(
               f"{fact} {before['by_fact'][fact][0]}->{after['by_fact'][fact][0]} of "
               f"{after['by_fact'][fact][1]}" for fact in after["by_fact"]))
    record = {"start": "the shipped SFT model (gptcourse/course_model/sft_model.pt)",
              "questions": {"n": GRPO_QUESTIONS, "focus": "made-up pet names",
                            "focus_share": GRPO_FOCUS_SHARE},
              "settings": dataclasses.asdict(settings),
              "figures": figures, "log": run.log, "seconds": round(run.seconds, 1),
              **_machine()}
    (out / GRPO_TRAINING_LOG.name).write_text(json.dumps(record, indent=1) + "\n",
                                              encoding="utf-8")
    return record


# --- compare -----------------------------------------------------------------------------------

def comparison_run(method: str, seed: int, threads: int | None = None,
                   judged: int | None = None) -> dict:
    """One cell of the comparison: `method` ("PPO", "DPO" or "GRPO") with COMPARISON's
    settings and `seed`, from the SFT model, judged against it on JUDGED_REQUESTS held-out
    requests (or `judged`). Returns its figures, its training seconds, the tokens it sampled
    while training, and its log (without samples)."""
    from gptcourse.course_model.rlhf import PPO_TASKS, load_reward_model
    from gptcourse.data.tasks import constraint_stories
    from gptcourse.ppo import PPORun, train_ppo
    from gptcourse.preference_optimisation import (DPORun, GRPORun, reward_model_rewards,
                                                   train_dpo, train_grpo)

    if method not in COMPARISON:
        raise ValueError(f"method must be one of {', '.join(COMPARISON)}, got {method!r}")
    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    settings = dataclasses.replace(COMPARISON[method], seed=seed)
    sft, tokenizer = load_course_model("sft")
    practice = constraint_stories(PPO_TASKS, "train", seed=1)
    if method == "DPO":
        run = train_dpo(DPORun.start(sft, tokenizer, *_pairs(), settings), progress=False)
        sampled = 0
    else:
        reward_model, _ = load_reward_model()
        if method == "PPO":
            run = train_ppo(PPORun.start(sft, reward_model, tokenizer, practice, settings),
                            progress=False)
        else:
            run = train_grpo(GRPORun.start(sft, tokenizer, practice,
                                           reward_model_rewards(reward_model), settings),
                             progress=False)
        answers = (settings.requests_per_batch * settings.answers_per_request
                   if method == "PPO" else settings.questions_per_batch
                   * settings.answers_per_question)  # per iteration
        sampled = sum(row["answer_tokens"] for row in run.log) * answers
    figures = _judge(run.policy, sft, tokenizer, 200, False, judged)
    return {"method": method, "seed": seed, **figures, "train_seconds": round(run.seconds, 1),
            "sampled_tokens": round(sampled),
            "log": [{k: v for k, v in row.items() if k != "sample"} for row in run.log]}


def _exit_with_parent() -> None:
    """In a worker process: end it as soon as the process that started it ends. A parent
    killed without the chance to shut its pool down (`kill`, a closed terminal) would
    otherwise leave its workers training for many minutes, on the cores its next run needs."""
    import multiprocessing
    import threading

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(1)

    threading.Thread(target=watch, name="exit with parent", daemon=True).start()


def compare(out, seeds=COMPARISON_SEEDS, *, workers: int | None = None, report=print,
            judged: int | None = None) -> dict:
    """Every method of COMPARISON with every seed (`comparison_run`), `workers` at a time in
    processes of their own (two on a machine with two cores or more, each on its own core;
    workers=1 runs them in this process; a worker ends when this process does);
    writes `out`/comparison.json and returns it: the runs and, per method, the mean and the
    spread (min, max) of win rate, KL and training seconds."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    import multiprocessing

    out = _fresh(out, COMPARISON_FILE.name)
    started = time.perf_counter()
    cores = os.cpu_count() or 1
    workers = workers or min(2, cores)
    threads = max(1, cores // workers)
    jobs = [(method, seed) for seed in seeds for method in COMPARISON]
    report(f"{len(jobs)} runs, {workers} at a time, {threads} torch thread(s) each")
    runs = []

    def done(row: dict) -> None:
        runs.append(row)
        report(f"{row['method']} seed {row['seed']}: win rate {row['win_rate']:.1%}, KL "
               f"{row['kl']:.2f}, {row['train_seconds']:.0f} s of training")

    if workers == 1:  # in this process, one after the other
        for method, seed in jobs:
            done(comparison_run(method, seed, None, judged))
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context,
                                 initializer=_exit_with_parent) as pool:
            for future in as_completed([pool.submit(comparison_run, method, seed, threads,
                                                    judged) for method, seed in jobs]):
                done(future.result())
    runs.sort(key=lambda r: (list(COMPARISON).index(r["method"]), r["seed"]))
    table = {}
    for method in COMPARISON:
        mine = [r for r in runs if r["method"] == method]
        table[method] = {key: {"mean": sum(r[key] for r in mine) / len(mine),
                               "min": min(r[key] for r in mine),
                               "max": max(r[key] for r in mine)}
                         for key in ("win_rate", "kl", "true_score", "ended", "train_seconds",
                                     "sampled_tokens")}
    record = {"start": "the shipped SFT model", "seeds": list(seeds),
              "settings": {m: dataclasses.asdict(s) for m, s in COMPARISON.items()},
              "judged_requests": judged or JUDGED_REQUESTS, "table": table, "runs": runs,
              "seconds": round(time.perf_counter() - started, 1), "workers": workers,
              **_machine(), "machine": f"{platform.machine()}, {workers} processes of "
                                       f"{threads} torch thread(s)"}
    (out / COMPARISON_FILE.name).write_text(json.dumps(record, indent=1) + "\n",
                                            encoding="utf-8")
    return record


# --- shipping ----------------------------------------------------------------------------------

SHIPPED = {"dpo": (DPO_CHECKPOINT, DPO_TRAINING_LOG), "grpo": (GRPO_CHECKPOINT, GRPO_TRAINING_LOG),
           "compare": (COMPARISON_FILE,)}


def ship(stage: str, out, command: str) -> list[Path]:
    """Copy a finished stage's files from `out` into the package, each atomically, with
    `command` recorded in its log (the last file). Returns the paths written."""
    from gptcourse.atomic import write_atomically

    out = Path(out)
    *files, log = SHIPPED[stage]
    for path in files:
        write_atomically(path, (out / path.name).read_bytes())
    record = json.loads((out / log.name).read_text(encoding="utf-8"))
    record["command"] = command
    write_atomically(log, json.dumps(record, indent=1) + "\n")
    return [*files, log]
