"""gptcourse.preferences: pairs from a model's own answers, their file format, the batch
layout the reward model reads, and a tiny reward model's training."""

import gzip
import json
import math
import re
from collections import Counter

import pytest
import torch

from gptcourse.data import generate_corpus
from gptcourse.data.labeler import Labeler
from gptcourse.data.stories import NAMES
from gptcourse.data.tasks import constraint_stories, story_questions
from gptcourse.finetuning import END, PAD, add_chat_tokens, chat_ids, encode_chat
from gptcourse.model import GPT, GPTConfig
from gptcourse.preferences import (HEAD_LR_SCALE, WARMUP, PreferencePair, answer_pairs,
                                   evaluate_pairs, load_pairs, make_preference_pairs,
                                   pair_batch, pairwise_accuracy, save_pairs,
                                   train_reward_model)
from gptcourse.pretraining import make_optimizer
from gptcourse.rlhf import RewardModel, bradley_terry_loss
from gptcourse.tokenizer import Tokenizer

WANTS = {"role": "girl", "hero": "Mia", "colour": "red", "thing": "kite"}
ASK = [{"role": "user", "content": "Tell me a story about Mia."}]


@pytest.fixture(scope="module")
def chat_model():
    """A tiny random chat model and its tokenizer (a context of 128 tokens)."""
    tokenizer = Tokenizer.train(generate_corpus(20_000, seed=5), 300)
    torch.manual_seed(0)
    return add_chat_tokens(GPT(GPTConfig(vocab_size=300, block_size=128, n_layer=1, n_head=2,
                                         n_embd=16)), tokenizer)


def _pair(chosen="In the end, Mia was very happy.", rejected="Mia went home alone and cried.",
          **more):
    return PreferencePair(ASK, dict(WANTS), chosen, rejected, 0.8, **more)


# --- the pairs -------------------------------------------------------------------------------

