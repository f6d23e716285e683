"""Checks for lesson 09, RLHF."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gptcourse import rlhf
from gptcourse.exercises.compare import Tolerance
from gptcourse.exercises.contract import NO_GRADIENT, Case, Exercise, Mistake
from gptcourse.exercises.registration import register


def not_finite(case: Case, outcome) -> bool:
    """A symptom: the learner returned a tensor with inf or NaN in it."""
    value = outcome.value
    return outcome.error is None and isinstance(value, torch.Tensor) and \
        value.is_floating_point() and not torch.isfinite(value).all()


def _response_mask(g: torch.Generator, B: int, T: int) -> torch.Tensor:
    """(B, T) int64: each row a prompt of 1..T//2 tokens (0), a response of at least one token
    (1), then padding (0) in some rows."""
    mask = torch.zeros(B, T, dtype=torch.long)
    for b in range(B):
        start = int(torch.randint(1, T // 2 + 1, (1,), generator=g))
        end = int(torch.randint(start + 1, T + 1, (1,), generator=g))
        mask[b, start:end] = 1
    return mask


# --- sequence_logprobs -----------------------------------------------------------------------

def _logprob_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    randn = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    ids = lambda B, T, V: torch.randint(0, V, (B, T), generator=g)  # noqa: E731
    padded = torch.tensor([[0, 0, 1, 1, 1, 0], [0, 1, 1, 0, 0, 0]])
    return [
        Case("B=2, T=6, V=7: prompts of 2 and 1 tokens, then padding", (randn(2, 6, 7),
                                                                           ids(2, 6, 7), padded)),
        Case("the smallest: one prompt token and one response token", (randn(1, 2, 3),
                                                                         ids(1, 2, 3),
                                                                         torch.tensor([[0, 1]]))),
        Case("B=4, T=9, V=11, random prompts and padding", (randn(4, 9, 11), ids(4, 9, 11),
                                                            _response_mask(g, 4, 9))),
        Case("a boolean mask", (randn(3, 7, 5), ids(3, 7, 5),
                                _response_mask(g, 3, 7).bool())),
        Case("confident logits (scale 60): log-probabilities near -100",
             (randn(2, 5, 6) * 60, ids(2, 5, 6), _response_mask(g, 2, 5))),
        Case("gradients", (randn(3, 6, 5), ids(3, 6, 5), _response_mask(g, 3, 6)),
             probe="gradients"),
    ]


def _logprobs(logits, ids, mask, *, shift=1, use_mask=True, mask_shift=True, reduce="sum",
              dim=-1):
    if shift:
        logits, ids = logits[:, :-1], ids[:, 1:]
        mask = mask[:, 1:] if mask_shift else mask[:, :-1]
    log_probs = torch.log_softmax(logits, dim=dim)
    picked = log_probs.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    keep = mask.to(picked.dtype) if use_mask else torch.ones_like(picked)
    total = (picked * keep).sum(-1)
    return total / keep.sum(-1) if reduce == "mean" else total


register(Exercise(
    id="rlhf.sequence_logprobs",
    title="the log-probability of a response",
    points=1,
    reference=rlhf.sequence_logprobs,
    make_cases=_logprob_cases,
    tolerance=Tolerance(rtol=1e-5, atol=1e-5),
    mistakes=(
        Mistake("Each token is predicted by the position before it: the logits at t - 1 score "
                "the token at t. Scoring a token with the logits of its own position asks the "
                "model about a token it has already seen.",
                wrong=lambda lg, i, m: _logprobs(lg, i, m, shift=0)),
        Mistake("The mask is aligned with the ids, not with the logits: after shifting, token "
                "t (scored by the logits at t - 1) is counted when mask[:, t] is 1. Your sum "
                "counts each response one token too early.",
                wrong=lambda lg, i, m: _logprobs(lg, i, m, mask_shift=False)),
        Mistake("Only the response is scored: prompt and padding tokens must not count, so "
                "weigh each token's log-probability by the mask.",
                wrong=lambda lg, i, m: _logprobs(lg, i, m, use_mask=False)),
        Mistake("The log-probability of a whole response is the sum over its tokens (the log "
                "of a product of probabilities), not their mean.",
                wrong=lambda lg, i, m: _logprobs(lg, i, m, reduce="mean")),
        Mistake("The probabilities are over the vocabulary, the last axis of the logits.",
                wrong=lambda lg, i, m: _logprobs(lg, i, m, dim=1)),
        Mistake("log(softmax(x)) rounds a tiny probability to 0 and its log to -inf: use "
                "torch.log_softmax, which never takes the log of a tiny number.",
                symptom=not_finite),
        NO_GRADIENT,
    ),
    hint="Per row, add up log p(ids[t] | tokens before t) over the positions where the mask "
         "is 1; the prediction for position t sits at logits[:, t - 1].",
))


# --- bradley_terry_loss ----------------------------------------------------------------------

def _bt_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    randn = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    return [
        Case("B=5 pairs", (randn(5), randn(5))),
        Case("one pair, chosen scored higher", (torch.tensor([2.0]), torch.tensor([-1.0]))),
        Case("equal rewards: P = 1/2, the loss is ln 2", (torch.zeros(4), torch.zeros(4))),
        Case("margins of ±300 (a sure pair, and a pair the model has the wrong way round)",
             (torch.tensor([300.0, -150.0, 1.0]), torch.tensor([0.0, 150.0, 0.5]))),
        Case("gradients", (randn(6), randn(6)), probe="gradients"),
    ]


register(Exercise(
    id="rlhf.bradley_terry_loss",
    title="the reward model's Bradley–Terry loss",
    points=1,
    reference=rlhf.bradley_terry_loss,
    make_cases=_bt_cases,
    tolerance=Tolerance(rtol=1e-5, atol=1e-6),
    mistakes=(
        Mistake("The sign is the wrong way round: your loss is smallest when the rejected "
                "answer scores higher. The loss should fall as r_chosen rises above "
                "r_rejected.",
                wrong=lambda c, r: -F.logsigmoid(r - c).mean()),
        Mistake("The loss is the negative log-likelihood, -log σ(margin): without the minus "
                "sign, minimising it would make the reward model disagree with people.",
                wrong=lambda c, r: F.logsigmoid(c - r).mean()),
        Mistake("Take the mean over the pairs, not the sum, so the loss does not grow with the "
                "batch.",
                wrong=lambda c, r: -F.logsigmoid(c - r).sum()),
        Mistake("The loss needs the log of the probability: -log σ(margin), not 1 - σ(margin) "
                "or σ of anything alone.",
                wrong=lambda c, r: (1 - torch.sigmoid(c - r)).mean()),
        Mistake("log(sigmoid(x)) overflows for a large negative margin: sigmoid rounds to 0 and "
                "its log is -inf. Compute log σ in one stable step (F.logsigmoid, or "
                "-softplus(-x)).", symptom=not_finite),
        NO_GRADIENT,
    ),
    hint="Bradley–Terry: P(chosen preferred) = σ(r_chosen − r_rejected); the loss is the "
         "mean negative log of that probability, computed stably.",
))


# --- kl_penalised_rewards --------------------------------------------------------------------

def _kl_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    randn = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    logps = lambda B, T: (-2 * torch.rand(B, T, generator=g), -2 * torch.rand(B, T,  # noqa: E731
                                                                            generator=g))
    padded = torch.tensor([[0, 0, 1, 1, 0, 0], [0, 1, 1, 1, 1, 1], [0, 0, 0, 1, 0, 0]])
    return [
        Case("B=3, T=6: responses of 2, 5 and 1 tokens, two rows padded", (randn(3), *logps(3, 6),
                                                                           padded, 0.1)),
        Case("B=4, T=8, random prompts and padding, beta 0.5", (randn(4), *logps(4, 8),
                                                                 _response_mask(g, 4, 8), 0.5)),
        Case("beta 0: the score alone", (randn(2), *logps(2, 5), _response_mask(g, 2, 5), 0.0)),
        Case("the policy equals the reference: no penalty",
             (torch.tensor([1.5, -0.5]), torch.full((2, 4), -1.0), torch.full((2, 4), -1.0),
              torch.tensor([[0, 1, 1, 0], [0, 0, 1, 1]]), 0.2)),
    ]


def _kl_rewards(score, logp, logp_ref, mask, beta, *, sign=-1, where="last", masked=True):
    keep = mask.to(logp.dtype)
    rewards = sign * beta * (logp - logp_ref) * (keep if masked else 1)
    T = mask.shape[1]
    positions = torch.arange(T)
    if where == "every":
        return rewards + score[:, None] * keep
    if where == "end":
        index = torch.full_like(score, T - 1, dtype=torch.long)
    elif where == "first":
        index = torch.where(mask != 0, positions, T).amin(-1)
    elif where == "none":
        return rewards
    else:
        index = torch.where(mask != 0, positions, -1).amax(-1)
    bonus = torch.zeros_like(rewards)
    bonus[torch.arange(len(score)), index] = score
    return rewards + bonus


register(Exercise(
    id="rlhf.kl_penalised_rewards",
    title="rewards with the KL leash",
    points=1,
    reference=rlhf.kl_penalised_rewards,
    make_cases=_kl_cases,
    tolerance=Tolerance(rtol=1e-5, atol=1e-6),
    mistakes=(
        Mistake("The leash has the wrong sign: a token the policy likes more than the reference "
                "(logp > logp_ref) must cost reward, so the penalty is -β·(logp − logp_ref). "
                "(Swapping logp and logp_ref flips it the same way.)",
                wrong=lambda *a: _kl_rewards(*a, sign=1)),
        Mistake("The reward model scores the whole answer once, so its score goes to one "
                "token only, the answer's last; adding it at every token counts it as many "
                "times as the answer is long.",
                wrong=lambda *a: _kl_rewards(*a, where="every")),
        Mistake("The score went to the last position of the row, which is padding when the "
                "answer is shorter than the batch: it belongs on the last token whose mask "
                "is 1.",
                wrong=lambda *a: _kl_rewards(*a, where="end")),
        Mistake("The score belongs to the answer's last token, when the answer is complete, "
                "not its first.",
                wrong=lambda *a: _kl_rewards(*a, where="first")),
        Mistake("Prompt and padding positions are not the policy's answer: their reward must "
                "be 0, so multiply the penalty by the mask.",
                wrong=lambda *a: _kl_rewards(*a, masked=False)),
        Mistake("The reward model's score is missing: add it at each row's last response "
                "token.",
                wrong=lambda *a: _kl_rewards(*a, where="none")),
    ),
    hint="Every response token gets −β·(logp − logp_ref), other positions 0, and the score is "
         "added once per row at its last response token.",
))


# --- ppo_clip_loss ---------------------------------------------------------------------------

def _ppo_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    randn = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731

    def batch(B, T, spread):
        old = -2 * torch.rand(B, T, generator=g)
        return old + spread * randn(B, T), old, randn(B, T)

    return [
        Case("B=3, T=6, ratios near 1 (inside the clip range)",
             (*batch(3, 6, 0.05), _response_mask(g, 3, 6))),
        Case("B=4, T=8, ratios far from 1 on both sides", (*batch(4, 8, 0.8),
                                                            _response_mask(g, 4, 8))),
        Case("clip 0.1, positive and negative advantages beyond the range",
             (torch.log(torch.tensor([[0.5, 0.7, 1.0, 1.3, 1.6]])), torch.zeros(1, 5),
              torch.tensor([[1.0, -1.0, 2.0, 1.0, -1.0]]), torch.tensor([[0, 1, 1, 1, 1]])),
             {"clip": 0.1}),
        Case("gradients, ratios far from 1", (*batch(3, 7, 0.6), _response_mask(g, 3, 7)),
             probe="gradients"),
    ]


def _gradient_reaches_constants(case: Case, outcome) -> bool:
    """A symptom on the gradients case: a gradient reached logp_old or the advantages."""
    try:
        _, grads = outcome.value
        return case.probe == "gradients" and any(g is not None for g in grads[1:3])
    except (TypeError, ValueError):
        return False


def _ppo(new, old, adv, mask, clip=0.2, *, low=True, high=True, pick=torch.maximum,
         reverse=False, per_token_mean=True, use_exp=True):
    adv, old = adv.detach(), old.detach()
    log_ratio = old - new if reverse else new - old
    ratio = torch.exp(log_ratio) if use_exp else log_ratio
    clipped = ratio.clamp(1 - clip if low else None, 1 + clip if high else None) \
        if low or high else ratio
    loss = pick(-adv * ratio, -adv * clipped)
    keep = mask.to(new.dtype)
    return (loss * keep).sum() / (keep.sum() if per_token_mean else keep.numel())


register(Exercise(
    id="rlhf.ppo_clip_loss",
    title="PPO's clipped policy loss",
    points=1,
    reference=rlhf.ppo_clip_loss,
    make_cases=_ppo_cases,
    tolerance=Tolerance(rtol=1e-5, atol=1e-6),
    mistakes=(
        Mistake("The ratio is not clipped: without the clip, one batch can push a token's "
                "probability arbitrarily far, which is what PPO exists to prevent.",
                wrong=lambda *a, **k: _ppo(*a, **k, low=False, high=False)),
        Mistake("The clip must bound the ratio on both sides, to [1 − ε, 1 + ε]: a bad "
                "token's probability must not be pushed to 0 in one update either.",
                wrong=lambda *a, **k: _ppo(*a, **k, low=False)),
        Mistake("The clip must bound the ratio on both sides, to [1 − ε, 1 + ε]: a good "
                "token's probability must not grow without limit in one update.",
                wrong=lambda *a, **k: _ppo(*a, **k, high=False)),
        Mistake("Signs: the loss is the negative of PPO's objective, so the objective's "
                "pessimistic min becomes a max of the two negated terms. With min, the "
                "loss takes the optimistic term and the clip never holds anything back.",
                wrong=lambda *a, **k: _ppo(*a, **k, pick=torch.minimum)),
        Mistake("The ratio is new over old, ρ = exp(logp_new − logp_old): it grows as the "
                "updated policy makes a token more likely.",
                wrong=lambda *a, **k: _ppo(*a, **k, reverse=True)),
        Mistake("The ratio compares probabilities, so exponentiate the difference of "
                "log-probabilities: ρ = exp(logp_new − logp_old).",
                wrong=lambda *a, **k: _ppo(*a, **k, use_exp=False)),
        Mistake("Average over the response tokens only: divide by the number of tokens whose "
                "mask is 1, not by every position of the batch.",
                wrong=lambda *a, **k: _ppo(*a, **k, per_token_mean=False)),
        Mistake("The advantages and the old log-probabilities are fixed targets of this "
                "update: detach them, so that no gradient flows into them.",
                symptom=_gradient_reaches_constants),
        NO_GRADIENT,
    ),
    hint="ρ = exp(logp_new − logp_old); per token, the larger of −A·ρ and −A·clip(ρ, 1 − ε, "
         "1 + ε); then the mean over the response tokens.",
))
