"""The pretraining reference: batches, loss, schedule, optimiser, device and the training loop,
on a tiny GPT so that every test runs in about a second."""

import dataclasses
import math
import os
import signal

import pytest
import torch
import torch.nn.functional as F

from gptcourse.data import load_corpus
from gptcourse.model import GPTConfig
from gptcourse.pretraining import (LiveLossPlot, StopRequest, TrainingAborted, TrainingRun,
                                   TrainSettings, check_token_counts, check_training_text,
                                   cross_entropy, encode_text, get_batch, lr_at, make_optimizer,
                                   pick_device, time_left, train, training_bar)
from gptcourse.tokenizer import Tokenizer

TINY = dict(block_size=16, n_layer=1, n_head=2, n_embd=32)
SETTINGS = TrainSettings(steps=30, batch_size=8, max_lr=3e-3, min_lr=3e-4, warmup=5,
                         eval_every=10, eval_batches=2, sample_tokens=8)


@pytest.fixture(scope="module")
def data():
    corpus = load_corpus(n_bytes=60_000)
    tokenizer = Tokenizer.train(corpus.train, 300)
    return tokenizer, encode_text(tokenizer, corpus.train), encode_text(tokenizer, corpus.val)


def tiny_run(tokenizer, settings=SETTINGS) -> TrainingRun:
    return TrainingRun.start(tokenizer, settings,
                             GPTConfig(vocab_size=tokenizer.vocab_size, **TINY), device="cpu")


# --- batches ---------------------------------------------------------------------------------

def test_a_batch_holds_windows_of_the_stream_and_the_same_windows_shifted_by_one():
    data = torch.arange(100) * 3
    x, y = get_batch(data, 8, 5, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (5, 8) and x.dtype == torch.long
    starts = x[:, 0] // 3
    for row, s in zip(range(5), starts):
        assert torch.equal(x[row], data[s:s + 8]) and torch.equal(y[row], data[s + 1:s + 9])


def test_every_start_is_reachable_and_none_runs_past_the_end():
    data = torch.arange(12)
    x, y = get_batch(data, 8, 2000, torch.Generator().manual_seed(1))
    assert set(x[:, 0].tolist()) == {0, 1, 2, 3}  # start 3: its last target is data[11]
    assert int(y.max()) == 11


def test_the_same_seed_gives_the_same_batch():
    data = torch.arange(500)
    first = get_batch(data, 16, 4, torch.Generator().manual_seed(7))
    again = get_batch(data, 16, 4, torch.Generator().manual_seed(7))
    assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_a_stream_too_short_for_one_window_is_refused():
    with pytest.raises(ValueError, match="more than block_size"):
        get_batch(torch.arange(8), 8, 2)


# --- loss ------------------------------------------------------------------------------------

def test_cross_entropy_is_torchs_with_its_ignore_index():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=g) * 4
    targets = torch.randint(0, 11, (3, 5), generator=g)
    targets[0, :2] = -100
    expected = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
    assert torch.allclose(cross_entropy(logits, targets), expected, rtol=1e-6)
    targets[targets == -100] = 4
    expected = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=4)
    assert torch.allclose(cross_entropy(logits, targets, ignore_index=4), expected, rtol=1e-6)


def test_cross_entropy_of_uniform_scores_is_ln_v_and_large_scores_stay_finite():
    assert cross_entropy(torch.zeros(2, 3, 50), torch.zeros(2, 3, dtype=torch.long)).item() == \
        pytest.approx(math.log(50))
    logits = torch.tensor([[[1000.0, 0.0, -1000.0]]])
    assert cross_entropy(logits, torch.tensor([[2]])).item() == pytest.approx(2000.0)


# --- schedule --------------------------------------------------------------------------------

def test_the_schedule_warms_up_peaks_decays_to_the_floor_and_stays_there():
    lrs = [lr_at(s, 10, 100, 1e-3, 1e-4) for s in range(130)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert lrs[10] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[10:100], lrs[11:101]))
    assert lrs[100] == pytest.approx(1e-4) and set(lrs[100:]) == {1e-4}
    assert lr_at(0, 0, 50, 1e-3, 0.0) == pytest.approx(1e-3)  # no warm-up


# --- optimiser and device --------------------------------------------------------------------

