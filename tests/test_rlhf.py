"""The RLHF reference losses (lesson 09): what they compute, checked from outside, and the
errors bad input gets."""

import math

import pytest
import torch

from gptcourse import rlhf


def test_sequence_logprobs_is_the_log_of_the_response_probability_step_by_step():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 5, 4, generator=g)
    ids = torch.tensor([[2, 0, 3, 1, 1]])
    mask = torch.tensor([[0, 0, 1, 1, 0]])  # response = tokens 2 and 3, then padding
    probs = torch.softmax(logits, -1)[0]
    expected = math.log(probs[1, 3].item() * probs[2, 1].item())
    assert math.isclose(rlhf.sequence_logprobs(logits, ids, mask).item(), expected,
                        rel_tol=1e-5)


def test_sequence_logprobs_refuses_a_mask_on_the_first_token():
    with pytest.raises(ValueError, match=r"mask\[:, 0\] must be 0"):
        rlhf.sequence_logprobs(torch.zeros(1, 3, 4), torch.zeros(1, 3, dtype=torch.long),
                               torch.ones(1, 3))


def test_sequence_logprobs_names_mismatched_shapes():
    with pytest.raises(ValueError, match=r"logits \(B, T, V\)"):
        rlhf.sequence_logprobs(torch.zeros(2, 3, 4), torch.zeros(2, 4, dtype=torch.long),
                               torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"ids \(2, 3\), mask \(2, 4\)"):
        rlhf.sequence_logprobs(torch.zeros(2, 3, 4), torch.zeros(2, 3, dtype=torch.long),
                               torch.zeros(2, 4))


def test_bradley_terry_is_ln_2_for_equal_rewards_and_finite_for_any_margin():
    assert math.isclose(rlhf.bradley_terry_loss(torch.zeros(3), torch.zeros(3)).item(),
                        math.log(2), rel_tol=1e-6)
    loss = rlhf.bradley_terry_loss(torch.tensor([-500.0]), torch.tensor([500.0]))
    assert math.isclose(loss.item(), 1000.0, rel_tol=1e-6)


def test_kl_penalised_rewards_add_up_to_the_score_minus_beta_times_the_log_ratio():
    g = torch.Generator().manual_seed(1)
    logp, logp_ref = -torch.rand(3, 7, generator=g), -torch.rand(3, 7, generator=g)
    mask = torch.tensor([[0, 1, 1, 1, 0, 0, 0], [0, 0, 1, 1, 1, 1, 1], [0, 0, 0, 0, 1, 0, 0]])
    score = torch.tensor([1.0, -2.0, 0.5])
    rewards = rlhf.kl_penalised_rewards(score, logp, logp_ref, mask, beta=0.3)
    log_ratio = ((logp - logp_ref) * mask).sum(-1)
    assert torch.allclose(rewards.sum(-1), score - 0.3 * log_ratio, atol=1e-6)
    assert (rewards[mask == 0] == 0).all()
    assert rewards[0, 3] == pytest.approx((score[0] - 0.3 * (logp[0, 3] - logp_ref[0, 3])).item())


@pytest.mark.parametrize("beta", [-0.1, float("nan")])
def test_kl_penalised_rewards_refuse_a_negative_beta(beta):
    x = torch.zeros(1, 3)
    with pytest.raises(ValueError, match="beta must be >= 0"):
        rlhf.kl_penalised_rewards(torch.zeros(1), x, x, torch.tensor([[0, 1, 1]]), beta)


def test_kl_penalised_rewards_refuse_an_empty_response():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"rows \[1\] have none"):
        rlhf.kl_penalised_rewards(torch.zeros(2), x, x, torch.tensor([[0, 1, 1], [0, 0, 0]]),
                                  0.1)


def test_kl_penalised_rewards_want_one_score_per_row():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"one score per row, shape \(2,\)"):
        rlhf.kl_penalised_rewards(torch.zeros(3), x, x, torch.ones(2, 3), 0.1)


