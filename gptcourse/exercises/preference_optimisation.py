"""Checks for lesson 10, preference optimisation (DPO and GRPO)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gptcourse import preference_optimisation as po
from gptcourse.exercises.compare import Tolerance
from gptcourse.exercises.contract import NO_GRADIENT, Case, Exercise, Mistake, error_says
from gptcourse.exercises.rlhf import not_finite
from gptcourse.exercises.registration import register


# --- dpo_loss --------------------------------------------------------------------------------

def _summed_logprobs(g: torch.Generator, B: int) -> torch.Tensor:
    """(B,) log-probabilities of whole responses: sums of a dozen tokens' log-probabilities."""
    return -12 * torch.rand(B, generator=g) - 2


def _dpo_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    four = lambda B: tuple(_summed_logprobs(g, B) for _ in range(4))  # noqa: E731
    same = _summed_logprobs(g, 3), _summed_logprobs(g, 3)
    return [
        Case("B=5 pairs, beta 0.1", (*four(5), 0.1)),
        Case("B=4 pairs, beta 0.5", (*four(4), 0.5)),
        Case("the policy still equals the reference: the loss is ln 2",
             (same[0], same[1], same[0].clone(), same[1].clone(), 0.1)),
        Case("margins of hundreds of nats, beta 2 (log σ far below -100)",
             (torch.tensor([-10.0, -300.0]), torch.tensor([-300.0, -10.0]),
              torch.tensor([-20.0, -20.0]), torch.tensor([-20.0, -20.0]), 2.0)),
        Case("gradients, beta 0.3", (*four(6), 0.3), probe="gradients"),
    ]


def _dpo(pc, pr, rc, rr, beta, *, swap=False, ref=True, beta_inside=True, detach=True,
         reduce="mean"):
    if detach:
        rc, rr = rc.detach(), rr.detach()
    chosen, rejected = (pc - rc, pr - rr) if ref else (pc, pr)
    margin = rejected - chosen if swap else chosen - rejected
    losses = -F.logsigmoid(beta * margin) if beta_inside else -beta * F.logsigmoid(margin)
    return losses.sum() if reduce == "sum" else losses.mean()


register(Exercise(
    id="preference_optimisation.dpo_loss",
    title="the DPO loss",
    points=1,
    reference=po.dpo_loss,
    make_cases=_dpo_cases,
    tolerance=Tolerance(rtol=1e-5, atol=1e-6),
    mistakes=(
        Mistake("Chosen and rejected are swapped: your loss falls when the policy prefers the "
                "answer people rejected.",
                wrong=lambda *a: _dpo(*a, swap=True)),
        Mistake("The reference model's log-probabilities are missing: DPO rewards the "
                "policy for moving relative to the reference, ℓθ − ℓref, not for its raw "
                "log-probabilities (a long answer has a low log-probability under any "
                "model).",
                wrong=lambda *a: _dpo(*a, ref=False)),
        Mistake("β scales the margin inside the sigmoid: it sets how sharply the implicit "
                "rewards separate; multiplying the loss by β afterwards only rescales the "
                "learning rate.",
                wrong=lambda *a: _dpo(*a, beta_inside=False)),
        Mistake("The reference model is frozen: no gradient may flow into its "
                "log-probabilities (detach them), or training would move the yardstick too.",
                wrong=lambda *a: _dpo(*a, detach=False)),
        Mistake("Take the mean over the pairs, not the sum.",
                wrong=lambda *a: _dpo(*a, reduce="sum")),
        Mistake("log(sigmoid(x)) is -inf once sigmoid rounds to 0 for a large negative margin: "
                "compute log σ in one stable step (F.logsigmoid, or -softplus(-x)).",
                symptom=not_finite),
        NO_GRADIENT,
    ),
    hint="The implicit reward of an answer is β·(ℓθ − ℓref); the loss is the Bradley–Terry "
         "loss of the chosen answer's implicit reward against the rejected one's.",
))


# --- group_advantages ------------------------------------------------------------------------

def _group_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    passes = (torch.rand(4, 6, generator=g) < 0.5).float()
    passes[1] = 1.0  # a group where every answer is right: no spread, no signal
    return [
        Case("G=3 questions, K=4 answers each", (torch.randn(3, 4, generator=g),)),
        Case("rewards of 0 or 1 (exact answers), one group all right",
             (passes,)),
        Case("K=2, groups on very different scales", (torch.tensor([[0.0, 1.0], [100.0, 300.0],
                                                                     [-5.0, -4.0]]),)),
        Case("eps=0.5", (torch.randn(2, 5, generator=g),), {"eps": 0.5}),
        Case("a single group of 8", (torch.randn(1, 8, generator=g),)),
    ]


