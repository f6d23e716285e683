"""Checks for lesson 06, generation.

The filters' cases are built so that every right way of writing them gives the same answer:
no ties at the k-th place for top-k (the reference keeps such ties, a scatter of k indices
keeps exactly k), and no running sum of probabilities within 2e-3 of p for top-p (where the
order of a float32 sum, or > against >=, could decide). Ties elsewhere, -inf entries and
batches of rows (..., V) are covered.
"""

from __future__ import annotations

import torch

from gptcourse import generation
from gptcourse.exercises.contract import Case, Exercise, Mistake, Outcome, error_says
from gptcourse.exercises.modules import ModelExercise
from gptcourse.exercises.registration import register

INF = float("inf")


def _randn(g: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=g) * scale


def _logits_of(probs: list[float], shift: float = 1.0) -> torch.Tensor:
    """Logits (V,) whose softmax is `probs` (which sum to 1). The shift keeps them from being
    log-probabilities, with which one mistake below would get away."""
    return torch.tensor(probs, dtype=torch.float64).log().float() + shift


# Shared by the two filters: what they return is logits of the input's shape, -inf where cut.

RETURNS_PROBABILITIES = ("Return logits, with -inf for the tokens you drop, not probabilities: "
                         "the softmax comes after the filters, when the next token is drawn.")


def _returns_probabilities(reference):
    return Mistake(RETURNS_PROBABILITIES, wrong=lambda logits, *a: torch.softmax(
        reference(logits, *a), dim=-1))


def _fills_with_a_number(reference):
    """Keeps the right logits but puts one finite number (0, -1e9, ...) where -inf belongs."""
    def symptom(case: Case, outcome: Outcome) -> bool:
        got = outcome.value
        if outcome.error is not None or not isinstance(got, torch.Tensor):
            return False
        expected, _, _ = case.call(reference)
        if got.shape != expected.shape or not got.is_floating_point():
            return False
        dropped = torch.isneginf(expected)
        filled = got[dropped & torch.isfinite(case.args[0])]
        return filled.numel() > 0 and bool(torch.isfinite(filled).all()) and \
            bool((filled == filled[0]).all()) and torch.equal(got[~dropped], expected[~dropped])

    return Mistake("Set the tokens you drop to -inf (float('-inf')), not to 0 or a large "
                   "negative number: exp(-inf) is exactly 0, so only -inf takes away all of a "
                   "token's probability, whatever the other logits are (a logit of 0 can even "
                   "be among the largest).", symptom=symptom)


# --- apply_temperature -----------------------------------------------------------------------

def _temperature_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    return [
        Case("one row, temperature 0.5 (sharper)", (torch.tensor([2.0, 1.0, 0.1, -1.0]), 0.5)),
        Case("a batch (2, 3, 6), temperature 2 (flatter)", (_randn(g, 2, 3, 6, scale=3.0), 2.0)),
        Case("a small temperature, 0.1, on large logits", (_randn(g, 4, 8, scale=50.0), 0.1)),
        Case("temperature 1 changes nothing", (_randn(g, 3, 5), 1.0)),
        Case("logits already cut to -inf", (torch.tensor([[1.0, -INF, 0.5, -INF]]), 0.7)),
        Case("a whole-number temperature, 3", (_randn(g, 2, 16, scale=2.0), 3)),
    ]


KEEP_THE_LOGITS = ("Return exactly logits / temperature. Normalising them (log_softmax, or "
                   "subtracting the largest) leaves the distribution the same but changes the "
                   "numbers, and the filters after this step expect the plain scaled logits.")

