"""Lesson 10's checks reject plausible wrong DPO and GRPO code, each with a hint that names the
mistake, and accept differently written correct code."""

import math

import pytest
import torch
import torch.nn.functional as F

from catalogue import catalogue_tests
from gptcourse import preference_optimisation as po


# --- preference_optimisation.dpo_loss --------------------------------------------------------

def dpo_chosen_and_rejected_swapped(policy_chosen, policy_rejected, ref_chosen, ref_rejected,
                                    beta):
    margin = (policy_rejected - ref_rejected.detach()) - (policy_chosen - ref_chosen.detach())
    return -F.logsigmoid(beta * margin).mean()


def dpo_without_the_reference(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    return -F.logsigmoid(beta * (policy_chosen - policy_rejected)).mean()


def dpo_beta_outside_the_sigmoid(policy_chosen, policy_rejected, ref_chosen, ref_rejected,
                                 beta):
    margin = (policy_chosen - ref_chosen.detach()) - (policy_rejected - ref_rejected.detach())
    return -(beta * F.logsigmoid(margin)).mean()


def dpo_reference_not_frozen(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return -F.logsigmoid(beta * margin).mean()


def dpo_log_of_sigmoid(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    margin = (policy_chosen - ref_chosen.detach()) - (policy_rejected - ref_rejected.detach())
    return -torch.log(torch.sigmoid(beta * margin)).mean()


def dpo_summed(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    margin = (policy_chosen - ref_chosen.detach()) - (policy_rejected - ref_rejected.detach())
    return -F.logsigmoid(beta * margin).sum()


def dpo_with_logsigmoid(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    policy_margin = policy_chosen - policy_rejected
    ref_margin = (ref_chosen - ref_rejected).detach()
    return -F.logsigmoid(beta * (policy_margin - ref_margin)).mean()


def dpo_with_softplus(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    with torch.no_grad():
        ref_margin = ref_chosen - ref_rejected
    return F.softplus(-beta * (policy_chosen - policy_rejected - ref_margin)).mean()


def dpo_from_implicit_rewards(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    reward_chosen = beta * (policy_chosen - ref_chosen.detach())
    reward_rejected = beta * (policy_rejected - ref_rejected.detach())
    return F.binary_cross_entropy_with_logits(reward_chosen - reward_rejected,
                                              torch.ones_like(reward_chosen))


# --- preference_optimisation.group_advantages ------------------------------------------------

def advantages_over_the_whole_batch(rewards, eps=1e-4):
    return (rewards - rewards.mean()) / (rewards.std() + eps)


def advantages_without_eps(rewards, eps=1e-4):
    return (rewards - rewards.mean(1, keepdim=True)) / rewards.std(1, keepdim=True)


def advantages_not_centred(rewards, eps=1e-4):
    return rewards / (rewards.std(1, keepdim=True) + eps)


def advantages_with_the_biased_std(rewards, eps=1e-4):
    return (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True,
                                                                    unbiased=False) + eps)


def advantages_down_the_columns(rewards, eps=1e-4):
    return (rewards - rewards.mean(0, keepdim=True)) / (rewards.std(0, keepdim=True) + eps)


def advantages_with_std_mean(rewards, eps=1e-4):
    std, mean = torch.std_mean(rewards, dim=-1, keepdim=True)
    return (rewards - mean) / (std + eps)


def advantages_with_a_loop(rewards, eps=1e-4):
    rows = []
    for group in rewards:
        K = len(group)
        mean = sum(group.tolist()) / K
        std = math.sqrt(sum((r - mean) ** 2 for r in group.tolist()) / (K - 1))
        rows.append([(r - mean) / (std + eps) for r in group.tolist()])
    return torch.tensor(rows, dtype=rewards.dtype)


# --- preference_optimisation.kl_k3 -----------------------------------------------------------

def k3_log_ratio_reversed(logp, logp_ref):
    x = logp - logp_ref
    return torch.exp(x) - x - 1


def k1_passed_off_as_k3(logp, logp_ref):
    return logp - logp_ref


def k3_naive(logp, logp_ref):
    x = logp_ref - logp
    return x.exp() - x - 1


def k3_from_the_ratio(logp, logp_ref):
    ratio = torch.exp(logp_ref - logp)
    return (ratio - 1) - torch.log(ratio)


WRONG = {
    "preference_optimisation.dpo_loss": {
        dpo_chosen_and_rejected_swapped: ["swapped"],
        dpo_without_the_reference: ["reference model's log-probabilities are missing"],
        dpo_beta_outside_the_sigmoid: ["inside the sigmoid"],
        dpo_reference_not_frozen: ["frozen"],
        dpo_log_of_sigmoid: ["stable"],
        dpo_summed: ["mean over the pairs"],
    },
    "preference_optimisation.group_advantages": {
        advantages_over_the_whole_batch: ["within each group"],
        advantages_without_eps: ["NaN"],
        advantages_not_centred: ["Subtract the group's mean"],
        advantages_with_the_biased_std: ["unbiased"],
        advantages_down_the_columns: ["last axis"],
    },
    "preference_optimisation.kl_k3": {
        k3_log_ratio_reversed: ["reversed"],
        k1_passed_off_as_k3: ["negative"],
    },
}

CORRECT = {
    "preference_optimisation.dpo_loss": [dpo_with_logsigmoid, dpo_with_softplus,
                                         dpo_from_implicit_rewards],
    "preference_optimisation.group_advantages": [advantages_with_std_mean,
                                                 advantages_with_a_loop],
    "preference_optimisation.kl_k3": [k3_naive, k3_from_the_ratio],
}

(test_wrong_implementation_is_rejected_with_feedback_naming_the_mistake,
 test_correct_variants_pass, test_the_stub_is_not_attempted) = catalogue_tests(WRONG, CORRECT)


# --- the references refuse bad input ---------------------------------------------------------

def test_dpo_loss_is_ln_2_while_the_policy_equals_the_reference():
    logp = torch.tensor([-5.0, -7.5, -3.0])
    loss = po.dpo_loss(logp, logp - 1, logp.clone(), logp - 1, beta=0.1)
    assert math.isclose(loss.item(), math.log(2), rel_tol=1e-6)


@pytest.mark.parametrize("beta", [0.0, -0.1, float("nan")])
def test_dpo_loss_refuses_a_beta_that_is_not_positive(beta):
    x = torch.zeros(2)
    with pytest.raises(ValueError, match="beta must be > 0"):
        po.dpo_loss(x, x, x, x, beta)


def test_dpo_loss_names_mismatched_shapes():
    with pytest.raises(ValueError, match=r"policy_chosen \(3,\).*ref_rejected \(2,\)"):
        po.dpo_loss(torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(2), 0.1)


def test_a_group_whose_answers_score_alike_has_zero_advantage_not_nan():
    advantages = po.group_advantages(torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 0.0]]))
    assert torch.equal(advantages[0], torch.zeros(3))
    assert torch.isfinite(advantages).all()


@pytest.mark.parametrize("rewards, words", [
    (torch.ones(4, 1), "K >= 2"),
    (torch.ones(5), "K >= 2"),
    (torch.tensor([[1.0, float("nan")]]), "NaN"),
])
def test_group_advantages_refuses_bad_groups(rewards, words):
    with pytest.raises(ValueError, match=words):
        po.group_advantages(rewards)


def test_k3_is_never_negative_and_zero_where_the_models_agree():
    g = torch.Generator().manual_seed(0)
    logp, logp_ref = -5 * torch.rand(100, 20, generator=g), -5 * torch.rand(100, 20, generator=g)
    assert (po.kl_k3(logp, logp_ref) >= 0).all()
    assert torch.equal(po.kl_k3(logp, logp), torch.zeros_like(logp))


def test_k3_averages_to_the_true_kl_on_samples_from_the_policy():
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(6, generator=g), 0)
    q = torch.softmax(torch.randn(6, generator=g), 0)
    tokens = torch.multinomial(p, 200_000, replacement=True, generator=g)
    estimate = po.kl_k3(p.log()[tokens], q.log()[tokens]).mean()
    exact = (p * (p / q).log()).sum()
    assert math.isclose(estimate.item(), exact.item(), rel_tol=0.02)
