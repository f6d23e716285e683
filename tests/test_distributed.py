"""Training under torchrun: two processes on the CPU (gloo) train one model, the one a single
process trains on the whole batch; only rank 0 writes, and its checkpoint loads anywhere."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gptcourse import distributed
from gptcourse.checkpoint import load_checkpoint
from gptcourse.data import generate_corpus
from gptcourse.pretraining import pick_device

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "distributed_worker.py"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
# Two processes add the gradient's terms in another order than one process does; over 4 AdamW
# steps that moves a weight by about 2e-6 (measured), against about 8e-3 that each weight
# moves at a learning rate of 2e-3.
TOLERANCE = 1e-4


def without_torchrun() -> dict:
    return {k: v for k, v in os.environ.items() if k not in (*distributed._RENDEZVOUS,
                                                             "LOCAL_RANK")}


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in command], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**without_torchrun(), "OMP_NUM_THREADS": "1"},
                          **kwargs)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process for 4 steps; two processes for 2 steps, then resumed by two new ones, and
    the same checkpoint of step 2 resumed by one process."""
    alone, together, then_alone = (tmp_path_factory.mktemp(name) for name in
                                   ("alone", "together", "then_alone"))
    run([sys.executable, WORKER, alone, 4, 4])
    run([*TORCHRUN, WORKER, together, 4, 2])
    shutil.copyfile(together / "checkpoint.pt", then_alone / "checkpoint.pt")
    run([*TORCHRUN, WORKER, together, 4, 4, "--resume"])
    run([sys.executable, WORKER, then_alone, 4, 4, "--resume"])
    load = lambda folder, name: torch.load(folder / f"{name}.pt", weights_only=False)  # noqa: E731
    return {"alone": load(alone, "rank0"), "folder": together,
            "then_alone": load(then_alone, "rank0-resumed"),
            **{name: load(together, name) for name in
               ("rank0", "rank1", "rank0-resumed", "rank1-resumed")}}


def test_the_replicas_stay_one_model(runs):
    for part in ("", "-resumed"):
        first, second = runs[f"rank0{part}"], runs[f"rank1{part}"]
        assert all(torch.equal(first["weights"][k], second["weights"][k])
                   for k in first["weights"])
        untimed = lambda log: [{k: v for k, v in row.items() if k != "seconds"}  # noqa: E731
                               for row in log]
        assert untimed(first["log"]) == untimed(second["log"])


def test_each_process_trains_on_its_own_half_of_every_batch(runs):
    halves = [runs["rank0"]["inputs"] + runs["rank0-resumed"]["inputs"],
              runs["rank1"]["inputs"] + runs["rank1-resumed"]["inputs"]]
    whole = runs["alone"]["inputs"]
    assert len(whole) == len(halves[0]) == len(halves[1]) == 4  # resumed on the same batches
    for step, (mine, theirs, batch) in enumerate(zip(*halves, whole)):
        assert mine.shape == (2, 16) and batch.shape == (4, 16)
        assert torch.equal(torch.cat([mine, theirs]), batch), f"step {step}"


def test_two_processes_give_the_one_process_result_on_the_whole_batch(runs):
    alone, together = runs["alone"]["weights"], runs["rank0-resumed"]["weights"]
    differences = [(alone[k] - together[k]).abs().max().item() for k in alone]
    assert max(differences) < TOLERANCE
    # a run of two processes resumes in one, on the same batches, to the same model
    then_alone = runs["then_alone"]
    assert torch.equal(torch.cat(then_alone["inputs"]), torch.cat(runs["alone"]["inputs"][2:]))
    assert max((alone[k] - then_alone["weights"][k]).abs().max().item() for k in alone) \
        < TOLERANCE
    assert [row["step"] for row in runs["alone"]["log"]] == [0, 2, 4]
    for one, two in zip(runs["alone"]["log"][1:], runs["rank0-resumed"]["log"][1:]):
        assert one["step"] == two["step"] and abs(one["batch_loss"] - two["batch_loss"]) < 1e-5


def test_only_rank_0_saves_one_checkpoint_that_loads_in_a_plain_process(runs):
    assert runs["rank0"]["saved_at"] == [0, 2] and runs["rank0-resumed"]["saved_at"] == [4]
    assert runs["rank1"]["saved_at"] == runs["rank1-resumed"]["saved_at"] == []
    assert sorted(p.name for p in runs["folder"].iterdir()) == [
        "checkpoint.pt", "rank0-resumed.pt", "rank0.pt", "rank1-resumed.pt", "rank1.pt"]
    saved = load_checkpoint(runs["folder"] / "checkpoint.pt")
    assert saved.step == 4
    weights = saved.model.state_dict()
    assert not any(name.startswith("module.") for name in weights)
    final = runs["rank0-resumed"]["weights"]
    assert all(torch.equal(weights[k], final[k]) for k in final)


def test_gptcourse_train_under_torchrun_writes_one_run(tmp_path):
    text = tmp_path / "stories.txt"
    text.write_text(generate_corpus(20_000, seed=3), encoding="utf-8")
    out = tmp_path / "run"
    done = run([*TORCHRUN, "-m", "gptcourse", "train", "--out", out, "--steps", 2,
                "--text", text])
    assert done.stdout.count("training ") == 1 and done.stdout.count("step 2:") == 1
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "training_log.json"]
    saved = load_checkpoint(out / "checkpoint.pt")
    assert saved.step == 2 and [row["step"] for row in saved.log] == [0, 2]


# --- without torchrun, or with a broken environment ----------------------------------------

def test_without_torchrun_training_is_one_process(monkeypatch):
    for name in (*distributed._RENDEZVOUS, "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.join(torch.device("cpu")) is None
    assert distributed.local_rank() is None
    assert pick_device("cpu") == torch.device("cpu")


def test_torchrun_with_one_process_is_one_process(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    assert distributed.join(torch.device("cpu")) is None


@pytest.mark.parametrize("env, says", [
    ({"WORLD_SIZE": "two"}, "not a number of processes"),
    ({"WORLD_SIZE": "2", "RANK": "0"}, "MASTER_ADDR, MASTER_PORT missing"),
])
def test_a_broken_launch_environment_says_what_is_missing(monkeypatch, env, says):
    for name in (*distributed._RENDEZVOUS, "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=says):
        distributed.join(torch.device("cpu"))


def test_a_batch_splits_into_equal_disjoint_slices():
    batch = torch.arange(12).reshape(6, 2)
    slices = [distributed.Replicas(rank, 3, torch.device("cpu")).own_rows(batch)
              for rank in range(3)]
    assert torch.equal(torch.cat(slices), batch) and all(s.shape == (2, 2) for s in slices)
    with pytest.raises(ValueError, match="multiple of 4"):
        distributed.Replicas(0, 4, torch.device("cpu")).check_batch_size(6)
