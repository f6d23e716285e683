"""Lesson 09's checks reject plausible wrong RLHF code, each with a hint that names the mistake,
and accept differently written correct code."""

import torch
import torch.nn.functional as F

from catalogue import catalogue_tests


# --- rlhf.sequence_logprobs ------------------------------------------------------------------

def logprobs_not_shifted(logits, ids, mask):
    token_logp = logits.log_softmax(-1).gather(-1, ids[..., None])[..., 0]
    return (token_logp * mask).sum(-1)


def logprobs_mask_taken_from_the_logits_side(logits, ids, mask):
    token_logp = logits[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]
    return (token_logp * mask[:, :-1]).sum(-1)


def logprobs_mask_ignored(logits, ids, mask):
    token_logp = logits[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]
    return token_logp.sum(-1)


def logprobs_averaged(logits, ids, mask):
    token_logp = logits[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]
    keep = mask[:, 1:].float()
    return (token_logp * keep).sum(-1) / keep.sum(-1)


def logprobs_log_of_softmax(logits, ids, mask):
    probs = torch.softmax(logits[:, :-1], dim=-1)
    token_logp = torch.log(probs.gather(-1, ids[:, 1:, None])[..., 0])
    return torch.where(mask[:, 1:].bool(), token_logp, 0.0).sum(-1)


def logprobs_softmax_over_positions(logits, ids, mask):
    token_logp = logits[:, :-1].log_softmax(1).gather(-1, ids[:, 1:, None])[..., 0]
    return (token_logp * mask[:, 1:]).sum(-1)


def logprobs_through_numpy(logits, ids, mask):
    import numpy as np

    lp = torch.log_softmax(logits, -1).detach().numpy()
    out = [sum(lp[b, t - 1, ids[b, t]] for t in range(1, ids.shape[1]) if mask[b, t])
           for b in range(ids.shape[0])]
    return torch.tensor(np.array(out, dtype=np.float32))


def logprobs_with_gather(logits, ids, mask):
    log_probs = F.log_softmax(logits[:, :-1], dim=-1)
    token_logp = torch.gather(log_probs, 2, ids[:, 1:].unsqueeze(2)).squeeze(2)
    return (token_logp * mask[:, 1:].to(token_logp.dtype)).sum(dim=1)


def logprobs_with_one_hot(logits, ids, mask):
    log_probs = logits.log_softmax(-1)[:, :-1]
    one_hot = F.one_hot(ids[:, 1:], logits.shape[-1]).to(log_probs.dtype)
    token_logp = (log_probs * one_hot).sum(-1)
    return torch.where(mask[:, 1:] != 0, token_logp, torch.zeros_like(token_logp)).sum(-1)


def logprobs_as_negative_cross_entropy(logits, ids, mask):
    B, T, V = logits.shape
    targets = torch.where(mask[:, 1:] != 0, ids[:, 1:], -100)
    nll = F.cross_entropy(logits[:, :-1].reshape(-1, V), targets.reshape(-1),
                          ignore_index=-100, reduction="none")
    return -nll.view(B, T - 1).sum(-1)


# --- rlhf.bradley_terry_loss -----------------------------------------------------------------

def bt_sign_flipped(r_chosen, r_rejected):
    return -F.logsigmoid(r_rejected - r_chosen).mean()


def bt_without_the_minus(r_chosen, r_rejected):
    return F.logsigmoid(r_chosen - r_rejected).mean()


def bt_summed(r_chosen, r_rejected):
    return -F.logsigmoid(r_chosen - r_rejected).sum()


def bt_one_minus_sigmoid(r_chosen, r_rejected):
    return (1 - torch.sigmoid(r_chosen - r_rejected)).mean()


def bt_log_of_sigmoid(r_chosen, r_rejected):
    return -torch.log(torch.sigmoid(r_chosen - r_rejected)).mean()


def bt_logsigmoid(r_chosen, r_rejected):
    return -F.logsigmoid(r_chosen - r_rejected).mean()


def bt_softplus(r_chosen, r_rejected):
    return F.softplus(r_rejected - r_chosen).mean()


def bt_as_binary_cross_entropy(r_chosen, r_rejected):
    margin = r_chosen - r_rejected
    return F.binary_cross_entropy_with_logits(margin, torch.ones_like(margin))


# --- rlhf.kl_penalised_rewards ---------------------------------------------------------------

def _last_response_token(mask):
    return mask.shape[1] - 1 - mask.flip(-1).long().argmax(-1)


def kl_sign_flipped(score, logp, logp_ref, mask, beta):
    rewards = beta * (logp - logp_ref) * mask
    rewards[torch.arange(len(score)), _last_response_token(mask)] += score
    return rewards


def kl_direction_flipped(score, logp, logp_ref, mask, beta):
    rewards = -beta * (logp_ref - logp) * mask
    rewards[torch.arange(len(score)), _last_response_token(mask)] += score
    return rewards


def kl_score_on_every_token(score, logp, logp_ref, mask, beta):
    return (-beta * (logp - logp_ref) + score[:, None]) * mask


def kl_score_on_the_last_position(score, logp, logp_ref, mask, beta):
    rewards = -beta * (logp - logp_ref) * mask
    rewards[:, -1] += score
    return rewards


def kl_penalty_not_masked(score, logp, logp_ref, mask, beta):
    rewards = -beta * (logp - logp_ref)
    rewards[torch.arange(len(score)), _last_response_token(mask)] += score
    return rewards