def test_weight_decay_falls_on_matrices_only_and_every_parameter_is_optimised_once(data):
    model = tiny_run(data[0]).model
    decay, no_decay = make_optimizer(model, 1e-3, 0.1).param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"])
    assert all(p.dim() == 1 for p in no_decay["params"])
    ids = [id(p) for g in (decay, no_decay) for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    assert len(ids) == len(set(ids))  # the tied head is not counted twice


def test_the_cpu_is_chosen_without_a_gpu_and_mps_only_when_asked(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device() == torch.device("cpu")
    assert pick_device("mps") == torch.device("mps")
    with pytest.raises(ValueError, match="no CUDA"):
        pick_device("cuda")


# --- the loop --------------------------------------------------------------------------------

def test_training_lowers_the_loss_from_about_ln_v(data):
    tokenizer, train_ids, val_ids = data
    run = tiny_run(tokenizer)
    first = run.model(*[t for t in get_batch(train_ids, 16, 8, torch.Generator())])[1].item()
    assert abs(first - math.log(tokenizer.vocab_size)) < 0.3
    train(run, train_ids, val_ids, progress=False)
    assert run.step == 30 and [row["step"] for row in run.log] == [0, 10, 20, 30]
    assert run.log[0]["val_loss"] == pytest.approx(math.log(tokenizer.vocab_size), abs=0.3)
    assert run.log[-1]["val_loss"] < first - 1.0
    assert run.log[-1]["sample"].startswith(SETTINGS.sample_prompt)


def test_the_same_seed_trains_the_same_model(data):
    tokenizer, train_ids, val_ids = data
    settings = dataclasses.replace(SETTINGS, steps=10, sample_prompt="")
    a = train(tiny_run(tokenizer, settings), train_ids, val_ids, progress=False)
    b = train(tiny_run(tokenizer, settings), train_ids, val_ids, progress=False)
    assert [r["val_loss"] for r in a.log] == [r["val_loss"] for r in b.log]
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))


def test_the_stop_button_ends_the_loop_after_a_whole_step_and_saves(data, capsys):
    tokenizer, train_ids, val_ids = data
    run = tiny_run(tokenizer, dataclasses.replace(SETTINGS, sample_prompt=""))
    saved = []
    step = run.optimizer.step

    def step_then_interrupt(*args, **kwargs):
        result = step(*args, **kwargs)
        if len(run.optimizer.state) and run.step == 6:
            os.kill(os.getpid(), signal.SIGINT)  # what the kernel's stop button sends
        return result

    run.optimizer.step = step_then_interrupt
    train(run, train_ids, val_ids, progress=False, save=lambda r: saved.append(r.step))
    assert run.step == 7 and saved == [0, 7] and run.log[-1]["step"] == 7
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    heard, stopped = capsys.readouterr().out.splitlines()[-2:]
    assert heard == "stopping after this step (Ctrl-C again to abort)"
    # outside a notebook, no notebook words: the command line says how to continue
    assert stopped == "stopped at step 7 of 30; the model keeps what it learned"


def test_a_second_stop_aborts_at_once_with_one_line_and_no_traceback(data):
    tokenizer, train_ids, val_ids = data
    run = tiny_run(tokenizer, dataclasses.replace(SETTINGS, sample_prompt=""))
    saved = []
    step = run.optimizer.step

    def step_then_interrupt_twice(*args, **kwargs):
        if run.step == 4:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # pressed again before the step ends
        return step(*args, **kwargs)

    run.optimizer.step = step_then_interrupt_twice
    with pytest.raises(TrainingAborted) as aborted:
        train(run, train_ids, val_ids, progress=False, save=lambda r: saved.append(r.step))
    assert isinstance(aborted.value, KeyboardInterrupt)  # a notebook's "run all" stops too
    assert saved == [0] and run.step == 4
    (line,) = aborted.value._render_traceback_()  # what IPython shows instead of a traceback
    assert line.startswith("TrainingAborted: training aborted at step 4 by a second stop")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_first_stop_is_acknowledged_at_once_by_the_request():
    heard = []
    with StopRequest(on_request=lambda: heard.append("heard")) as stop:
        signal.raise_signal(signal.SIGINT)
        assert stop.requested and heard == ["heard"]  # before any step could end
        with pytest.raises(TrainingAborted):
            signal.raise_signal(signal.SIGINT)
    assert heard == ["heard"]


def test_a_time_budget_ends_the_run_saying_so(data, capsys):
    tokenizer, train_ids, val_ids = data
    run = tiny_run(tokenizer, dataclasses.replace(SETTINGS, steps=100_000, sample_prompt=""))
    train(run, train_ids, val_ids, progress=False, until=0)  # the first evaluation, unbudgeted
    saved = []
    train(run, train_ids, val_ids, progress=False, time_limit=1.5,
          save=lambda r: saved.append(r.step))
    assert 0 < run.step < 100_000 and saved[-1] == run.step == run.log[-1]["step"]
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == (f"time budget of 1.5 s reached at step {run.step} of 100000; the model "
                    f"keeps what it learned")


def test_the_time_left_is_whichever_ends_first_the_steps_or_the_budget():
    assert time_left(100, 0.5, budget_left=10.0) == 10.0
    assert time_left(10, 0.5, budget_left=100.0) == 5.0
    assert time_left(10, 0.5, budget_left=None) == 5.0
    assert time_left(10, None, budget_left=30.0) == 30.0
    assert time_left(10, None, budget_left=None) is None
    assert time_left(10, 0.5, budget_left=-3.0) == 0.0  # spent: nothing left, not negative