register(Exercise(
    id="generation.apply_temperature",
    title="temperature",
    points=1,
    reference=generation.apply_temperature,
    make_cases=_temperature_cases,
    mistakes=(
        Mistake("Divide by the temperature, do not multiply: a temperature below 1 must "
                "stretch the gaps between logits (sharper), one above 1 shrink them (flatter).",
                wrong=lambda logits, t: logits * t),
        Mistake("Your result is the logits unchanged: divide them by the temperature.",
                wrong=lambda logits, t: logits),
        Mistake("Return the scaled logits, not probabilities: the softmax comes later, after "
                "the filters, when the next token is drawn.",
                wrong=lambda logits, t: torch.softmax(logits / t, dim=-1)),
        Mistake("You took the softmax first and then applied the temperature to the "
                "probabilities. Dividing probabilities only rescales them (they no longer sum "
                "to 1) and leaves the distribution's shape as it was; the temperature must "
                "reshape the logits, before any softmax.",
                wrong=lambda logits, t: torch.softmax(logits, dim=-1) / t),
        Mistake("You took the softmax first and then applied the temperature to the "
                "probabilities, so no softmax is left to act on the rescaled numbers; the "
                "temperature must reshape the logits, before any softmax.",
                wrong=lambda logits, t: torch.softmax(torch.softmax(logits, dim=-1) / t,
                                                      dim=-1)),
        Mistake(KEEP_THE_LOGITS, wrong=lambda logits, t: torch.log_softmax(logits / t, dim=-1)),
        Mistake(KEEP_THE_LOGITS,
                wrong=lambda logits, t: (logits - logits.amax(dim=-1, keepdim=True)) / t),
    ),
    hint="Temperature acts on the logits, before any softmax: below 1 it widens the gaps "
         "between them (a sharper distribution), above 1 it narrows them (a flatter one). "
         "Return the rescaled logits, of the same shape.",
))


# --- top_k_filter ----------------------------------------------------------------------------

def _top_k_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    return [
        Case("one row of 8 logits, k = 3",
             (torch.tensor([1.2, -0.5, 3.1, 0.0, 2.2, -1.7, 0.9, 2.9]), 3)),
        Case("a batch (2, 3, 10), k = 4", (_randn(g, 2, 3, 10, scale=2.0), 4)),
        Case("k = 1 keeps only the best (4 rows, V = 6)", (_randn(g, 4, 6), 1)),
        Case("negative logits (3 rows, V = 9), k = 2", (_randn(g, 3, 9) - 5.0, 2)),
        Case("k = V keeps everything", (_randn(g, 3, 7), 7)),
        Case("k larger than the vocabulary (k = 10, V = 6) keeps everything",
             (_randn(g, 2, 6), 10)),
        Case("ties away from the k-th place, k = 2",
             (torch.tensor([[2.0, 2.0, 0.5, -1.0, -1.0], [0.0, 3.0, 1.0, 1.0, 3.0]]), 2)),
        Case("rows already cut to -inf by another filter, k = 4",
             (torch.tensor([[-INF, 1.5, -INF, 0.3, 2.0, -INF],
                            [0.2, -INF, 1.1, -0.4, 0.9, 0.0]]), 4)),
    ]


def _top_k(logits, k, *, threshold_of):
    """top_k_filter with the k-th largest value taken from `threshold_of(logits)` instead of
    each row's own (a mistake)."""
    kth = torch.topk(threshold_of(logits), min(k, logits.size(-1)), dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, -INF)


def _top_k_smallest(logits, k):
    """The k smallest logits of each row kept, the rest set to -inf (a mistake)."""
    kth = torch.topk(logits, min(k, logits.size(-1)), dim=-1, largest=False).values[..., -1:]
    return logits.masked_fill(logits > kth, -INF)


def _larger_than_vocabulary(case: Case, outcome: Outcome) -> bool:
    return error_says("out of range", "out of bounds")(case, outcome) and \
        case.args[1] > case.args[0].size(-1)


def _every_row(a_row_of):
    return Mistake("Each row is a distribution of its own: find the k largest of every row "
                   "(along the last axis, dim=-1) and keep those, row by row.",
                   wrong=lambda logits, k: _top_k(
                       logits, k, threshold_of=lambda x: a_row_of(x.reshape(-1, x.size(-1)))))