def kl_with_a_loop(score, logp, logp_ref, mask, beta):
    rewards = torch.zeros_like(logp)
    for b in range(logp.shape[0]):
        positions = [t for t in range(logp.shape[1]) if mask[b, t]]
        for t in positions:
            rewards[b, t] = -beta * (logp[b, t] - logp_ref[b, t])
        rewards[b, positions[-1]] += score[b]
    return rewards


def kl_with_where_and_one_hot(score, logp, logp_ref, mask, beta):
    on = mask != 0
    penalty = torch.where(on, -beta * (logp - logp_ref), torch.zeros_like(logp))
    last = F.one_hot(_last_response_token(mask), mask.shape[1]).to(logp.dtype)
    return penalty + last * score[:, None]


# --- rlhf.ppo_clip_loss ----------------------------------------------------------------------

def _masked_mean(loss, mask):
    mask = mask.to(loss.dtype)
    return (loss * mask).sum() / mask.sum()


def ppo_not_clipped(logp_new, logp_old, advantages, mask, clip=0.2):
    ratio = torch.exp(logp_new - logp_old.detach())
    return _masked_mean(-advantages.detach() * ratio, mask)


def ppo_clipped_above_only(logp_new, logp_old, advantages, mask, clip=0.2):
    ratio = torch.exp(logp_new - logp_old.detach())
    a = advantages.detach()
    return _masked_mean(torch.max(-a * ratio, -a * ratio.clamp(max=1 + clip)), mask)


def ppo_min_instead_of_max(logp_new, logp_old, advantages, mask, clip=0.2):
    ratio = torch.exp(logp_new - logp_old.detach())
    a = advantages.detach()
    return _masked_mean(torch.min(-a * ratio, -a * ratio.clamp(1 - clip, 1 + clip)), mask)


def ppo_advantages_not_detached(logp_new, logp_old, advantages, mask, clip=0.2):
    ratio = torch.exp(logp_new - logp_old.detach())
    return _masked_mean(torch.max(-advantages * ratio,
                                  -advantages * ratio.clamp(1 - clip, 1 + clip)), mask)


def ppo_ratio_upside_down(logp_new, logp_old, advantages, mask, clip=0.2):
    ratio = torch.exp(logp_old.detach() - logp_new)
    a = advantages.detach()
    return _masked_mean(torch.max(-a * ratio, -a * ratio.clamp(1 - clip, 1 + clip)), mask)


def ppo_mean_over_every_position(logp_new, logp_old, advantages, mask, clip=0.2):
    ratio = torch.exp(logp_new - logp_old.detach())
    a = advantages.detach()
    return (torch.max(-a * ratio, -a * ratio.clamp(1 - clip, 1 + clip)) * mask).mean()


def ppo_as_the_objective_negated(logp_new, logp_old, advantages, mask, clip=0.2):
    ratio = (logp_new - logp_old.detach()).exp()
    a = advantages.detach()
    objective = torch.min(ratio * a, torch.clamp(ratio, 1 - clip, 1 + clip) * a)
    return -_masked_mean(objective, mask)


def ppo_with_where(logp_new, logp_old, advantages, mask, clip=0.2):
    ratio = torch.exp(logp_new - logp_old.detach())
    a = advantages.detach()
    loss = torch.maximum(-a * ratio, -a * torch.clamp(ratio, 1 - clip, 1 + clip))
    on = mask.bool()
    return torch.where(on, loss, torch.zeros_like(loss)).sum() / on.sum()


WRONG = {
    "rlhf.sequence_logprobs": {
        logprobs_not_shifted: ["predicted by the position before it"],
        logprobs_mask_taken_from_the_logits_side: ["aligned with the ids"],
        logprobs_mask_ignored: ["Only the response is scored"],
        logprobs_averaged: ["sum over its tokens"],
        logprobs_log_of_softmax: ["log_softmax"],
        logprobs_softmax_over_positions: ["last axis"],
        logprobs_through_numpy: ["gradient does not flow"],
    },
    "rlhf.bradley_terry_loss": {
        bt_sign_flipped: ["wrong way round"],
        bt_without_the_minus: ["without the minus"],
        bt_summed: ["mean over the pairs"],
        bt_one_minus_sigmoid: ["log of the probability"],
        bt_log_of_sigmoid: ["overflows"],
    },
    "rlhf.kl_penalised_rewards": {
        kl_sign_flipped: ["wrong sign"],
        kl_direction_flipped: ["wrong sign"],
        kl_score_on_every_token: ["adding it at every token"],
        kl_score_on_the_last_position: ["padding"],
        kl_penalty_not_masked: ["multiply the penalty by the mask"],
    },
    "rlhf.ppo_clip_loss": {
        ppo_not_clipped: ["not clipped"],
        ppo_clipped_above_only: ["pushed to 0"],
        ppo_min_instead_of_max: ["min"],
        ppo_advantages_not_detached: ["detach them"],
        ppo_ratio_upside_down: ["new over old"],
        ppo_mean_over_every_position: ["response tokens only"],
    },
}

CORRECT = {
    "rlhf.sequence_logprobs": [logprobs_with_gather, logprobs_with_one_hot,
                               logprobs_as_negative_cross_entropy],
    "rlhf.bradley_terry_loss": [bt_logsigmoid, bt_softplus, bt_as_binary_cross_entropy],
    "rlhf.kl_penalised_rewards": [kl_with_a_loop, kl_with_where_and_one_hot],
    "rlhf.ppo_clip_loss": [ppo_as_the_objective_negated, ppo_with_where],
}

(test_wrong_implementation_is_rejected_with_feedback_naming_the_mistake,
 test_correct_variants_pass, test_the_stub_is_not_attempted) = catalogue_tests(WRONG, CORRECT)