def test_the_bar_counts_down_the_budget_and_ends_calmly_in_a_notebook():
    import io
    import time

    from tqdm import tqdm as terminal_bar
    from tqdm.notebook import tqdm as notebook_bar

    bar = training_bar(terminal_bar)(total=1000, file=io.StringIO(), mininterval=0,
                                     budget_end=time.perf_counter() + 5)
    time.sleep(0.05)
    bar.update(1)  # at this pace the 999 steps left take ~50 s: the budget's 5 s come first
    assert bar.format_dict["left"] in ("00:04", "00:05")
    bar.close()
    for stop, style in (("end_calmly", ""), ("close", "danger")):
        bar = training_bar(notebook_bar)(total=10, budget_end=None)
        bar.update(3)
        getattr(bar, stop)(*(["time budget of 1 s reached"] if stop == "end_calmly" else []))
        assert bar.container.children[1].bar_style == style  # plain close: red, as tqdm does


def test_the_live_plot_has_fixed_axes_from_its_first_point(data):
    tokenizer, train_ids, val_ids = data
    run = tiny_run(tokenizer, dataclasses.replace(SETTINGS, sample_prompt=""))
    train(run, train_ids, val_ids, progress=False, until=0)  # the step-0 evaluation only
    assert len(run.log) == 1
    fig = LiveLossPlot().draw(run)
    ax = fig.axes[0]
    fig.canvas.draw()
    assert ax.get_xlim() == (0, SETTINGS.steps)
    low, high = ax.get_ylim()
    assert low == 0 and math.log(tokenizer.vocab_size) < high < 2 * math.log(tokenizer.vocab_size)
    assert ax.yaxis.get_major_formatter().get_offset() == ""  # no "+5.7" over the ticks
    assert ax.xaxis.get_major_formatter().get_offset() == ""


# --- what training checks before it starts ----------------------------------------------------

def test_text_too_short_or_binary_is_refused_before_a_tokenizer_is_trained():
    with pytest.raises(ValueError, match="validation split has only 150 bytes"):
        check_training_text("x" * 1350, "y" * 150, block_size=256)
    with pytest.raises(ValueError, match="NUL characters"):
        check_training_text("\x00" * 4500, "\x00" * 500, block_size=256)
    check_training_text("x" * 4500, "é" * 129, block_size=256)  # 258 bytes: it might do


def test_token_counts_of_both_splits_are_checked_before_training():
    with pytest.raises(ValueError, match="validation split is only 256 tokens long"):
        check_token_counts(torch.zeros(1000, dtype=torch.long), torch.zeros(256), 256)
    with pytest.raises(ValueError, match="training split is only 3 tokens"):
        check_token_counts(torch.zeros(3), torch.zeros(1000), 256)
    check_token_counts(torch.zeros(257), torch.zeros(257), 256)


def test_a_diverging_run_raises_before_saving(data):
    tokenizer, train_ids, val_ids = data
    run = tiny_run(tokenizer, dataclasses.replace(SETTINGS, sample_prompt=""))
    with torch.no_grad():
        run.model.wte.weight.fill_(float("nan"))
    saved = []
    with pytest.raises(FloatingPointError, match="diverged"):
        train(run, train_ids, val_ids, progress=False, save=lambda r: saved.append(r.step))
    assert saved == [] and run.step == 0


NOTEBOOK_RUN = """
import dataclasses
from gptcourse.data import load_corpus
from gptcourse.model import GPTConfig
from gptcourse.pretraining import LiveLossPlot, TrainingRun, TrainSettings, encode_text, train
from gptcourse.tokenizer import Tokenizer
corpus = load_corpus(n_bytes=60_000)
tokenizer = Tokenizer.train(corpus.train, 300)
run = TrainingRun.start(tokenizer, TrainSettings(steps=100_000, batch_size=8, warmup=5,
                                                 eval_every=20, eval_batches=2, sample_prompt=""),
                        GPTConfig(vocab_size=300, block_size=16, n_layer=1, n_head=2, n_embd=32),
                        device="cpu")
train(run, encode_text(tokenizer, corpus.train), encode_text(tokenizer, corpus.val),
      on_eval=LiveLossPlot().update, time_limit=5);
"""


def test_in_a_notebook_the_budget_is_named_and_the_saved_bar_shows_how_the_run_ended(tmp_path):
    import nbformat

    from gptcourse.execution import execute

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(NOTEBOOK_RUN)]
    run = execute(nb, tmp_path, timeout=300)
    assert not run.errors, run.errors
    outputs = nb.cells[0].outputs
    bars = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(bars) == 1  # the widget, whose saved text is its last state, not "0/100000"
    assert bars[0]["data"]["text/plain"].startswith("time budget of 5 s reached:")
    said = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "time budget of 5 s reached at step " in said
    assert said.rstrip().endswith("the model keeps what it learned, and train(...) again "
                                  "continues from here")
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 1  # one plot, redrawn
