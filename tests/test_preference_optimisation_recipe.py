"""Lesson 10's recipes (`gptcourse train --stage dpo|grpo|compare`), end to end at a tiny size,
and the shipped models and comparison against what their logs say."""

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gptcourse.course_model import preference_optimisation as recipe


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    patch = pytest.MonkeyPatch()
    patch.setattr(recipe, "JUDGED_REQUESTS", 2)
    patch.setattr(recipe, "HELDOUT_QUESTIONS", 3)
    patch.setattr(recipe, "GRPO_QUESTIONS", 6)
    patch.setattr(recipe, "MADE_UP_PET_QUESTIONS", 2)
    pairs = recipe._pairs()
    patch.setattr(recipe, "_pairs", lambda: (pairs[0][:4], pairs[1][:2]))
    small = {"PPO": dataclasses.replace(recipe.COMPARISON["PPO"], iterations=1,
                                        requests_per_batch=1, answers_per_request=2,
                                        max_new_tokens=8),
             "DPO": dataclasses.replace(recipe.COMPARISON["DPO"], steps=1, batch_size=2),
             "GRPO": dataclasses.replace(recipe.COMPARISON["GRPO"], iterations=1,
                                         questions_per_batch=1, answers_per_question=2,
                                         max_new_tokens=8)}
    patch.setattr(recipe, "COMPARISON", small)
    out = tmp_path_factory.mktemp("lesson10")
    lines = []
    records = {
        "dpo": recipe.train_dpo_stage(out / "dpo", dataclasses.replace(
            recipe.DPO_RECIPE, steps=2, batch_size=2, eval_every=1), report=lines.append,
            progress=False),
        "grpo": recipe.train_grpo_stage(out / "grpo", dataclasses.replace(
            recipe.GRPO_RECIPE, iterations=1, questions_per_batch=2, answers_per_question=2,
            max_new_tokens=4), report=lines.append, progress=False),
        "compare": recipe.compare(out / "compare", seeds=(0, 1), workers=1, report=lines.append,
                                  judged=1)}
    patch.undo()  # before the tests of the shipped files, which read the real pairs
    return out, records, lines


def test_each_stage_writes_its_files_and_reports_its_figures(tiny):
    out, records, lines = tiny
    for stage, files in recipe.SHIPPED.items():
        for path in files:
            assert (out / stage / path.name).stat().st_size > 0
    dpo, grpo = records["dpo"]["figures"], records["grpo"]["figures"]
    assert 0 <= dpo["heldout_accuracy"] <= 1 and 0 <= dpo["win_rate"] <= 1
    assert [row["step"] for row in records["dpo"]["log"]] == [0, 1, 2]
    assert grpo["pass_at_1_before"]["questions"] == grpo["pass_at_1_after"]["questions"] == 3
    assert grpo["made_up_pet_before"]["questions"] == grpo["made_up_pet_after"]["questions"] == 2
    assert 0 <= grpo["no_spread"] <= 1
    assert any("implicit-reward accuracy" in line for line in lines)
    assert any("pass@1" in line for line in lines)


def test_grpo_practises_half_on_made_up_pet_names_and_is_measured_on_held_out_ones(monkeypatch):
    from gptcourse.data.stories import ANIMAL_NAMES
    from gptcourse.data.tasks import HELD_OUT_NAMES
    from gptcourse.preference_optimisation import question_fact

    monkeypatch.setattr(recipe, "GRPO_QUESTIONS", 40)
    questions = recipe.grpo_questions()
    assert len(questions) == 40 and len({t.prompt for t in questions}) == 40
    assert all(recipe.made_up_pet(t) for t in questions[:20])
    assert not any(recipe.made_up_pet(t) for t in questions[20:])
    assert len({question_fact(t) for t in questions[20:]}) == 7  # every kind, the pet's too
    held = recipe.made_up_pet_questions()
    assert len(held) == recipe.MADE_UP_PET_QUESTIONS
    assert all(question_fact(t) == "pet" and t.answer not in ANIMAL_NAMES
               and t.story.hero.name in HELD_OUT_NAMES for t in held)
    assert not {t.prompt for t in held} & {t.prompt for t in questions}


def test_the_comparison_runs_every_method_with_every_seed_and_tabulates_them(tiny):
    _, records, lines = tiny
    record = records["compare"]
    assert [(r["method"], r["seed"]) for r in record["runs"]] == [
        (m, s) for m in ("PPO", "DPO", "GRPO") for s in (0, 1)]
    for method, row in record["table"].items():
        wins = [r["win_rate"] for r in record["runs"] if r["method"] == method]
        assert row["win_rate"]["mean"] == pytest.approx(sum(wins) / 2)
        assert row["win_rate"]["min"] == min(wins) and row["win_rate"]["max"] == max(wins)
    assert record["table"]["DPO"]["sampled_tokens"]["max"] == 0
    assert record["table"]["PPO"]["sampled_tokens"]["min"] > 0
    assert sum("seed" in line for line in lines) == 6