register(Exercise(
    id="generation.top_k_filter",
    title="top-k filtering",
    points=1,
    reference=generation.top_k_filter,
    make_cases=_top_k_cases,
    mistakes=(
        Mistake("You keep one token too many: the k-th largest is at index k - 1 of a row "
                "sorted from the largest (torch.topk(logits, k).values[..., -1:]), and only "
                "values below it go.",
                wrong=lambda logits, k: generation.top_k_filter(logits, k + 1)),
        Mistake("You keep one token too few: the k-th largest itself stays. Drop only the "
                "values strictly below it (<, not <=).",
                wrong=lambda logits, k: logits.masked_fill(
                    logits <= torch.topk(logits, min(k, logits.size(-1))).values[..., -1:], -INF)),
        Mistake("You kept the k smallest logits, the least likely tokens; top-k keeps the k "
                "largest. Check which end of each row your threshold comes from: a row sorted "
                "in ascending order has its largest values at the end, and "
                "torch.topk(..., largest=False) picks the smallest.",
                wrong=lambda logits, k: _top_k_smallest(logits, k)),
        _fills_with_a_number(generation.top_k_filter),
        Mistake("Return a tensor of the same shape as logits, (..., V), with every token in its "
                "place, not just the k largest values: the next step draws a token id from the "
                "whole row.",
                wrong=lambda logits, k: torch.topk(logits, min(k, logits.size(-1))).values),
        Mistake("Return the logits, of the same shape as the input, with the others set to "
                "-inf, not the indices of the k largest.",
                wrong=lambda logits, k: torch.topk(logits, min(k, logits.size(-1))).indices),
        _returns_probabilities(generation.top_k_filter),
        Mistake("k may be larger than the vocabulary size V: then every token is kept. Use "
                "min(k, V) tokens (V = logits.size(-1)).", symptom=_larger_than_vocabulary),
        Mistake("The k-th largest value of each row has one number per row: keep its last axis "
                "(values[..., -1:] or keepdim=True) so that it lines up with the rows of "
                "logits when you compare.", symptom=error_says("must match the size")),
        _every_row(lambda rows: rows[:1]),  # the first row's k-th value for every row
        _every_row(lambda rows: rows.reshape(1, -1)),  # the k largest of the whole batch
    ),
    hint="Keep each row's k largest logits where they are and set all the others to -inf: "
         "find the k-th largest value of every row, then drop whatever lies below it.",
))


# --- top_p_filter ----------------------------------------------------------------------------

def _p_away_from_sums(logits: torch.Tensor, wanted: float, margin: float = 2e-3) -> float:
    """The nearest of wanted, wanted ± 0.01, ... that no running sum of a row's sorted
    probabilities comes within `margin` of: there, every right way of summing agrees."""
    sums = torch.softmax(logits.double(), dim=-1).sort(dim=-1, descending=True).values \
        .cumsum(dim=-1)
    for step in range(100):
        for p in (wanted + 0.01 * step, wanted - 0.01 * step):
            if 0 < p < 1 and (sums - p).abs().min() > margin:
                return round(p, 2)
    raise AssertionError("no p far from every running sum")  # never with the shapes below


def _top_p_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    batch = _randn(g, 2, 3, 12, scale=1.5)
    large = _randn(g, 2, 8, scale=3.0) + 100.0
    return [
        Case("one row of 6 tokens, p = 0.6",
             (_logits_of([0.05, 0.38, 0.10, 0.30, 0.15, 0.02]), 0.6)),
        Case("the most likely token alone reaches p (p = 0.3)",
             (_logits_of([0.10, 0.55, 0.20, 0.15]), 0.3)),
        Case("a batch (2, 3, 12)", (batch, _p_away_from_sums(batch, 0.7))),
        Case("tied tokens that are both kept, or both dropped, p = 0.5",
             (torch.tensor([[1.0, 1.0, 0.0, -1.0], [2.0, 0.0, 0.0, 0.5]]), 0.5)),
        Case("rows already cut to -inf by top-k, p = 0.8",
             (torch.tensor([[-INF, 2.0, 0.5, -INF, 1.0, -INF],
                            [0.3, -INF, 1.2, 0.0, -INF, -0.6]]), 0.8)),
        Case("large logits (about 100)", (large, _p_away_from_sums(large, 0.8))),
        Case("p = 1 keeps every token", (_randn(g, 3, 5, scale=0.5), 1.0)),
    ]


