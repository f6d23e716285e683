"""Checkpoints never lose work: atomic writes that survive a kill mid-save, resuming on the
same curve, clear errors for corrupt or mismatched files; and the shipped course model."""

import dataclasses
import subprocess
import sys
import textwrap

import pytest
import torch

from gptcourse.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from gptcourse.data import load_corpus
from gptcourse.model import GPTConfig
from gptcourse.pretraining import TrainingRun, TrainSettings, encode_text, train
from gptcourse.tokenizer import Tokenizer

TINY = dict(block_size=16, n_layer=1, n_head=2, n_embd=32)
SETTINGS = TrainSettings(steps=12, batch_size=4, warmup=2, eval_every=3, eval_batches=1,
                         sample_prompt="")


@pytest.fixture(scope="module")
def data():
    corpus = load_corpus(n_bytes=30_000)
    tokenizer = Tokenizer.train(corpus.train, 300)
    return tokenizer, encode_text(tokenizer, corpus.train), encode_text(tokenizer, corpus.val)


def new_run(tokenizer, settings=SETTINGS):
    return TrainingRun.start(tokenizer, settings,
                             GPTConfig(vocab_size=tokenizer.vocab_size, **TINY), device="cpu")


@pytest.fixture
def saved(tmp_path, data):
    """A checkpoint of a run trained for 3 steps."""
    tokenizer, train_ids, val_ids = data
    run = train(new_run(tokenizer), train_ids, val_ids, until=3, progress=False)
    return save_checkpoint(tmp_path / "run.pt", run), run


def same_weights(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(),
                                                   b.state_dict().values()))


# --- saving and loading ----------------------------------------------------------------------

def test_a_checkpoint_restores_everything_and_loads_with_weights_only(saved, data):
    path, run = saved
    loaded = load_checkpoint(path)
    assert same_weights(loaded.model, run.model)
    assert loaded.step == 3 and loaded.log == run.log and loaded.settings == run.settings
    assert loaded.tokenizer.merges == data[0].merges
    assert loaded.model.lm_head.weight is loaded.model.wte.weight  # still tied
    torch.load(path, weights_only=True)  # nothing in it needs unpickling code


def test_resuming_continues_the_same_curve(tmp_path, data):
    tokenizer, train_ids, val_ids = data
    straight = train(new_run(tokenizer), train_ids, val_ids, progress=False)
    first = train(new_run(tokenizer), train_ids, val_ids, until=6, progress=False)
    resumed = load_checkpoint(save_checkpoint(tmp_path / "half.pt", first))
    train(resumed, train_ids, val_ids, progress=False)
    assert [r["val_loss"] for r in resumed.log] == [r["val_loss"] for r in straight.log]
    assert same_weights(resumed.model, straight.model)


def test_a_write_that_fails_midway_leaves_the_previous_checkpoint_and_no_litter(saved,
                                                                                monkeypatch):
    path, run = saved
    before = path.read_bytes()

    def half_then_fail(obj, f):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", half_then_fail)
    run.step = 99
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, run)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    assert load_checkpoint(path).step == 3


def test_a_run_killed_while_saving_leaves_the_previous_checkpoint_loadable(saved):
    path, _ = saved
    # A second process loads the run, trains one more step, and is killed (SIGKILL: no
    # cleanup of any kind) halfway through writing the new checkpoint over the old one.
    script = textwrap.dedent(f"""
        import os, signal, torch
        from gptcourse.checkpoint import load_checkpoint, save_checkpoint
        run = load_checkpoint({str(path)!r})
        run.step += 1
        real_save = torch.save
        def save_then_die(obj, f):
            real_save(obj, f)
            f.flush()
            f.truncate(f.tell() // 2)  # half of it reached the disk
            os.kill(os.getpid(), signal.SIGKILL)
        torch.save = save_then_die
        save_checkpoint({str(path)!r}, run)
    """)
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert killed.returncode == -9, killed.stderr.decode()
    leftovers = [p for p in path.parent.iterdir() if p != path]
    assert leftovers and all(p.name.endswith(".tmp") for p in leftovers)  # the half-written one
    assert load_checkpoint(path).step == 3


# --- what loading refuses --------------------------------------------------------------------

def test_a_truncated_file_is_named_as_not_a_readable_checkpoint(saved):
    path, _ = saved
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)


