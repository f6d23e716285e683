"""Lesson 10, preference optimisation: DPO and GRPO, two ways past PPO's machinery.

DPO (direct preference optimisation) learns from the preference pairs themselves, with no
reward model and no sampling: the policy's log-probability margin over a frozen reference
model, chosen minus rejected, is pushed up through the same Bradley–Terry loss that trains a
reward model. GRPO (group relative policy optimisation) keeps sampling but drops the value
network: several answers to the same question are scored, and each answer's advantage is its
reward relative to its own group.

Shapes: B pairs or answers; G groups (questions) of K answers each; T tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gptcourse.rlhf import require_same_shape


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
             ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, beta: float) -> torch.Tensor:
    """DPO's loss: four (B,) summed response log-probabilities (lesson 09's
    `sequence_logprobs`), beta > 0 -> scalar, the mean over the batch of

        -log sigmoid(beta * [(policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)]).

    beta * (policy - ref) is the implicit reward of an answer. The reference model is frozen:
    no gradient flows into its log-probabilities. At the start, policy = reference and the
    loss is ln 2.
    """
    if not beta > 0:
        raise ValueError(f"beta must be > 0 (it scales the implicit reward), got {beta}")
    require_same_shape(policy_chosen=policy_chosen, policy_rejected=policy_rejected,
                       ref_chosen=ref_chosen, ref_rejected=ref_rejected)
    chosen = policy_chosen - ref_chosen.detach()
    rejected = policy_rejected - ref_rejected.detach()
    return -F.logsigmoid(beta * (chosen - rejected)).mean()


def group_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """GRPO's advantages: rewards (G, K), K >= 2 answers to each of G questions -> (G, K),
    (r - mean) / (std + eps) within each group, std the unbiased one (torch's default).

    A group whose answers all score the same teaches nothing: its advantages are 0.
    """
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"expected rewards (G, K) with K >= 2 answers per group, got shape "
                         f"{tuple(rewards.shape)}: a group of one answer has nothing to be "
                         f"compared with")
    if not torch.isfinite(rewards).all():
        raise ValueError("rewards must be finite numbers; found NaN or infinity")
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True)
    return (rewards - mean) / (std + eps)


def kl_k3(logp: torch.Tensor, logp_ref: torch.Tensor) -> torch.Tensor:
    """The k3 estimate of KL(policy || reference) per token: logp, logp_ref (B, T) of the
    sampled tokens -> (B, T), exp(logp_ref - logp) - (logp_ref - logp) - 1.

    Unbiased for the KL when the tokens are sampled from the policy, and never negative
    (e^x >= 1 + x), unlike the plain log-ratio logp - logp_ref. expm1 keeps it precise when
    the two models nearly agree.
    """
    require_same_shape(logp=logp, logp_ref=logp_ref)
    log_ratio = logp_ref - logp
    return torch.expm1(log_ratio) - log_ratio