def _top_p(logits, p, *, sort=True, descending=True, probabilities=True, keep_crossing=True,
           sum_dim=-1, unsort="scatter", threshold=False):
    """top_p_filter written with one of a learner's mistakes switched on."""
    V = logits.size(-1)
    if sort:
        ranked, order = torch.sort(logits, dim=-1, descending=descending)
    else:
        ranked, order = logits, torch.arange(V).expand(logits.shape)
    scores = torch.softmax(ranked, dim=-1) if probabilities else ranked
    running = scores.cumsum(dim=sum_dim)
    if threshold:
        drop = scores < p  # each token's own probability against p
    elif keep_crossing:
        drop = running - scores >= p
    else:
        drop = running > p
    if unsort == "scatter":
        drop = drop.scatter(-1, order, drop)
    elif unsort == "gather":
        drop = drop.gather(-1, order)
    else:  # left in sorted order
        return ranked.masked_fill(drop, -INF)
    return logits.masked_fill(drop, -INF)


def _large_logits(case: Case, outcome: Outcome) -> bool:
    """Only this case is wrong (the judge stops at the first wrong one): exp overflowed."""
    return bool((case.args[0] > 88).any())  # exp(88.8) is more than float32 holds


def _wrong(hint: str, **mistake) -> Mistake:
    return Mistake(hint, wrong=lambda logits, p: _top_p(logits, p, **mistake))


register(Exercise(
    id="generation.top_p_filter",
    title="top-p (nucleus) filtering",
    points=1,
    reference=generation.top_p_filter,
    make_cases=_top_p_cases,
    mistakes=(
        Mistake("exp of a logit above 88 overflows float32 to inf, and inf / inf is nan (and "
                "every comparison with nan is False). Let torch.softmax make the "
                "probabilities: it subtracts the largest logit first.", symptom=_large_logits),
        _wrong("Keep the token that carries the running sum across p: the kept tokens must add "
               "up to at least p. A token goes only when the tokens ranked above it already "
               "reach p, so compare the sum *before* each token (cumsum - probs) with p.",
               keep_crossing=False),
        _wrong("Add the probabilities up from the most likely token down: sort each row "
               "(descending=True) before the running sum, then put every decision back in its "
               "token's place.", sort=False),
        _wrong("Each row is a distribution of its own: take the running sum along the "
               "vocabulary, the last axis (cumsum(dim=-1)), not down the batch.", sum_dim=0),
        _wrong("Sort from the largest probability down (descending=True): the nucleus is made "
               "of the most likely tokens.", descending=False),
        _wrong("p is a probability: compare it with a running sum of probabilities, "
               "softmax(logits), not of the logits themselves.", probabilities=False),
        _wrong("p limits the sum of the kept tokens' probabilities, not each token's own "
               "probability: keep the most likely tokens until together they reach p.",
               threshold=True),
        _wrong("Your result is still in sorted order: put each token back in its place in the "
               "vocabulary, for example mask.scatter(-1, order, sorted_mask).", unsort=None),
        _wrong("To undo the sort, scatter: entry i of a sorted row belongs at position "
               "order[i], so mask.scatter(-1, order, sorted_mask). gather with the same "
               "order shuffles the row a second time instead of undoing the first.",
               unsort="gather"),
        _fills_with_a_number(generation.top_p_filter),
        _returns_probabilities(generation.top_p_filter),
    ),
    hint="Sort each row from the largest down, probs = softmax; drop a token when "
         "cumsum(probs) - probs >= p; scatter that back to vocabulary order; fill with -inf.",
))


# --- generate: the learner's loop ---------------------------------------------------------------

V_TEST, BLOCK_TEST = 10, 4  # a short context, so that every case runs past it


