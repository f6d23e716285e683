"""Lesson 10's runs: DPO on preference pairs and GRPO on a verifiable reward, at a tiny size.
Each starts at what the theory says (DPO's loss ln 2, its implicit rewards 0), learns what its
data rewards, leaves the model it started from and the reference alone, and refuses nonsense."""

import dataclasses
import math

import pytest
import torch

from gptcourse import preference_optimisation as po
from gptcourse.ppo import DivergedError
from gptcourse.preferences import PreferencePair


@pytest.fixture(scope="module")
def tiny():
    from gptcourse.data import generate_corpus
    from gptcourse.finetuning import add_chat_tokens
    from gptcourse.model import GPT, GPTConfig
    from gptcourse.tokenizer import Tokenizer

    tokenizer = Tokenizer.train(generate_corpus(20_000, seed=5), 300)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=300, block_size=96, n_layer=1, n_head=2, n_embd=16))
    return add_chat_tokens(model, tokenizer)


def _pairs(n, chosen="The cat was happy.", rejected="The cat was sad."):
    return [PreferencePair([{"role": "user", "content": f"Tell me about cat {i}."}], {},
                           chosen, rejected, 0.9) for i in range(n)]


# --- DPO ---------------------------------------------------------------------------------------

def test_pair_logprobs_sum_the_answers_tokens_and_their_end_marker_only(tiny):
    from gptcourse.finetuning import END, chat_ids, encode_chat

    model, tokenizer = tiny
    pair = _pairs(1)[0]
    chosen, rejected = po.pair_logprobs(model, tokenizer, [pair])
    prompt = encode_chat(tokenizer, pair.messages, add_generation_prompt=True)
    for answer, got in ((pair.chosen, chosen), (pair.rejected, rejected)):
        ids = prompt + tokenizer.encode_ordinary(" " + answer) + [chat_ids(tokenizer)[END]]
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids]))[0][0], dim=-1)
        expected = sum(logp[t - 1, ids[t]] for t in range(len(prompt), len(ids)))
        assert torch.allclose(got, expected.reshape(1), atol=1e-5)


def test_a_dpo_run_starts_at_ln2_and_learns_the_pairs_preference(tiny):
    model, tokenizer = tiny
    before = [p.clone() for p in model.parameters()]
    settings = po.DPOSettings(steps=30, batch_size=4, lr=3e-3, beta=0.5, eval_every=10)
    run = po.DPORun.start(model, tokenizer, _pairs(8), _pairs(4), settings)
    first = run.log[0]
    assert first["heldout_loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert first["heldout_accuracy"] == 0.5  # all ties: each counts half
    assert first["chosen_reward"] == first["rejected_reward"] == 0
    po.train_dpo(run, progress=False)
    last = run.log[-1]
    assert [row["step"] for row in run.log] == [0, 10, 20, 30]
    assert last["heldout_loss"] < 0.5 and last["heldout_accuracy"] == 1.0
    assert last["chosen_reward"] > last["rejected_reward"]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(before, run.reference.parameters()))
    assert not any(p.requires_grad for p in run.reference.parameters())


def test_a_dpo_run_trains_on_the_loss_it_is_given_and_measures_with_the_courses(tiny):
    """Lesson 10's live run passes the learner's dpo_loss: a sign-flipped one must steer the
    policy the wrong way, and the held-out figures must still be the course's."""
    model, tokenizer = tiny
    settings = po.DPOSettings(steps=30, batch_size=4, lr=3e-3, beta=0.5, eval_every=10)
    calls = []

    def flipped(chosen, rejected, ref_chosen, ref_rejected, beta):
        calls.append(len(chosen))
        return po.dpo_loss(rejected, chosen, ref_rejected, ref_chosen, beta)

    run = po.train_dpo(po.DPORun.start(model, tokenizer, _pairs(8), _pairs(4), settings,
                                       dpo_loss=flipped), progress=False)
    assert calls == [4] * 30
    assert run.log[-1]["heldout_accuracy"] == 0.0 and run.log[-1]["heldout_loss"] > math.log(2)


