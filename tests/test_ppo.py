"""Lesson 09's PPO run: the group baseline, the settings' errors, and a tiny run end to end
(rollouts, rewards, clipped updates) that moves the policy and leaves the reference alone."""

import dataclasses

import pytest
import torch

from gptcourse import ppo


def test_group_baseline_centres_each_group_and_scales_by_the_batch_spread():
    returns = torch.tensor([1.0, 3.0, 10.0, 10.0, -2.0, 4.0])
    advantages = ppo.group_baseline_advantages(returns, group=2)
    centred = torch.tensor([-1.0, 1.0, 0.0, 0.0, -3.0, 3.0])
    assert torch.allclose(advantages, centred / centred.std())
    assert torch.allclose(advantages.view(3, 2).sum(dim=1), torch.zeros(3))


def test_group_baseline_of_groups_that_all_agree_is_zero_not_nan():
    advantages = ppo.group_baseline_advantages(torch.tensor([2.0, 2.0, 5.0, 5.0]), group=2)
    assert torch.equal(advantages, torch.zeros(4))


def test_group_baseline_refuses_returns_that_are_not_whole_groups():
    with pytest.raises(ValueError, match="whole groups of 4"):
        ppo.group_baseline_advantages(torch.zeros(6), group=4)


@pytest.mark.parametrize("change, message", [
    ({"beta": -0.1}, "beta must be >= 0"), ({"clip": 1.5}, r"clip must be in \(0, 1\)"),
    ({"answers_per_request": 1}, "answers_per_request must be >= 2"),
    ({"epochs": 0}, "epochs must be a whole number >= 1"),
    ({"lr": 0.0}, "must be > 0")])
def test_settings_refuse_what_makes_no_sense(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(ppo.PPOSettings(), **change)


class LikesOneToken(torch.nn.Module):
    """A stand-in reward model: the number of times one token appears in the row."""

    def __init__(self, token: int) -> None:
        super().__init__()
        self.token = token

    def forward(self, ids, lengths):
        real = torch.arange(ids.shape[1]) < lengths[:, None]
        return ((ids == self.token) & real).float().sum(dim=1)


@pytest.fixture(scope="module")
def tiny():
    from gptcourse.data import generate_corpus
    from gptcourse.data.tasks import constraint_stories
    from gptcourse.finetuning import add_chat_tokens
    from gptcourse.model import GPT, GPTConfig
    from gptcourse.tokenizer import Tokenizer

    tokenizer = Tokenizer.train(generate_corpus(20_000, seed=5), 300)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=300, block_size=96, n_layer=1, n_head=2, n_embd=16))
    model, tokenizer = add_chat_tokens(model, tokenizer)
    return model, tokenizer, constraint_stories(4, "train")


def _count(run, token, seed):
    from gptcourse.rollouts import sample_answers

    g = torch.Generator().manual_seed(seed)
    batch = [sample_answers(run.policy, run.tokenizer, t.messages[:1], 8, 24, generator=g)
             for t in run.tasks]
    return sum(((b.ids == token) * b.mask).sum().item() for b in batch)


def test_a_tiny_run_learns_what_its_reward_model_likes_and_leaves_the_reference_alone(tiny):
    model, tokenizer, tasks = tiny
    token = tokenizer.encode_ordinary(" the")[0]
    before = [p.clone() for p in model.parameters()]
    settings = ppo.PPOSettings(iterations=16, requests_per_batch=2, answers_per_request=8,
                               epochs=2, minibatch=8, lr=1e-2, beta=0.0, max_new_tokens=24)
    run = ppo.PPORun.start(model, LikesOneToken(token), tokenizer, tasks, settings)
    start = _count(run, token, seed=1)
    ppo.train_ppo(run, progress=False)
    assert _count(run, token, seed=1) > 10 * (start + 1)  # 1 -> 337 when measured
    assert [row["iteration"] for row in run.log] == list(range(1, 17))
    assert run.log[-1]["kl"] > 0
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))
    assert all(torch.equal(p, q) for p, q in zip(run.reference.parameters(), before))


def test_a_run_uses_the_rewards_and_clipped_loss_it_is_given(tiny):
    """Lesson 09's live run passes the learner's kl_penalised_rewards and ppo_clip_loss: with
    the reward model's score negated in the rewards, the policy must learn the opposite."""
    from gptcourse.rlhf import kl_penalised_rewards, ppo_clip_loss

    model, tokenizer, tasks = tiny
    token = tokenizer.encode_ordinary(" the")[0]
    losses = []

    def negated(score, logp, logp_ref, mask, beta):
        return kl_penalised_rewards(-score, logp, logp_ref, mask, beta)

    def counted(*args):
        losses.append(1)
        return ppo_clip_loss(*args)

    settings = ppo.PPOSettings(iterations=16, requests_per_batch=2, answers_per_request=8,
                               epochs=2, minibatch=8, lr=1e-2, beta=0.0, max_new_tokens=24)
    run = ppo.PPORun.start(model, LikesOneToken(token), tokenizer, tasks, settings,
                           kl_penalised_rewards=negated, ppo_clip_loss=counted)
    start = _count(run, token, seed=1)
    ppo.train_ppo(run, progress=False)
    assert len(losses) == 16 * 2 * 2  # iterations x epochs x minibatches of 8 of 16 answers
    assert _count(run, token, seed=1) <= start
    assert run.log[-1]["score"] <= run.log[0]["score"]


def test_a_run_beyond_its_kl_bound_stops_before_saving(tiny):
    model, tokenizer, tasks = tiny
    token = tokenizer.encode_ordinary(" the")[0]
    settings = ppo.PPOSettings(iterations=12, requests_per_batch=2, answers_per_request=4,
                               lr=3e-2, beta=0.0, max_new_tokens=24, kl_bound=0.5)
    run = ppo.PPORun.start(model, LikesOneToken(token), tokenizer, tasks, settings)
    saved = []
    with pytest.raises(ppo.DivergedError, match="beyond the bound of 0.5"):
        ppo.train_ppo(run, progress=False, save=lambda r: saved.append(r.iteration))
    assert saved == list(range(1, len(saved) + 1))  # every save was of a run within the bound
    assert run.iteration == len(saved)


def test_start_refuses_an_empty_task_list(tiny):
    model, tokenizer, _ = tiny
    with pytest.raises(ValueError, match="task list is empty"):
        ppo.PPORun.start(model, LikesOneToken(0), tokenizer, [])


def test_a_running_mean_averages_each_value_with_those_before_it():
    assert ppo.running_mean([1.0, 3.0, 5.0, 7.0], width=2) == [1.0, 2.0, 4.0, 6.0]
    assert ppo.running_mean([2.0, 4.0, 9.0], width=10) == [2.0, 3.0, 5.0]
    assert ppo.running_mean([], width=3) == []
    with pytest.raises(ValueError, match="width"):
        ppo.running_mean([1.0], width=0)