def test_ppo_loss_at_ratio_one_is_the_policy_gradient():
    """At the start of an update (new = old) the clip is inactive: the gradient with respect to
    each response token's log-probability is -A / (number of response tokens)."""
    g = torch.Generator().manual_seed(2)
    old = -torch.rand(2, 5, generator=g)
    new = old.clone().requires_grad_(True)
    advantages = torch.randn(2, 5, generator=g)
    mask = torch.tensor([[0, 1, 1, 0, 0], [0, 1, 1, 1, 1]])
    rlhf.ppo_clip_loss(new, old, advantages, mask).backward()
    assert torch.allclose(new.grad, -advantages * mask / mask.sum())


def test_ppo_loss_stops_pushing_once_the_ratio_leaves_the_clip_range():
    old = torch.zeros(1, 2)
    new = torch.log(torch.tensor([[1.5, 0.5]])).requires_grad_(True)  # ratios 1.5 and 0.5
    advantages = torch.tensor([[1.0, -1.0]])  # both already moved past the range: no gradient
    rlhf.ppo_clip_loss(new, old, advantages, torch.ones(1, 2)).backward()
    assert torch.equal(new.grad, torch.zeros(1, 2))


@pytest.mark.parametrize("clip", [0.0, 1.0, -0.2, 1.5])
def test_ppo_loss_refuses_a_clip_outside_zero_one(clip):
    x = torch.zeros(1, 2)
    with pytest.raises(ValueError, match=r"clip must be in \(0, 1\)"):
        rlhf.ppo_clip_loss(x, x, x, torch.ones(1, 2), clip)


def test_ppo_loss_refuses_a_batch_without_response_tokens_and_mismatched_shapes():
    x = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="no response token"):
        rlhf.ppo_clip_loss(x, x, x, torch.zeros(1, 2))
    with pytest.raises(ValueError, match=r"advantages \(1, 3\)"):
        rlhf.ppo_clip_loss(x, x, torch.zeros(1, 3), torch.ones(1, 2))


def _tiny_gpt():
    from gptcourse.model import GPT, GPTConfig

    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=8))


def test_a_new_reward_model_scores_every_answer_alike_so_its_loss_starts_at_ln_2():
    model = rlhf.RewardModel.from_policy(_tiny_gpt())
    ids = torch.randint(0, 50, (4, 10))
    rewards = model(ids, torch.tensor([10, 7, 3, 9]))
    assert torch.equal(rewards, torch.zeros(4))
    loss = rlhf.bradley_terry_loss(rewards[:2], rewards[2:])
    assert math.isclose(loss.item(), math.log(2), rel_tol=1e-6)


def test_the_reward_is_read_at_the_last_real_token_and_padding_changes_nothing():
    model = rlhf.RewardModel.from_policy(_tiny_gpt())
    torch.nn.init.normal_(model.head.weight)
    ids = torch.randint(0, 50, (1, 12))
    padded = ids.clone()
    padded[0, 8:] = 0
    alone = model(ids[:, :8], torch.tensor([8]))
    assert torch.allclose(model(padded, torch.tensor([8])), alone, atol=1e-6)
    assert not torch.allclose(model(ids, torch.tensor([12])), alone)


def test_the_reward_model_copies_the_policy_and_leaves_it_alone():
    policy = _tiny_gpt()
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    model = rlhf.RewardModel.from_policy(policy)
    with torch.no_grad():
        for p in model.body.parameters():
            p.add_(1.0)
    assert all(torch.equal(before[k], v) for k, v in policy.state_dict().items())


def test_the_reward_model_refuses_lengths_outside_the_rows():
    model = rlhf.RewardModel.from_policy(_tiny_gpt())
    with pytest.raises(ValueError, match=r"lengths \(B,\) of real tokens, each in 1..5"):
        model(torch.zeros(2, 5, dtype=torch.long), torch.tensor([0, 5]))