def test_every_two_answers_to_a_task_make_a_pair_and_the_labeler_draws(chat_model):
    model, tokenizer = chat_model
    tasks = constraint_stories(3, "train")
    pairs = make_preference_pairs(model, tokenizer, tasks, Labeler(0.5), answers_per_task=4,
                                  max_new_tokens=12, progress=False)
    assert len(pairs) == 6  # answers (0, 1) and (2, 3) of each task
    judge = Labeler(0.5)
    for i, pair in enumerate(pairs):
        task = tasks[i // 2]
        assert pair.messages == task.messages[:1] and pair.constraints == task.constraints
        assert pair.chosen != pair.rejected
        assert pair.p_chosen == pytest.approx(judge.probability(pair.chosen, pair.rejected,
                                                                task.constraints))
    for t in range(3):  # four different answers, each in exactly one of its task's pairs
        answers = Counter(a for p in pairs[2 * t:2 * t + 2] for a in (p.chosen, p.rejected))
        assert sorted(answers.values()) == [1, 1, 1, 1]
    again = make_preference_pairs(model, tokenizer, tasks, Labeler(0.5), answers_per_task=4,
                                  max_new_tokens=12, progress=False)
    assert again == pairs  # seeded: the same answers and the same draws


def test_all_pairing_compares_every_two_answers_with_a_draw_each(chat_model):
    model, tokenizer = chat_model
    tasks = constraint_stories(3, "train")
    pairs = make_preference_pairs(model, tokenizer, tasks, Labeler(0.5), answers_per_task=4,
                                  max_new_tokens=12, pairing="all", progress=False)
    disjoint = make_preference_pairs(model, tokenizer, tasks, Labeler(0.5), answers_per_task=4,
                                     max_new_tokens=12, progress=False)
    assert len(pairs) == 18  # six pairs of four answers, for each task
    judge = Labeler(0.5)
    for t, task in enumerate(tasks):
        own = pairs[6 * t:6 * t + 6]
        assert all(p.messages == task.messages[:1] for p in own)
        answers = Counter(a for p in own for a in (p.chosen, p.rejected))
        assert sorted(answers.values()) == [3, 3, 3, 3]  # each answer against the three others
        # the same four answers as the disjoint pairing samples (one generator, same seed)
        assert set(answers) == {a for p in disjoint[2 * t:2 * t + 2]
                                for a in (p.chosen, p.rejected)}
        for pair in own:
            assert pair.p_chosen == pytest.approx(judge.probability(pair.chosen, pair.rejected,
                                                                    task.constraints))


def test_answer_pairs_say_which_answers_are_compared():
    assert answer_pairs(5, "disjoint") == [(0, 1), (2, 3)]
    assert answer_pairs(4, "all") == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    assert answer_pairs(2, "all") == answer_pairs(2, "disjoint") == [(0, 1)]
    with pytest.raises(ValueError, match="pairing must be one of 'disjoint', 'all'"):
        answer_pairs(4, "every")


class Unsure(Labeler):
    """A labeler that prefers the first answer of every pair with probability 0.3."""

    def probability(self, a, b, constraints):
        return 0.3


def test_the_choice_is_a_draw_not_the_likelier_answer(chat_model):
    """p_chosen is 0.3 where the draw chose the first answer and 0.7 where it chose the
    second: the argmax would always give 0.7."""
    model, tokenizer = chat_model
    pairs = make_preference_pairs(model, tokenizer, constraint_stories(40, "train"), Unsure(),
                                  answers_per_task=2, max_new_tokens=4, progress=False)
    assert len(pairs) == 40 and {pair.p_chosen for pair in pairs} == {0.3, 0.7}
    assert 4 <= sum(pair.p_chosen == 0.3 for pair in pairs) <= 22  # 12 expected


def test_identical_answers_make_no_pair(chat_model):
    model, tokenizer = chat_model
    with torch.no_grad():  # a model that says the same whatever it is asked
        silent = GPT(model.config)
        silent.load_state_dict(model.state_dict())
        silent.ln_f.weight.zero_()
        silent.ln_f.bias.zero_()
        silent.ln_f.bias[0] = 1e4
    pairs = make_preference_pairs(silent, tokenizer, constraint_stories(2, "train"),
                                  Labeler(), max_new_tokens=5, progress=False)
    assert pairs == []


@pytest.mark.parametrize("tasks, settings, says", [
    ("stories", {"answers_per_task": 1}, "answers_per_task must be a whole number >= 2"),
    ("questions", {}, "need constraint-story tasks"),
])
def test_bad_pair_requests_are_refused(chat_model, tasks, settings, says):
    model, tokenizer = chat_model
    chosen = constraint_stories(1) if tasks == "stories" else story_questions(1)
    with pytest.raises(ValueError, match=re.escape(says)):
        make_preference_pairs(model, tokenizer, chosen, Labeler(), progress=False, **settings)


def test_pairs_survive_a_round_trip_through_their_file(tmp_path):
    pairs = [_pair(), _pair("a", "b <|end|> ü", chosen_ended=False),
             PreferencePair(ASK, dict(WANTS), "x", "y", 0.25, True, False)]
    path = save_pairs(tmp_path / "pairs.jsonl.gz", pairs)
    assert load_pairs(path) == pairs
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    assert len(lines) == 3 and json.loads(lines[1])["rejected"] == "b <|end|> ü"
    assert path.read_bytes()[4:8] == bytes(4)  # no time stamp: the same pairs, the same bytes
    assert load_pairs(save_pairs(tmp_path / "none.jsonl.gz", [])) == []


@pytest.mark.parametrize("content, says", [
    (b"not gzip at all", "is not a file of preference pairs"),
    (gzip.compress(b'{"chosen": "a"'), "line 1: not JSON"),
    (gzip.compress(b'{"chosen": "a"}\n'), "line 1: expected a pair with the keys"),
    (None, "line 2: p_chosen of the wrong type"),
])
def test_a_malformed_pairs_file_is_refused_with_its_line(tmp_path, content, says):
    path = tmp_path / "pairs.jsonl.gz"
    if content is None:
        good = json.dumps(vars(_pair()))
        bad = good.replace("0.8", '"high"')
        content = gzip.compress(f"{good}\n{bad}\n".encode())
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(says)):
        load_pairs(path)