def test_a_dpo_run_stops_at_its_time_limit_and_calls_back_after_each_step(tiny):
    model, tokenizer = tiny
    run = po.DPORun.start(model, tokenizer, _pairs(4), _pairs(2),
                          po.DPOSettings(steps=1000, batch_size=2, eval_every=5))
    po.train_dpo(run, progress=False, time_limit=0.0)
    assert run.step == 0 and len(run.log) == 1
    seen = []
    run = po.DPORun.start(model, tokenizer, _pairs(4), _pairs(2),
                          po.DPOSettings(steps=3, batch_size=2, eval_every=5))
    po.train_dpo(run, progress=False, on_step=lambda r: seen.append(r.step))
    assert seen == [1, 2, 3] and [row["step"] for row in run.log] == [0, 3]


def test_a_diverging_dpo_run_raises_before_save_sees_it(tiny):
    model, tokenizer = tiny
    run = po.DPORun.start(model, tokenizer, _pairs(4), _pairs(2),
                          po.DPOSettings(steps=5, batch_size=2, eval_every=1),
                          dpo_loss=lambda *args: torch.tensor(float("nan"), requires_grad=True))
    saved = []
    with pytest.raises(DivergedError, match="the DPO loss is nan"):
        po.train_dpo(run, progress=False, save=saved.append)
    assert saved == [] and run.step == 0


@pytest.mark.parametrize("change, message", [
    ({"beta": 0.0}, "beta must be > 0"), ({"beta": -1.0}, "beta must be > 0"),
    ({"steps": 0}, "steps must be a whole number >= 1"), ({"lr": 0.0}, "must be > 0")])
def test_dpo_settings_refuse_what_makes_no_sense(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(po.DPOSettings(), **change)


def test_a_dpo_run_needs_pairs(tiny):
    with pytest.raises(ValueError, match="training and held-out pairs"):
        po.DPORun.start(*tiny, [], _pairs(2))


# --- GRPO --------------------------------------------------------------------------------------

def _questions(n):
    """Short questions that fit the tiny model's context (a story question does not)."""
    from gptcourse.data.tasks import Task

    names = ["Tom", "Mia", "Sam", "Ada", "Leo", "Eva"]
    return [Task("question", f"Who is {names[i % 6]}?", names[i % 6]) for i in range(n)]


def test_exact_answer_rewards_give_one_for_the_exact_answer_only():
    from gptcourse.rollouts import Rollout

    from gptcourse.data.tasks import story_questions

    task = story_questions(1)[0]
    texts = [task.answer, task.answer + ".", task.answer.upper(), "no"]
    rollout = Rollout(torch.zeros(4, 2, dtype=torch.long), torch.zeros(4, 2),
                      torch.ones(4, dtype=torch.long), texts, torch.ones(4, dtype=torch.bool))
    assert po.exact_answer_rewards(task, rollout).tolist() == [1.0, 0.0, 0.0, 0.0]


def test_exact_answer_rewards_refuse_a_story_request():
    from gptcourse.data.tasks import constraint_stories

    with pytest.raises(ValueError, match="story questions"):
        po.exact_answer_rewards(constraint_stories(1)[0], None)


def test_grpo_loss_is_ppos_plus_beta_times_the_mean_k3():
    from gptcourse.rlhf import ppo_clip_loss

    g = torch.Generator().manual_seed(0)
    logp, old, ref = (-torch.rand(3, 5, generator=g) for _ in range(3))
    advantages = torch.randn(3, 5, generator=g)
    mask = torch.tensor([[0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 1, 0, 0, 0]])
    plain = ppo_clip_loss(logp, old, advantages, mask, 0.2)
    assert torch.equal(po.grpo_loss(logp, old, ref, advantages, mask, 0.2, 0.0), plain)
    k3 = (po.kl_k3(logp, ref) * mask).sum() / mask.sum()
    assert torch.allclose(po.grpo_loss(logp, old, ref, advantages, mask, 0.2, 0.5),
                          plain + 0.5 * k3)


def test_a_grpo_run_learns_its_reward_and_skips_groups_that_teach_nothing(tiny):
    model, tokenizer = tiny
    token = tokenizer.encode_ordinary(" the")[0]

    def likes_the(task, rollout):  # how often " the" appears: a reward with spread
        return ((rollout.ids == token) * rollout.mask).sum(dim=1).float()

    settings = po.GRPOSettings(iterations=16, questions_per_batch=2, answers_per_question=8,
                               epochs=2, minibatch=8, lr=1e-2, beta=0.0, max_new_tokens=24)
    before = [p.clone() for p in model.parameters()]
    tasks = _questions(4)
    run = po.train_grpo(po.GRPORun.start(model, tokenizer, tasks, likes_the, settings),
                        progress=False)
    first, last = (sum(r["reward"] for r in rows) / 4 for rows in (run.log[:4], run.log[-4:]))
    assert last > first + 1
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(before, run.reference.parameters()))

    flat = po.GRPORun.start(model, tokenizer, tasks, lambda task, rollout: torch.ones(8),
                            settings)
    row = po.grpo_iteration(flat)
    assert row["no_spread"] == 1.0 and row["loss"] is None
    assert all(torch.equal(a, b) for a, b in zip(before, flat.policy.parameters()))