def _advantages(r, eps=1e-4, *, dim=1, centre=True, unbiased=True, eps_in_sqrt=False,
                use_eps=True):
    mean = r.mean(dim=dim, keepdim=True)
    var = r.var(dim=dim, keepdim=True, unbiased=unbiased)
    scale = (var + eps).sqrt() if eps_in_sqrt else var.sqrt() + (eps if use_eps else 0)
    return ((r - mean) if centre else r) / scale


def _whole_batch(r, eps=1e-4):
    return (r - r.mean()) / (r.std() + eps)


register(Exercise(
    id="preference_optimisation.group_advantages",
    title="group-relative advantages",
    points=1,
    reference=po.group_advantages,
    make_cases=_group_cases,
    tolerance=Tolerance(rtol=1e-5, atol=1e-6),
    mistakes=(
        Mistake("Normalise within each group (each row), not over the whole batch: an answer "
                "is good or bad compared with the other answers to the same question, since "
                "some questions are simply harder.",
                wrong=_whole_batch),
        Mistake("Normalise along the answers of a group, the last axis (one row per "
                "question), not down the questions.",
                wrong=lambda r, eps=1e-4: _advantages(r, eps, dim=0)),
        Mistake("Subtract the group's mean first: an advantage says how much better than its "
                "group an answer did, so a group's advantages add up to 0.",
                wrong=lambda r, eps=1e-4: _advantages(r, eps, centre=False)),
        Mistake("When every answer in a group scores the same, the standard deviation is 0 "
                "and the division gives NaN: add eps to the standard deviation, so that such "
                "a group's advantages are 0.",
                wrong=lambda r, eps=1e-4: _advantages(r, eps, use_eps=False)),
        Mistake("The standard deviation here is the unbiased one, dividing by K − 1 (torch's "
                "default), as in TRL's GRPO trainer.",
                wrong=lambda r, eps=1e-4: _advantages(r, eps, unbiased=False)),
        Mistake("eps is added to the standard deviation, outside the square root.",
                wrong=lambda r, eps=1e-4: _advantages(r, eps, eps_in_sqrt=True)),
        Mistake("Every group needs at least 2 answers and finite rewards; these cases have "
                "both.", symptom=error_says("at least 2", "K >= 2")),
    ),
    hint="Per row: subtract the row's mean, divide by the row's standard deviation plus eps.",
))


# --- kl_k3 -----------------------------------------------------------------------------------

def _k3_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    logp = lambda *shape: -3 * torch.rand(*shape, generator=g)  # noqa: E731
    near = logp(2, 6)
    return [
        Case("B=3, T=5, models that differ", (logp(3, 5), logp(3, 5))),
        Case("the policy far more confident than the reference",
             (torch.tensor([[-0.05, -0.1, -2.0]]), torch.tensor([[-3.0, -2.5, -0.1]]))),
        Case("identical models: 0 everywhere", (near, near.clone())),
        Case("models that nearly agree", (near, near + 0.05 * torch.randn(2, 6, generator=g))),
    ]


def _k_estimate(logp, logp_ref, *, reverse=False, kind="k3"):
    x = (logp - logp_ref) if reverse else (logp_ref - logp)
    if kind == "k1":
        return logp - logp_ref
    if kind == "k2":
        return 0.5 * x ** 2
    if kind == "no -1":
        return torch.exp(x) - x
    return torch.exp(x) - x - 1


register(Exercise(
    id="preference_optimisation.kl_k3",
    title="the k3 estimate of the KL",
    points=1,
    reference=po.kl_k3,
    make_cases=_k3_cases,
    tolerance=Tolerance(rtol=1e-5, atol=1e-6),
    mistakes=(
        Mistake("The log-ratio is reversed: k3 uses x = logp_ref − logp, the log of "
                "p_ref / p for a token sampled from the policy.",
                wrong=lambda a, b: _k_estimate(a, b, reverse=True)),
        Mistake("That is k1, the plain log-ratio logp − logp_ref: unbiased too, but a single "
                "token's value can be negative, although a KL never is. k3 adds what makes "
                "every term ≥ 0.",
                wrong=lambda a, b: _k_estimate(a, b, kind="k1")),
        Mistake("That is k2, ½·(log-ratio)²: never negative, but biased. k3 is "
                "e^x − x − 1 with x = logp_ref − logp.",
                wrong=lambda a, b: _k_estimate(a, b, kind="k2")),
        Mistake("The −1 is missing: e^x − x equals 1, not 0, when the two models agree.",
                wrong=lambda a, b: _k_estimate(a, b, kind="no -1")),
    ),
    hint="With x = logp_ref − logp per token, k3 = e^x − x − 1 (0 when the models agree).",
))