# --- a batch ---------------------------------------------------------------------------------

def test_a_batch_holds_the_chosen_rows_then_the_rejected_ones(chat_model):
    _, tokenizer = chat_model
    ids = chat_ids(tokenizer)
    prompt = encode_chat(tokenizer, ASK, add_generation_prompt=True)
    pairs = [_pair(), _pair("Mia smiled.", "The end of a story that ran out of room",
                            rejected_ended=False)]
    batch, lengths = pair_batch(tokenizer, pairs)
    rows = [prompt + tokenizer.encode_ordinary(" " + a) + [ids[END]]
            for a in ("In the end, Mia was very happy.", "Mia smiled.",
                      "Mia went home alone and cried.")]
    rows.insert(3, prompt + tokenizer.encode_ordinary(
        " The end of a story that ran out of room"))  # did not end: no end marker
    assert batch.shape == (4, max(map(len, rows))) and batch.dtype == torch.long
    assert lengths.tolist() == [len(row) for row in rows]
    for b, row in enumerate(rows):
        assert batch[b, :len(row)].tolist() == row
        assert (batch[b, len(row):] == ids[PAD]).all()


def test_a_batch_fits_the_context_by_cutting_only_answers_that_did_not_end(chat_model):
    _, tokenizer = chat_model
    long = "Mia ran and ran. " * 30
    batch, lengths = pair_batch(tokenizer, [_pair(rejected=long, rejected_ended=False)], 64)
    assert batch.shape[1] == 64 and lengths[1] == 64
    with pytest.raises(ValueError, match="more than the context of block_size=64"):
        pair_batch(tokenizer, [_pair(chosen=long)], 64)
    with pytest.raises(ValueError, match="at least one pair"):
        pair_batch(tokenizer, [])


# --- the reward model ------------------------------------------------------------------------

def _happy_and_sad_pairs(names):
    return [_pair(f"In the end, {name} was very happy.", f"{name} went home alone and cried.")
            for name in names]


def test_a_reward_model_learns_the_preference_and_its_loss_falls_from_ln_2(chat_model):
    model, tokenizer = chat_model
    names = NAMES["male"] + NAMES["female"]
    train, heldout = _happy_and_sad_pairs(names[:14]), _happy_and_sad_pairs(names[14:])
    reward_model = RewardModel.from_policy(model)
    log = train_reward_model(reward_model, tokenizer, train, heldout, steps=30, batch_size=8,
                             lr=3e-3, eval_every=10, progress=False)
    assert [row["step"] for row in log] == [0, 10, 20, 30]
    assert log[0]["loss"] is None
    assert log[0]["heldout_loss"] == pytest.approx(math.log(2))  # a zero head: coin tosses
    assert log[0]["heldout_accuracy"] == 0.5  # every reward tied
    assert log[1]["loss"] < math.log(2) and log[-1]["loss"] < 0.3
    assert log[-1]["heldout_loss"] < 0.3 and log[-1]["heldout_accuracy"] == 1.0
    assert pairwise_accuracy(reward_model, tokenizer, heldout) == 1.0
    flipped = [_pair(p.rejected, p.chosen) for p in heldout]
    assert pairwise_accuracy(reward_model, tokenizer, flipped) == 0.0
    assert all(row["seconds"] >= 0 for row in log)


def test_a_reward_model_trains_on_the_loss_it_is_given_and_measures_with_the_courses(chat_model):
    """Lesson 09's live run passes the learner's Bradley-Terry loss: a sign-flipped one must
    teach the opposite preference, and the held-out figures must still be the course's."""
    model, tokenizer = chat_model
    names = NAMES["male"] + NAMES["female"]
    train, heldout = _happy_and_sad_pairs(names[:14]), _happy_and_sad_pairs(names[14:])
    calls = []

    def flipped(r_chosen, r_rejected):
        calls.append(len(r_chosen))
        return bradley_terry_loss(r_rejected, r_chosen)

    log = train_reward_model(RewardModel.from_policy(model), tokenizer, train, heldout,
                             steps=30, batch_size=8, lr=3e-3, eval_every=10, progress=False,
                             bradley_terry_loss=flipped)
    assert calls == [8] * 30
    assert log[-1]["heldout_accuracy"] == 0.0 and log[-1]["heldout_loss"] > math.log(2)