def test_a_grpo_run_uses_the_advantages_and_kl_estimate_it_is_given(tiny):
    """Lesson 10's live run passes the learner's group_advantages and kl_k3."""
    model, tokenizer = tiny
    token = tokenizer.encode_ordinary(" the")[0]
    used = {"advantages": 0, "kl": 0}

    def advantages(rewards, eps=1e-4):
        used["advantages"] += 1
        return -po.group_advantages(rewards, eps)  # rewards the opposite of the reward

    def kl(logp, logp_ref):
        used["kl"] += 1
        return po.kl_k3(logp, logp_ref)

    def likes_the(task, rollout):
        return ((rollout.ids == token) * rollout.mask).sum(dim=1).float()

    settings = po.GRPOSettings(iterations=16, questions_per_batch=2, answers_per_question=8,
                               epochs=2, minibatch=8, lr=1e-2, beta=0.0, max_new_tokens=24)
    run = po.train_grpo(po.GRPORun.start(model, tokenizer, _questions(4), likes_the, settings,
                                         group_advantages=advantages, kl_k3=kl),
                        progress=False)
    assert used["advantages"] == 16 and used["kl"] > 0
    first, last = (sum(r["reward"] for r in rows) / 4 for rows in (run.log[:4], run.log[-4:]))
    assert last <= first  # the same run with the course's advantages climbs (test above)


def test_a_grpo_run_logs_the_true_score_of_story_requests(tiny):
    from gptcourse.data.tasks import constraint_stories

    model, tokenizer = tiny
    settings = po.GRPOSettings(iterations=1, questions_per_batch=1, answers_per_question=2,
                               max_new_tokens=8)
    run = po.GRPORun.start(model, tokenizer, constraint_stories(2), lambda t, r: torch.rand(2),
                           settings)
    assert "true_score" in po.grpo_iteration(run)
    question = po.GRPORun.start(model, tokenizer, _questions(2), po.exact_answer_rewards,
                                settings)
    assert "true_score" not in po.grpo_iteration(question)


def test_a_grpo_run_whose_kl_is_beyond_its_bound_raises(tiny, monkeypatch):
    model, tokenizer = tiny
    run = po.GRPORun.start(model, tokenizer, _questions(2), po.exact_answer_rewards,
                           po.GRPOSettings(iterations=2, questions_per_batch=1,
                                           answers_per_question=2, max_new_tokens=4,
                                           kl_bound=1e-9))
    with torch.no_grad():
        for p in run.policy.parameters():
            p.add_(torch.randn_like(p))
    with pytest.raises(DivergedError, match="beyond the bound"):
        po.grpo_iteration(run)
    assert run.iteration == 0 and run.log == []


@pytest.mark.parametrize("change, message", [
    ({"beta": -0.1}, "beta must be >= 0"), ({"answers_per_question": 1}, "must be >= 2"),
    ({"clip": 0.0}, r"clip must be in \(0, 1\)"), ({"eps": 0.0}, "must be > 0"),
    ({"iterations": 0}, "iterations must be a whole number >= 1")])
def test_grpo_settings_refuse_what_makes_no_sense(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(po.GRPOSettings(), **change)


def test_pass_at_1_counts_by_the_fact_asked_for(monkeypatch):
    from gptcourse.data.tasks import story_questions

    tasks = story_questions(12)
    monkeypatch.setattr(po, "reply", lambda model, tokenizer, messages, most: (
        next(t.answer for t in tasks if t.messages[:1] == messages), True))
    result = po.pass_at_1(None, None, tasks)
    assert result["all"] == 1.0 and result["questions"] == 12
    assert sum(n for _, n in result["by_fact"].values()) == 12
    assert set(result["by_fact"]) <= {"age", "animal", "colour", "helper", "pet", "place",
                                      "thing"}
    assert all(po.question_fact(t) in result["by_fact"] for t in tasks)
