"""Lesson 09, RLHF: learning from people's preferences, with a KL leash to the SFT model.

The third training stage. The model answers the same request several times, people say which
answer they prefer, a **reward model** learns to predict their choice (Bradley–Terry), and the
policy is trained to write answers the reward model scores highly, while a penalty on its
divergence from the supervised model (the KL leash) keeps it from drifting into text that only
fools the reward model. PPO's clipped objective keeps each update small.

Shapes: B batch of answers, T tokens of prompt + response, V vocabulary size. A response mask
(B, T) is aligned with the token ids: 1 on the response's tokens, 0 on the prompt and padding.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from gptcourse.model import GPT


def require_same_shape(**tensors: torch.Tensor) -> None:
    """Raise a ValueError naming the arguments when the tensors' shapes differ."""
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"expected tensors of one shape, got {listed}")


def require_responses(mask: torch.Tensor) -> None:
    """Raise a ValueError when a row of the response mask (B, T) holds no response token."""
    empty = (mask == 0).all(dim=-1).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"every row needs at least one response token (mask 1), but rows "
                         f"{empty} have none: drop empty answers from the batch")


def sequence_logprobs(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor
                      ) -> torch.Tensor:
    """The log-probability of each row's response: logits (B, T, V), ids (B, T) int64, mask
    (B, T) 0/1 aligned with ids -> (B,).

    Token ids[:, t] is scored by logits[:, t - 1], the prediction made one position earlier:
    sum over t >= 1 of mask[:, t] * log softmax(logits[:, t - 1])[ids[:, t]]. mask[:, 0] must
    be 0, since the first token has no prefix to be predicted from.
    """
    if logits.dim() != 3 or ids.shape != logits.shape[:2]:
        raise ValueError(f"expected logits (B, T, V) and ids (B, T) with the same B and T, "
                         f"got logits {tuple(logits.shape)} and ids {tuple(ids.shape)}")
    require_same_shape(ids=ids, mask=mask)
    if (mask[:, 0] != 0).any():
        raise ValueError("mask[:, 0] must be 0: the first token has no prefix, so nothing "
                         "predicts it")
    picked = token_logprobs(logits, ids)  # (B, T), 0 at position 0
    return (picked * mask.to(picked.dtype)).sum(dim=-1)


def token_logprobs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """The log-probability of every token given the tokens before it: logits (B, T, V), ids
    (B, T) -> (B, T), log softmax(logits[:, t - 1])[ids[:, t]] at position t, and 0 at
    position 0, which nothing predicts. RLHF's per-token quantities (the KL leash, PPO's
    ratio) are built from these, aligned with ids as the response mask is."""
    log_probs = torch.log_softmax(logits[:, :-1], dim=-1)  # (B, T - 1, V): predicts 1..T-1
    picked = log_probs.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)  # (B, T - 1)
    return F.pad(picked, (1, 0))


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """The reward model's loss on preference pairs: r_chosen (B,), r_rejected (B,) -> scalar,
    the mean of -log sigmoid(r_chosen - r_rejected).

    Bradley–Terry: P(chosen preferred) = sigmoid(r_chosen - r_rejected). logsigmoid stays
    finite for any margin, where log(sigmoid(x)) reaches log(0) = -inf below about -100.
    """
    require_same_shape(r_chosen=r_chosen, r_rejected=r_rejected)
    return -F.logsigmoid(r_chosen - r_rejected).mean()


def kl_penalised_rewards(score: torch.Tensor, logp: torch.Tensor, logp_ref: torch.Tensor,
                         mask: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-token rewards for PPO: score (B,), logp (B, T), logp_ref (B, T), mask (B, T), beta
    >= 0 -> (B, T).

    Every response token pays -beta * (logp - logp_ref), the leash that grows as the policy
    moves away from the reference model; positions where the mask is 0 get 0; the reward
    model's score for the whole answer is added at each row's last response token.
    """
    if not beta >= 0:
        raise ValueError(f"beta must be >= 0 (it weighs the KL penalty), got {beta}")
    require_same_shape(logp=logp, logp_ref=logp_ref, mask=mask)
    if score.shape != logp.shape[:1]:
        raise ValueError(f"expected one score per row, shape ({logp.shape[0]},), "
                         f"got {tuple(score.shape)}")
    require_responses(mask)
    keep = mask.to(logp.dtype)
    rewards = -beta * (logp - logp_ref) * keep
    positions = torch.arange(mask.shape[1], device=mask.device)
    last = torch.where(mask != 0, positions, -1).amax(dim=-1)  # (B,) last response token
    return rewards.index_put((torch.arange(len(last)), last), score.to(rewards.dtype),
                             accumulate=True)


def ppo_clip_loss(logp_new: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor,
                  mask: torch.Tensor, clip: float = 0.2) -> torch.Tensor:
    """PPO's clipped policy loss: logp_new, logp_old, advantages, mask all (B, T) -> scalar.

    With the ratio rho = exp(logp_new - logp_old), each response token costs
    max(-A * rho, -A * clip(rho, 1 - clip, 1 + clip)): the policy gains from raising a good
    token's probability only until rho leaves [1 - clip, 1 + clip]. The mean is over response
    tokens, (loss * mask).sum() / mask.sum(). logp_old and the advantages are constants of the
    update: no gradient flows into them.
    """
    if not 0 < clip < 1:
        raise ValueError(f"clip must be in (0, 1), got {clip}")
    require_same_shape(logp_new=logp_new, logp_old=logp_old, advantages=advantages, mask=mask)
    if not (mask != 0).any():
        raise ValueError("the mask holds no response token: nothing to optimise")
    advantages = advantages.detach()
    ratio = torch.exp(logp_new - logp_old.detach())
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - clip, 1 + clip)
    keep = mask.to(logp_new.dtype)
    return (torch.maximum(unclipped, clipped) * keep).sum() / keep.sum()


class RewardModel(nn.Module):
    """The GPT body with a scalar head: ids (B, T), lengths (B,) -> rewards (B,).

    The reward of a row is read at its last real token, `lengths - 1`: causal attention has
    let that position see the whole prompt and answer, and padding after it changes nothing.
    """

    def __init__(self, body: GPT) -> None:
        super().__init__()
        self.body = body
        self.head = nn.Linear(body.config.n_embd, 1)
        # A zero head gives every answer the same reward at the start: each pair is a coin
        # toss, and the Bradley–Terry loss starts at exactly ln 2.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_policy(cls, policy: GPT) -> "RewardModel":
        """A reward model whose body starts as a copy of `policy` (which stays untouched)."""
        return cls(copy.deepcopy(policy))

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        inside = (lengths >= 1) & (lengths <= ids.shape[1])
        if lengths.shape != ids.shape[:1] or not inside.all():
            raise ValueError(f"expected lengths (B,) of real tokens, each in 1..{ids.shape[1]}, "
                             f"for ids of shape {tuple(ids.shape)}; got {lengths.tolist()}")
        features = self.body.features(ids)  # (B, T, C)
        last = features[torch.arange(len(ids)), lengths - 1]  # (B, C)
        return self.head(last).squeeze(-1)
