"""Lesson 09's recipe (`gptcourse train --stage rlhf`), end to end at a tiny size: every file
it promises, a reward model that loads back as it was saved, and a refusal to overwrite."""

import dataclasses

import pytest
import torch

from gptcourse.course_model import rlhf as recipe


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("rlhf")
    patch = pytest.MonkeyPatch()
    patch.setattr(recipe, "PAIR_TASKS", (3, 2))
    patch.setattr(recipe, "ANSWER_TOKENS", 24)
    patch.setattr(recipe, "REWARD_STEPS", 2)
    patch.setattr(recipe, "PPO_TASKS", 4)
    patch.setattr(recipe, "JUDGED_REQUESTS", 2)
    small = dataclasses.replace(recipe.PPO_RECIPE, iterations=2, requests_per_batch=1,
                                answers_per_request=2, epochs=1, max_new_tokens=24)
    patch.setattr(recipe, "PPO_RECIPE", small)
    patch.setattr(recipe, "HACK_RECIPE", dataclasses.replace(small, beta=0.0))
    lines = []
    record = recipe.train_rlhf(out, report=lines.append, progress=False)
    yield out, record, lines
    patch.undo()


def test_the_recipe_writes_every_file_and_reports_every_figure(tiny_run):
    out, record, lines = tiny_run
    for path in (recipe.REWARD_CHECKPOINT, recipe.RLHF_CHECKPOINT, recipe.HACKED_CHECKPOINT,
                 recipe.PAIRS_FILE, recipe.RLHF_TRAINING_LOG):
        assert (out / path.name).stat().st_size > 0
    assert set(record["figures"]) == {"rlhf", "beta0"}
    for figures in record["figures"].values():
        assert 0 <= figures["win_rate"] <= 1 and figures["requests"] == 2
    assert [len(r["log"]) for r in record["runs"].values()] == [2, 2]
    assert record["runs"]["beta0"]["settings"]["beta"] == 0.0
    assert any("agreement ceiling" in line for line in lines)
    assert any("win rate against SFT" in line for line in lines)


def test_training_requests_give_every_pair_of_answers_and_held_out_ones_disjoint_pairs(tiny_run):
    _, record, _ = tiny_run
    assert record["pairs"]["pairing"] == {"train": "all", "heldout": "disjoint"}
    # 3 training requests: up to 6 pairs each (more than disjoint pairs' 2); 2 held-out: 2 each
    assert 2 * 3 < record["pairs"]["train"] <= 6 * 3 and record["pairs"]["heldout"] <= 2 * 2


def test_the_saved_reward_model_scores_as_the_trained_one(tiny_run, monkeypatch):
    from gptcourse.checkpoint import load_extra

    out, _, _ = tiny_run
    monkeypatch.setattr(recipe, "REWARD_CHECKPOINT", out / recipe.REWARD_CHECKPOINT.name)
    reward_model, tokenizer = recipe.load_reward_model()
    head = load_extra(recipe.REWARD_CHECKPOINT, "reward_head")
    assert torch.equal(reward_model.head.weight, head["weight"].float())
    ids = torch.tensor([tokenizer.encode("Once upon a time")])
    assert reward_model(ids, torch.tensor([ids.shape[1]])).shape == (1,)


def test_the_recipe_refuses_a_folder_that_holds_a_run(tiny_run):
    out, _, _ = tiny_run
    with pytest.raises(ValueError, match="holds an RLHF run already"):
        recipe.train_rlhf(out, progress=False)


# --- the shipped stage -------------------------------------------------------------------------

def test_the_shipped_policies_and_reward_model_load_offline_in_about_a_second():
    import subprocess
    import sys

    code = ("import time; from gptcourse.course_model import load_course_model; "
            "from gptcourse.course_model.rlhf import load_reward_model; import torch; "
            "t = time.perf_counter(); load_course_model('rlhf'); load_course_model('rlhf_beta0'); "
            "load_reward_model(); print((time.perf_counter() - t) / 3)")
    seconds = float(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                   text=True, check=True).stdout)
    assert seconds < 10  # about one on an idle laptop; generous for a busy machine


def test_the_shipped_reward_model_does_what_its_log_says_on_the_held_out_pairs():
    """Measured before the weights were stored in float16: the same within a pair or two."""
    from gptcourse.preferences import load_pairs, pairwise_accuracy

    record = recipe.training_log()
    pairs = load_pairs(recipe.PAIRS_FILE)
    assert len(pairs) == record["pairs"]["train"] + record["pairs"]["heldout"]
    heldout = pairs[record["pairs"]["train"]:]
    reward_model, tokenizer = recipe.load_reward_model()
    measured = pairwise_accuracy(reward_model, tokenizer, heldout)
    assert abs(measured - record["reward_model"]["heldout_accuracy"]) <= 2.5 / len(heldout)
    # the recipe that made it: the CLI's own line, or that run with its shipping step by hand
    assert "gptcourse train --stage rlhf --out runs/" in record["command"]


def test_the_package_data_carries_the_rlhf_stage():
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["gptcourse.course_model"]
    for path in (recipe.REWARD_CHECKPOINT, recipe.RLHF_CHECKPOINT, recipe.HACKED_CHECKPOINT,
                 recipe.PAIRS_FILE, recipe.RLHF_TRAINING_LOG):
        assert path.name in patterns and path.is_file()
