"""The RLHF stage's recipe (lesson 09): preference pairs, the reward model, and two PPO runs.

    gptcourse train --stage rlhf --out runs/rlhf --ship

starts from the shipped SFT model and, in the order of the lesson:

1. samples answers of the SFT model to constraint-story requests of the training split and
   of the held-out split, and lets the simulated labeler (`gptcourse.data.labeler`) choose
   between pairs of them (`preferences.make_preference_pairs`);
2. trains the reward model on the training pairs and measures its pairwise accuracy on the
   held-out pairs against the labeler's own agreement ceiling;
3. optimises the policy with PPO against the reward model, on the KL leash (PPO_RECIPE);
4. runs PPO again with beta = 0 (HACK_RECIPE): no leash, and pushed harder (a higher lr),
   the run in which reward hacking shows;
5. judges both policies against the SFT model by the labeler's true score on held-out
   requests (`ppo.compare_with_reference`).

It writes `reward_model.pt`, `rlhf_model.pt`, `rlhf_beta0_model.pt`, the pairs
(`preference_pairs.jsonl.gz`, lesson 10's DPO learns from the same ones) and
`rlhf_training_log.json` (the settings, every log row, samples and the figures).
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from pathlib import Path

import torch

from gptcourse.course_model import HERE, load_course_model
from gptcourse.ppo import PPOSettings

REWARD_CHECKPOINT = HERE / "reward_model.pt"
RLHF_CHECKPOINT = HERE / "rlhf_model.pt"
HACKED_CHECKPOINT = HERE / "rlhf_beta0_model.pt"
PAIRS_FILE = HERE / "preference_pairs.jsonl.gz"
RLHF_TRAINING_LOG = HERE / "rlhf_training_log.json"

PAIR_TASKS = (2400, 200)  # constraint-story requests (train, held-out) whose answers are paired
ANSWERS_PER_TASK = 4
# Training pairs compare every two of a request's answers (six pairs), held-out pairs are
# disjoint (two, independent): the accuracy is measured on independent comparisons.
PAIRING = {"train": "all", "heldout": "disjoint"}
ANSWER_TOKENS = 200  # the most tokens of an answer, in the pairs and in PPO's rollouts
# Of 16 pairs; the learning rate warms up to REWARD_LR and decays (`preferences`, where the
# earlier settings' figures are). With these: 78.8 % against a ceiling of 84.0 %, still short
# of the target of 3 points. It learned what makes a story kind and how it ends, hardly whether
# the story keeps the request's name, role and coloured thing (a regression of its rewards on
# the labeler's score parts).
REWARD_STEPS = 1000
REWARD_LR = 2e-4
PPO_TASKS = 400  # training requests PPO practises on (another seed than the pairs')
# beta 0.2: this reward model's scores spread twice as wide as those of the one before it,
# trained on a sixth as many pairs (a standard deviation of 2.05 against 1.07 on the held-out
# pairs' answers), so the same leash is twice as loose: at beta 0.1 the policy drifted 4.2
# nats per answer from the SFT model and won 68.5 %; at 0.2, 2.2 nats and 78.6 % in a trial,
# 2.25 nats and 73.3 % in the shipped run (the same settings: runs vary by a few points).
PPO_RECIPE = PPOSettings(iterations=60, requests_per_batch=4, answers_per_request=4, epochs=2,
                         minibatch=8, lr=3e-5, beta=0.2, clip=0.2,
                         max_new_tokens=ANSWER_TOKENS)
# No leash, pushed harder (a learning rate more than three times PPO_RECIPE's): against the
# shipped reward model its score climbs from 1.1 to 4.2 (means of 10 iterations) while the true
# score rises only to 2.3 and falls to 1.8 in the last iterations, the KL reaching 89 nats.
# That passes PPO_RECIPE's divergence bound of 60 nats, so the bound is raised for this run
# alone. From the two-cycle SFT model and the previous reward model it passed even 300 after
# 69 iterations: it stops at PPO_RECIPE's 60.
HACK_RECIPE = dataclasses.replace(PPO_RECIPE, beta=0.0, lr=1e-4, kl_bound=300.0)
JUDGED_REQUESTS = 100  # held-out requests the policies are judged on (seed 1)


def load_reward_model(*, device: str | None = "cpu"):
    """The shipped reward model (in eval mode) and its tokenizer: (RewardModel, Tokenizer)."""
    from gptcourse.checkpoint import load_extra, load_model
    from gptcourse.rlhf import RewardModel

    if not REWARD_CHECKPOINT.is_file():
        raise FileNotFoundError(f"the reward model is missing from the package "
                                f"({REWARD_CHECKPOINT}); reinstall gptcourse, or rebuild it "
                                f"with: gptcourse train --stage rlhf --out runs/rlhf --ship")
    body, tokenizer = load_model(REWARD_CHECKPOINT, device=device)
    reward_model = RewardModel(body)
    head = load_extra(REWARD_CHECKPOINT, "reward_head")
    reward_model.head.load_state_dict({k: v.float() for k, v in head.items()})
    return reward_model.to(body.wte.weight.device).eval(), tokenizer


def save_reward_model(path, reward_model, tokenizer) -> Path:
    """Write a reward model atomically: its body as a model file, its head beside it."""
    from gptcourse.checkpoint import save_model

    head = {k: v.detach().cpu() for k, v in reward_model.head.state_dict().items()}
    return save_model(path, reward_model.body, tokenizer, dtype=torch.float16,
                      extra={"reward_head": head})


def training_log() -> dict:
    """The shipped RLHF stage's log: settings, figures, and the rows of every run."""
    return json.loads(RLHF_TRAINING_LOG.read_text(encoding="utf-8"))