def test_an_empty_file_is_named_as_empty(tmp_path):
    (tmp_path / "run.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"run.pt is empty \(0 bytes\)"):
        load_checkpoint(tmp_path / "run.pt")


def test_a_missing_file_and_a_foreign_file_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nothing.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="expected a 'gptcourse checkpoint 1' file"):
        load_checkpoint(tmp_path / "other.pt")


def test_weights_that_do_not_fit_the_config_are_named_before_any_model_is_built(saved):
    path, _ = saved
    content = torch.load(path, weights_only=True)
    content["config"]["n_embd"] = 64
    torch.save(content, path)
    with pytest.raises(CheckpointError, match=r"weight \S+ has shape \(\d+, 32\).*needs"):
        load_checkpoint(path)
    content["config"]["n_embd"] = 32
    content["config"]["n_layer"] = 2
    torch.save(content, path)
    with pytest.raises(CheckpointError, match="missing .*blocks.1"):
        load_checkpoint(path)


def test_a_tokenizer_larger_than_the_vocabulary_is_named(saved):
    path, _ = saved
    content = torch.load(path, weights_only=True)
    content["config"]["vocab_size"] = 100
    torch.save(content, path)
    with pytest.raises(CheckpointError, match="tokenizer has 300 tokens.*vocab_size is 100"):
        load_checkpoint(path)


def test_an_optimiser_state_of_another_model_is_named(saved, data):
    path, _ = saved
    content = torch.load(path, weights_only=True)
    other = new_run(data[0], dataclasses.replace(SETTINGS, weight_decay=0.0))
    other.optimizer.param_groups.pop()  # one group where two are expected
    content["optimizer"] = other.optimizer.state_dict()
    torch.save(content, path)
    with pytest.raises(CheckpointError, match="optimiser state does not fit"):
        load_checkpoint(path)


# --- the shipped course model ----------------------------------------------------------------

def test_the_course_model_loads_offline_in_a_second_or_two_and_writes_stories():
    code = textwrap.dedent("""
        import sys, time
        import gptcourse
        assert "torch" not in sys.modules, "import gptcourse must not import torch"
        start = time.perf_counter()
        from gptcourse import load_course_model
        model, tokenizer = load_course_model()
        print(time.perf_counter() - start)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) < 10  # about 2 s on an idle laptop; generous for a busy CI

    from gptcourse import load_course_model
    from gptcourse.course_model import course_data, training_log
    from gptcourse.pretraining import estimate_loss, sample_text

    model, tokenizer = load_course_model()
    assert not model.training and model.config == GPTConfig(vocab_size=tokenizer.vocab_size)
    _, _, val_ids = course_data(tokenizer=tokenizer)  # the held-out split of its recipe
    loss = estimate_loss(model, val_ids, batch_size=4, n_batches=2)
    assert abs(loss - training_log()["final_val_loss"]) < 0.1
    text = sample_text(model, tokenizer, "Once upon a time", 40)
    assert text.count(".") >= 2 and any(w in text for w in (" named ", " called ", " had a "))


def test_the_package_data_carries_the_course_model():
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["gptcourse.course_model"]
    assert "model.pt" in patterns and "training_log.json" in patterns


# --- a model without a run (PPO's policy, a reward model) ------------------------------------

def test_save_model_round_trips_the_model_and_its_extra_data_but_is_no_run(tmp_path, data):
    from gptcourse.checkpoint import load_extra, load_model, save_model

    tokenizer = data[0]
    model = new_run(tokenizer).model
    head = {"weight": torch.randn(1, 32), "bias": torch.zeros(1)}
    path = save_model(tmp_path / "policy.pt", model, tokenizer, extra={"reward_head": head})
    loaded, loaded_tokenizer = load_model(path)
    assert same_weights(loaded, model) and loaded_tokenizer.merges == tokenizer.merges
    assert torch.equal(load_extra(path, "reward_head")["weight"], head["weight"])
    with pytest.raises(CheckpointError, match="without a run to resume: read it with load_model"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="holds no 'value_head'"):
        load_extra(path, "value_head")
    with pytest.raises(ValueError, match="checkpoint's own keys"):
        save_model(tmp_path / "other.pt", model, tokenizer, extra={"model": 1})
    assert not (tmp_path / "other.pt").exists()
