"""`gptcourse train`: a run stopped with Ctrl-C keeps its checkpoint and resumes to the end of
its schedule; bad combinations of options are refused before anything is trained."""

import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gptcourse.checkpoint import load_checkpoint
from gptcourse.cli import main
from gptcourse.data import generate_corpus

ROOT = Path(__file__).resolve().parents[1]


def gptcourse(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "gptcourse", "train", *map(str, args)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kwargs)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "stories.txt"
    path.write_text(generate_corpus(40_000, seed=3))
    return path


def test_ctrl_c_keeps_the_run_and_resume_finishes_its_schedule(tmp_path, text_file):
    out = tmp_path / "run"
    run = gptcourse("--out", out, "--steps", 16, "--text", text_file)
    checkpoint = out / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and time.monotonic() < deadline:  # saved at step 0
        time.sleep(0.2)
    time.sleep(0.5)
    run.send_signal(signal.SIGINT)
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 1, stdout + stderr
    assert "stopping after this step (Ctrl-C again to abort)" in stdout
    assert "continue with: gptcourse train" in stdout and "--resume" in stdout
    assert "train(" not in stdout + stderr  # the notebook's words have no place here
    assert f"saved the model: {checkpoint}" in stdout
    stopped = load_checkpoint(checkpoint)
    assert 0 < stopped.step < 16 and stopped.log[-1]["step"] == stopped.step

    resumed = gptcourse("--out", out, "--resume", "--text", text_file)
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stdout + stderr
    assert f"resuming {checkpoint} at step {stopped.step} of 16" in stdout
    finished = load_checkpoint(checkpoint)
    assert finished.step == 16 and finished.log[:len(stopped.log)] == stopped.log
    assert json.loads((out / "training_log.json").read_text())[-1]["step"] == 16
    assert f"saved the model: {checkpoint} (step 16)" in stdout


def test_ctrl_c_twice_aborts_with_one_line_and_keeps_the_last_checkpoint(tmp_path, text_file):
    out = tmp_path / "run"
    run = gptcourse("--out", out, "--steps", 400, "--text", text_file)
    checkpoint = out / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    # The second press must come after the first was heard: two signals that arrive while
    # one torch call runs reach Python as one. Both pipes are read meanwhile, so neither fills.
    heard = threading.Event()
    lines = {"out": [], "err": []}

    def read(stream, into):
        for line in stream:
            into.append(line)
            if "stopping after this step" in line:
                heard.set()

    readers = [threading.Thread(target=read, args=(run.stdout, lines["out"])),
               threading.Thread(target=read, args=(run.stderr, lines["err"]))]
    for reader in readers:
        reader.start()
    run.send_signal(signal.SIGINT)
    assert heard.wait(120), "the first Ctrl-C was never acknowledged"
    run.send_signal(signal.SIGINT)
    run.wait(timeout=120)
    for reader in readers:
        reader.join(timeout=30)
    stdout, stderr = "".join(lines["out"]), "".join(lines["err"])
    assert run.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr
    (line,) = [l for l in stderr.splitlines() if l.startswith("gptcourse train:")]
    kept = re.search(rf"aborted at step \d+ \(Ctrl-C twice\); {re.escape(str(checkpoint))} "
                     rf"\(step (\d+)\) is whole; continue it with: gptcourse train", line)
    assert kept, line
    assert load_checkpoint(checkpoint).step == int(kept.group(1))


@pytest.mark.parametrize("content, says", [
    ("a story. " * 166, "the validation split has only"),  # about 1,500 bytes
    ("\x00" * 5000, "NUL characters"),
])
def test_a_text_that_cannot_train_is_refused_before_any_tokenizer_is_trained(
        tmp_path, capsys, monkeypatch, content, says):
    from gptcourse.tokenizer import Tokenizer

    def never(*args, **kwargs):
        raise AssertionError("a tokenizer was trained on a text that cannot train a model")

    monkeypatch.setattr(Tokenizer, "train", never)
    text = tmp_path / "text.txt"
    text.write_text(content)
    assert main(["train", "--out", str(tmp_path / "run"), "--text", str(text)]) == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_an_empty_checkpoint_is_named_as_empty(tmp_path, capsys):
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    assert main(["train", "--out", str(tmp_path), "--resume"]) == 2
    assert "checkpoint.pt is empty (0 bytes)" in capsys.readouterr().err


@pytest.mark.parametrize("args, says", [
    (["--ship", "--text", "x.txt"], "leave out --text"),
    (["--resume", "--steps", "5"], "leave out --steps"),
])
def test_contradictory_options_are_refused(tmp_path, capsys, args, says):
    assert main(["train", "--out", str(tmp_path), *args]) == 2
    assert says in capsys.readouterr().err


def test_a_new_run_never_overwrites_an_existing_checkpoint(tmp_path, capsys):
    (tmp_path / "checkpoint.pt").write_bytes(b"a run worth keeping")
    assert main(["train", "--out", str(tmp_path), "--steps", "5"]) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert (tmp_path / "checkpoint.pt").read_bytes() == b"a run worth keeping"