def _table(seed: int) -> torch.Tensor:
    """The test model's logits, (V, block_size, V): spread widely enough that sampling at
    temperature 1 still varies, with no ties for top-k."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(V_TEST, BLOCK_TEST, V_TEST, generator=g) * 2


def _generate_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    table = _table(seed)

    def ids(B: int, T: int) -> torch.Tensor:
        return torch.randint(0, V_TEST, (B, T), generator=g)

    def case(label, idx, n, **settings):
        return Case(label, (table, idx, n), {"block_size": BLOCK_TEST, **settings},
                    probe="language_model")

    return [
        case("greedy (temperature 0), 2 prompts of 2 tokens, 7 new: past the context of 4",
             ids(2, 2), 7, temperature=0),
        case("sampling at temperature 1", ids(3, 1), 8, generator=seed),
        case("temperature 0.5 and top_k = 3, a batch of 3", ids(3, 3), 6, temperature=0.5,
             top_k=3, generator=seed + 1),
        case("temperature 2 (flatter)", ids(2, 2), 6, temperature=2.0, generator=seed + 2),
        case("a prompt longer than the context: keep its last block_size tokens", ids(2, 6), 3,
             temperature=0),
        case("no new tokens: the prompt itself", ids(1, 3), 0, temperature=0),
    ]


def _loop(model, idx, max_new_tokens, temperature=1.0, top_k=None, generator=None, *,
          crop=lambda idx, n: idx[:, -n:], position=-1, draw=None):
    """The loop with one thing done differently, for predicting learners' mistakes."""
    for _ in range(max_new_tokens):
        logits, _ = model(crop(idx, model.config.block_size))
        logits = logits[:, position]
        if temperature == 0:
            new = logits.argmax(dim=-1, keepdim=True)
        elif draw is not None:
            new = draw(logits, temperature, top_k, generator)
        else:
            new = generation.next_token(logits, temperature, top_k, None, generator)
        idx = torch.cat([idx, new], dim=1)
    return idx


def _temperature_after_softmax(logits, temperature, top_k, generator):
    if top_k is not None:
        logits = generation.top_k_filter(logits, top_k)
    probs = torch.softmax(logits, dim=-1) / temperature
    return torch.multinomial(probs, 1, generator=generator)


def _top_k_over_the_batch(logits, temperature, top_k, generator):
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits.flatten(), top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)


def _wrong_loop(**mistake):
    return lambda model, idx, max_new_tokens, temperature=1.0, top_k=None, generator=None: \
        _loop(model, idx, max_new_tokens, temperature, top_k, generator, **mistake)


def _a_row_lost_every_token(case: Case, outcome: Outcome) -> bool:
    """A top-k case whose draw failed on probabilities of nan: some row kept no token, as
    when the k largest are taken over the whole batch."""
    return case.kwargs.get("top_k") is not None and case.args[1].size(0) > 1 and \
        error_says("probability tensor contains")(case, outcome)


def _generator_ignored(case: Case, outcome: Outcome) -> bool:
    report = outcome.value if isinstance(outcome.value, dict) else {}
    return "generator" in case.kwargs and \
        report.get("the same ids again from the same seed") is False


register(ModelExercise(
    id="generation.generate",
    title="the generation loop",
    points=2,
    reference=generation.autoregressive_loop,
    make_cases=_generate_cases,
    mistakes=(
        Mistake("The model's context holds block_size tokens: feed it only the last ones, "
                "idx[:, -model.config.block_size:], at every step.",
                symptom=error_says("do not fit in the context")),
        Mistake("Crop to the *last* block_size tokens, idx[:, -block_size:]: the newest "
                "tokens are the ones that decide what comes next.",
                wrong=_wrong_loop(crop=lambda idx, n: idx[:, :n])),
        Mistake("The next token is predicted at the last position, logits[:, -1, :]; "
                "logits[:, 0] is the prediction after the first token only.",
                wrong=_wrong_loop(position=0)),
        Mistake("Divide the logits by the temperature before the softmax: dividing the "
                "probabilities afterwards changes nothing once torch.multinomial normalises "
                "them.", wrong=_wrong_loop(draw=_temperature_after_softmax)),
        *(Mistake("Each prompt's next token is chosen from its own row: keep the top k of "
                  "every row (dim=-1), not of the whole batch.", **how)
          for how in ({"wrong": _wrong_loop(draw=_top_k_over_the_batch)},
                      {"symptom": _a_row_lost_every_token})),
        Mistake("Pass the generator to the draw, torch.multinomial(probs, 1, "
                "generator=generator): the same seed must give the same text, and without it "
                "every run differs.", symptom=_generator_ignored),
        Mistake("Temperature 0 means greedy: take logits.argmax(dim=-1, keepdim=True) instead "
                "of dividing by 0.", symptom=lambda case, outcome: case.kwargs.get(
                    "temperature") == 0 and outcome.error is not None),
    ),
    hint="for each new token: logits, _ = model(idx[:, -block_size:]); take logits[:, -1]; "
         "argmax at temperature 0, else divide by the temperature, top-k filter, softmax, "
         "torch.multinomial(probs, 1, generator=generator); torch.cat onto idx.",
))