def test_the_first_training_batch_costs_exactly_ln_2(chat_model):
    model, tokenizer = chat_model
    pairs = _happy_and_sad_pairs(NAMES["female"])
    log = train_reward_model(RewardModel.from_policy(model), tokenizer, pairs, pairs, steps=1,
                             batch_size=4, lr=1e-3, progress=False)
    assert log[1]["loss"] == pytest.approx(math.log(2))


def test_the_learning_rate_warms_up_decays_and_is_faster_for_the_new_head(chat_model,
                                                                          monkeypatch):
    import gptcourse.preferences as preferences_module
    from gptcourse.pretraining import lr_at

    model, tokenizer = chat_model
    reward_model = RewardModel.from_policy(model)
    seen = []  # the learning rate of each group at each step

    def make_recording_optimizer(*args, **kwargs):
        optimizer = make_optimizer(*args, **kwargs)
        step = optimizer.step

        def recorded_step(*a, **k):
            seen.append([(group["lr"], group["params"]) for group in optimizer.param_groups])
            return step(*a, **k)

        optimizer.step = recorded_step
        return optimizer

    monkeypatch.setattr(preferences_module, "make_optimizer", make_recording_optimizer)
    pairs = _happy_and_sad_pairs(NAMES["female"][:4])
    train_reward_model(reward_model, tokenizer, pairs, pairs, steps=40, batch_size=2, lr=1e-3,
                       progress=False)
    assert len(seen) == 40
    warmup = min(WARMUP, 40 // 10)
    head = {id(reward_model.head.weight), id(reward_model.head.bias)}
    for step, groups in enumerate(seen):
        expected = lr_at(step, warmup, 40, 1e-3, 0.0)
        for lr, params in groups:
            scale = HEAD_LR_SCALE if {id(p) for p in params} <= head else 1.0
            assert lr == pytest.approx(expected * scale)
    assert seen[0][0][0] < seen[warmup][0][0] > seen[-1][0][0] > 0  # up, then down, not to 0
    scaled = [p for lr, params in seen[0] for p in params if lr > seen[0][0][0]]
    assert {id(p) for p in scaled} == head  # every head parameter, and nothing else, faster


def test_a_diverging_reward_model_stops_with_a_floating_point_error(chat_model):
    model, tokenizer = chat_model
    reward_model = RewardModel.from_policy(model)
    with torch.no_grad():
        reward_model.head.bias.fill_(float("nan"))
    pairs = _happy_and_sad_pairs(NAMES["male"][:4])
    with pytest.raises(FloatingPointError, match="at step 1"):
        train_reward_model(reward_model, tokenizer, pairs, pairs, steps=2, batch_size=2,
                           progress=False)


def test_evaluation_leaves_the_mode_and_bad_settings_are_refused(chat_model):
    model, tokenizer = chat_model
    reward_model = RewardModel.from_policy(model).train()
    pairs = _happy_and_sad_pairs(NAMES["male"][:3])
    assert evaluate_pairs(reward_model, tokenizer, pairs) == (pytest.approx(math.log(2)), 0.5)
    assert reward_model.training
    for settings, says in (({"steps": 0}, "steps must be"), ({"batch_size": 0}, "batch_size"),
                           ({"eval_every": 0}, "eval_every")):
        with pytest.raises(ValueError, match=says):
            train_reward_model(reward_model, tokenizer, pairs, pairs, progress=False,
                               **settings)
    with pytest.raises(ValueError, match="need training and held-out pairs"):
        train_reward_model(reward_model, tokenizer, pairs, [], progress=False)