def train_rlhf(out, *, report=print, progress: bool = True) -> dict:
    """The recipe: writes into `out` (a new folder) the pairs, the reward model, the two
    policies and their logs; returns the record that `ship_rlhf` puts in the package. A
    diverging PPO run raises DivergedError and leaves what was written before it as it was."""
    from gptcourse.checkpoint import save_model
    from gptcourse.data.labeler import Labeler
    from gptcourse.data.tasks import constraint_stories
    from gptcourse.ppo import PPORun, compare_with_reference, train_ppo
    from gptcourse.preferences import (make_preference_pairs, pairwise_accuracy, save_pairs,
                                       train_reward_model)
    from gptcourse.rlhf import RewardModel

    out = Path(out)
    if (out / REWARD_CHECKPOINT.name).exists():
        raise ValueError(f"{out} holds an RLHF run already: choose another --out, or delete it")
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    sft, tokenizer = load_course_model("sft")
    labeler = Labeler(seed=0)
    n_train, n_heldout = PAIR_TASKS
    pairs = {split: make_preference_pairs(sft, tokenizer, constraint_stories(n, split),
                                          labeler, ANSWERS_PER_TASK, ANSWER_TOKENS, seed=i,
                                          pairing=PAIRING[split], progress=progress)
             for i, (split, n) in enumerate((("train", n_train), ("heldout", n_heldout)))}
    save_pairs(out / PAIRS_FILE.name, pairs["train"] + pairs["heldout"])
    ceiling = labeler.agreement_ceiling(pairs["heldout"])
    report(f"{len(pairs['train'])} training and {len(pairs['heldout'])} held-out pairs; the "
           f"labeler's agreement ceiling on the held-out ones: {ceiling:.1%}")

    torch.manual_seed(0)
    reward_model = RewardModel.from_policy(sft)
    reward_log = train_reward_model(reward_model, tokenizer, pairs["train"], pairs["heldout"],
                                    steps=REWARD_STEPS, lr=REWARD_LR, progress=progress)
    accuracy = pairwise_accuracy(reward_model, tokenizer, pairs["heldout"])
    save_reward_model(out / REWARD_CHECKPOINT.name, reward_model, tokenizer)
    report(f"reward model: held-out pairwise accuracy {accuracy:.1%} (ceiling {ceiling:.1%})")

    practice = constraint_stories(PPO_TASKS, "train", seed=1)
    judged = constraint_stories(JUDGED_REQUESTS, "heldout", seed=1)
    runs, figures = {}, {}
    for name, settings, path in (("rlhf", PPO_RECIPE, RLHF_CHECKPOINT),
                                 ("beta0", HACK_RECIPE, HACKED_CHECKPOINT)):
        run = PPORun.start(sft, reward_model, tokenizer, practice, settings)
        train_ppo(run, progress=progress)
        save_model(out / path.name, run.policy, tokenizer, dtype=torch.float16)
        figures[name] = compare_with_reference(run.policy, sft, tokenizer, judged, labeler,
                                               settings.max_new_tokens, progress=progress)
        first, last = run.log[0], run.log[-1]
        figures[name].update(first_score=first["score"], last_score=last["score"],
                             first_true_score=first["true_score"],
                             last_true_score=last["true_score"])
        runs[name] = {"settings": dataclasses.asdict(settings), "log": run.log,
                      "seconds": round(run.seconds, 1)}
        report(f"{name} (beta {settings.beta}): win rate against SFT "
               f"{figures[name]['win_rate']:.1%}, KL {figures[name]['kl']:.2f} nats per "
               f"answer, ended {figures[name]['ended']:.0%}, reward-model score "
               f"{first['score']:.2f} -> {last['score']:.2f}, true score "
               f"{first['true_score']:.2f} -> {last['true_score']:.2f}")
    record = {
        "start": "the shipped SFT model (gptcourse/course_model/sft_model.pt)",
        "pairs": {"train": len(pairs["train"]), "heldout": len(pairs["heldout"]),
                  "tasks": list(PAIR_TASKS), "answers_per_task": ANSWERS_PER_TASK,
                  "pairing": PAIRING,
                  "labeler_tau": labeler.tau},
        "reward_model": {"steps": REWARD_STEPS, "lr": REWARD_LR, "heldout_accuracy": accuracy,
                         "ceiling": ceiling, "log": reward_log},
        "judged_requests": JUDGED_REQUESTS,
        "figures": figures,
        "runs": runs,
        "seconds": round(time.perf_counter() - started, 1),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__,
        "written": time.strftime("%Y-%m-%d"),
    }
    (out / RLHF_TRAINING_LOG.name).write_text(json.dumps(record, indent=1) + "\n",
                                              encoding="utf-8")
    return record


def ship_rlhf(out, command: str) -> list[Path]:
    """Copy a finished recipe's files from `out` into the package (each atomically), with
    `command` recorded in the log. Returns the paths written."""
    from gptcourse.atomic import write_atomically

    out = Path(out)
    record = json.loads((out / RLHF_TRAINING_LOG.name).read_text(encoding="utf-8"))
    record["command"] = command
    written = []
    for path in (REWARD_CHECKPOINT, RLHF_CHECKPOINT, HACKED_CHECKPOINT, PAIRS_FILE):
        write_atomically(path, (out / path.name).read_bytes())
        written.append(path)
    write_atomically(RLHF_TRAINING_LOG, json.dumps(record, indent=1) + "\n")
    return [*written, RLHF_TRAINING_LOG]