def test_a_stage_refuses_a_folder_that_holds_its_run(tiny):
    out, _, _ = tiny
    with pytest.raises(ValueError, match="holds a run already"):
        recipe.train_dpo_stage(out / "dpo", progress=False)
    with pytest.raises(ValueError, match="holds a run already"):
        recipe.compare(out / "compare", workers=1)


def test_comparison_refuses_an_unknown_method():
    with pytest.raises(ValueError, match="method must be one of PPO, DPO, GRPO"):
        recipe.comparison_run("REINFORCE", 0)


_ORPHAN = """
import multiprocessing, os, sys, time
from concurrent.futures import ProcessPoolExecutor
from gptcourse.course_model.preference_optimisation import _exit_with_parent
if __name__ == "__main__":
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_exit_with_parent if sys.argv[1] == "1" else None)
    print(pool.submit(os.getpid).result(), flush=True)
    pool.submit(time.sleep, 60)
    time.sleep(0.5)
    os._exit(0)  # as a killed parent: no shutdown of the pool
"""


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie has ended, only not been reaped


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("watched", [True, False])
def test_a_comparison_worker_ends_with_the_process_that_started_it(tmp_path, watched):
    script = tmp_path / "orphan.py"
    script.write_text(_ORPHAN)
    printed = tmp_path / "worker"
    with printed.open("w") as stdout:  # not a pipe: the worker would hold it open
        subprocess.run([sys.executable, str(script), "1" if watched else "0"], stdout=stdout,
                       timeout=120, check=True)
    worker = int(printed.read_text().split()[0])
    try:
        deadline = time.monotonic() + 15
        while _running(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _running(worker) is not watched
    finally:
        if _running(worker):
            os.kill(worker, signal.SIGKILL)


def test_shipping_records_the_command_and_copies_atomically(tiny, tmp_path, monkeypatch):
    out, _, _ = tiny
    shipped = {"dpo": (tmp_path / "dpo_model.pt", tmp_path / "dpo_training_log.json")}
    monkeypatch.setattr(recipe, "SHIPPED", shipped)
    written = recipe.ship("dpo", out / "dpo", "gptcourse train --stage dpo --out x --ship")
    assert written == list(shipped["dpo"])
    log = json.loads(written[1].read_text())
    assert log["command"] == "gptcourse train --stage dpo --out x --ship"
    assert written[0].read_bytes() == (out / "dpo" / "dpo_model.pt").read_bytes()


# --- the shipped stage -------------------------------------------------------------------------

def test_the_shipped_models_load_offline():
    from gptcourse.course_model import load_course_model

    for stage in ("dpo", "grpo"):
        model, tokenizer = load_course_model(stage)
        assert model.config.vocab_size == tokenizer.vocab_size


def test_the_shipped_dpo_model_does_what_its_log_says_on_the_held_out_pairs():
    """Measured before the weights were stored in float16: the same within a pair or two."""
    from gptcourse.course_model import load_course_model
    from gptcourse.preference_optimisation import DPORun, evaluate_dpo

    log = recipe.training_log("dpo")
    sft, tokenizer = load_course_model("sft")
    dpo, _ = load_course_model("dpo")
    settings = recipe.DPOSettings(**log["settings"])
    train, heldout = recipe._pairs()
    assert len(heldout) == log["pairs"]["heldout"]
    run = DPORun.start(sft, tokenizer, train[:1], heldout, settings)
    run.policy.load_state_dict(dpo.state_dict())
    accuracy = evaluate_dpo(run)["heldout_accuracy"]
    assert abs(accuracy - log["figures"]["heldout_accuracy"]) <= 2 / len(heldout)


def test_the_shipped_grpo_model_answers_the_held_out_questions_as_its_log_says():
    from gptcourse.course_model import load_course_model
    from gptcourse.preference_optimisation import pass_at_1

    log = recipe.training_log("grpo")
    model, tokenizer = load_course_model("grpo")
    measured = pass_at_1(model, tokenizer, recipe.heldout_questions())
    assert abs(measured["all"] - log["figures"]["pass_at_1_after"]["all"]) <= 0.02
    made_up = pass_at_1(model, tokenizer, recipe.made_up_pet_questions())
    logged = log["figures"]["made_up_pet_after"]
    assert made_up["questions"] == logged["questions"]
    assert abs(made_up["all"] - logged["all"]) <= 2 / logged["questions"]


def test_the_shipped_comparison_holds_three_seeds_of_each_method():
    record = recipe.training_log("compare")
    assert set(record["table"]) == {"PPO", "DPO", "GRPO"}
    for method in ("PPO", "DPO", "GRPO"):
        seeds = [r["seed"] for r in record["runs"] if r["method"] == method]
        assert sorted(seeds) == [0, 1, 2]
    assert all(0 <= r["win_rate"] <= 1 and math.isfinite(r["kl"]) for r in record["runs"])
    assert record["seconds"] <= 30 * 60
