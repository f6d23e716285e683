"""Lesson 06's checks reject plausible wrong sampling filters, each with a hint that names the
mistake, and accept differently written correct ones."""

import torch
import torch.nn.functional as F

from catalogue import catalogue_tests

NEG_INF = float("-inf")


# --- generation.apply_temperature ------------------------------------------------------------

def temperature_multiplied(logits, temperature):
    return logits * temperature


def temperature_ignored(logits, temperature):
    return logits.clone()


def temperature_then_softmax(logits, temperature):
    return F.softmax(logits / temperature, dim=-1)


def temperature_log_softmax(logits, temperature):
    return F.log_softmax(logits / temperature, dim=-1)


def temperature_max_subtracted(logits, temperature):
    return (logits - logits.max(dim=-1, keepdim=True).values) / temperature


def temperature_after_softmax(logits, temperature):
    return F.softmax(logits, dim=-1) / temperature


def temperature_between_two_softmaxes(logits, temperature):
    return F.softmax(F.softmax(logits, dim=-1) / temperature, dim=-1)


def temperature_in_place(logits, temperature):
    logits /= temperature
    return logits


def temperature_by_reciprocal(logits, temperature):
    return logits * (1.0 / temperature)


def temperature_with_torch_div(logits, temperature):
    return torch.div(logits, temperature)


# --- generation.top_k_filter -----------------------------------------------------------------

def top_k_keeps_k_plus_one(logits, k):
    ranked = logits.sort(dim=-1, descending=True).values
    kth = ranked[..., min(k, logits.size(-1) - 1)].unsqueeze(-1)  # index k: the (k+1)-th
    return torch.where(logits >= kth, logits, NEG_INF)


def top_k_keeps_k_minus_one(logits, k):
    kth = torch.topk(logits, min(k, logits.size(-1)), dim=-1).values[..., -1:]
    return torch.where(logits > kth, logits, NEG_INF)


def top_k_keeps_the_k_smallest(logits, k):
    kth = torch.sort(logits, dim=-1).values[..., min(k, logits.size(-1)) - 1:min(k, logits.size(-1))]
    return logits.masked_fill(logits > kth, float("-inf"))


def top_k_fills_zero(logits, k):
    kth = torch.topk(logits, min(k, logits.size(-1)), dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, 0.0)


def top_k_fills_large_negative(logits, k):
    kth = torch.topk(logits, min(k, logits.size(-1)), dim=-1).values[..., -1:]
    return torch.where(logits < kth, torch.full_like(logits, -1e9), logits)


def top_k_multiplies_by_mask(logits, k):
    kth = torch.topk(logits, min(k, logits.size(-1)), dim=-1).values[..., -1:]
    return logits * (logits >= kth)


def top_k_values_only(logits, k):
    return torch.topk(logits, min(k, logits.size(-1)), dim=-1).values


def top_k_indices(logits, k):
    return torch.topk(logits, min(k, logits.size(-1)), dim=-1).indices


def top_k_probabilities(logits, k):
    kth = torch.topk(logits, min(k, logits.size(-1)), dim=-1).values[..., -1:]
    return torch.softmax(logits.masked_fill(logits < kth, NEG_INF), dim=-1)


def top_k_without_min(logits, k):
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, NEG_INF)


def top_k_threshold_without_keepdim(logits, k):
    kth = torch.topk(logits, min(k, logits.size(-1)), dim=-1).values[..., -1]
    return logits.masked_fill(logits < kth, NEG_INF)


def top_k_first_row_threshold(logits, k):
    # written for one row: logits[0] is the row when there is only one
    rows = logits.reshape(-1, logits.size(-1))
    kth = torch.topk(rows[0], min(k, logits.size(-1))).values[-1]
    return logits.masked_fill(logits < kth, NEG_INF)


def top_k_whole_batch(logits, k):
    kth = torch.topk(logits.flatten(), min(k, logits.size(-1))).values[-1]
    return logits.masked_fill(logits < kth, NEG_INF)


def top_k_in_place(logits, k):
    kth = torch.topk(logits, min(k, logits.size(-1)), dim=-1).values[..., -1:]
    logits[logits < kth] = NEG_INF
    return logits


def top_k_with_kthvalue(logits, k):
    V = logits.size(-1)
    kth = logits.kthvalue(V - min(k, V) + 1, dim=-1, keepdim=True).values  # no sort
    return logits.masked_fill(logits < kth, NEG_INF)


def top_k_by_scatter(logits, k):
    values, indices = torch.topk(logits, min(k, logits.size(-1)), dim=-1)
    return torch.full_like(logits, NEG_INF).scatter(-1, indices, values)


def top_k_by_sorting(logits, k):
    ranked = torch.sort(logits, dim=-1, descending=True).values
    kth = ranked[..., min(k, logits.size(-1)) - 1 : min(k, logits.size(-1))]
    return torch.where(logits >= kth, logits, torch.tensor(NEG_INF))


# --- generation.top_p_filter -----------------------------------------------------------------

def _sorted_probs(logits):
    ranked, order = torch.sort(logits, dim=-1, descending=True)
    return ranked, order, torch.softmax(ranked, dim=-1)


def top_p_drops_the_crossing_token(logits, p):
    _, order, probs = _sorted_probs(logits)
    drop_sorted = probs.cumsum(dim=-1) > p
    return logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), NEG_INF)


def top_p_unsorted_sum(logits, p):
    probs = torch.softmax(logits, dim=-1)
    return logits.masked_fill(probs.cumsum(dim=-1) - probs >= p, NEG_INF)


def top_p_ascending(logits, p):
    ranked, order = torch.sort(logits, dim=-1)
    probs = torch.softmax(ranked, dim=-1)
    drop_sorted = probs.cumsum(dim=-1) - probs >= p
    return logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), NEG_INF)


def top_p_on_logits(logits, p):
    ranked, order = torch.sort(logits, dim=-1, descending=True)
    drop_sorted = ranked.cumsum(dim=-1) - ranked >= p
    return logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), NEG_INF)


def top_p_each_token_against_p(logits, p):
    return logits.masked_fill(torch.softmax(logits, dim=-1) < p, NEG_INF)


def top_p_left_sorted(logits, p):
    ranked, _, probs = _sorted_probs(logits)
    return ranked.masked_fill(probs.cumsum(dim=-1) - probs >= p, NEG_INF)


def top_p_gathers_back(logits, p):
    _, order, probs = _sorted_probs(logits)
    drop_sorted = probs.cumsum(dim=-1) - probs >= p
    return logits.masked_fill(torch.gather(drop_sorted, -1, order), NEG_INF)


def top_p_fills_zero(logits, p):
    _, order, probs = _sorted_probs(logits)
    drop_sorted = probs.cumsum(dim=-1) - probs >= p
    return logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), 0.0)


def top_p_probabilities(logits, p):
    _, order, probs = _sorted_probs(logits)
    drop_sorted = probs.cumsum(dim=-1) - probs >= p
    return torch.softmax(logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted),
                                            NEG_INF), dim=-1)


def top_p_sums_down_the_batch(logits, p):
    _, order, probs = _sorted_probs(logits)
    drop_sorted = probs.cumsum(dim=0) - probs >= p  # dim=0: right for a single row only
    return logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), NEG_INF)


def top_p_exp_by_hand(logits, p):
    ranked, order = torch.sort(logits, dim=-1, descending=True)
    e = ranked.exp()
    probs = e / e.sum(dim=-1, keepdim=True)
    drop_sorted = probs.cumsum(dim=-1) - probs >= p
    return logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), NEG_INF)


def top_p_in_place(logits, p):
    _, order, probs = _sorted_probs(logits)
    drop_sorted = probs.cumsum(dim=-1) - probs >= p
    logits[drop_sorted.scatter(-1, order, drop_sorted)] = NEG_INF
    return logits


def top_p_shifted_mask(logits, p):
    # the usual library form: mark where the sum passes p, then shift right by one
    _, order, probs = _sorted_probs(logits)
    remove = probs.cumsum(dim=-1) > p
    remove[..., 1:] = remove[..., :-1].clone()
    remove[..., 0] = False
    return logits.masked_fill(remove.scatter(-1, order, remove), NEG_INF)


def top_p_from_the_tail(logits, p):
    # ascending: drop the least likely tokens while together they stay within 1 - p
    ranked, order = torch.sort(logits, dim=-1)
    remove = torch.softmax(ranked, dim=-1).cumsum(dim=-1) <= 1 - p
    remove[..., -1] = False
    return logits.masked_fill(remove.scatter(-1, order, remove), NEG_INF)


def top_p_row_by_row(logits, p):
    rows = logits.reshape(-1, logits.size(-1))
    out = torch.full_like(rows, NEG_INF)
    for r, row in enumerate(rows):
        probs = torch.softmax(row, dim=-1)
        total = 0.0
        for i in torch.argsort(probs, descending=True).tolist():
            out[r, i] = row[i]
            total += probs[i].item()
            if total >= p:
                break
    return out.reshape(logits.shape)


def top_p_inverse_permutation(logits, p):
    _, order, probs = _sorted_probs(logits)
    keep_sorted = probs.cumsum(dim=-1) - probs < p
    keep = torch.gather(keep_sorted, -1, torch.argsort(order, dim=-1))
    return torch.where(keep, logits, NEG_INF)


WRONG = {
    "generation.apply_temperature": {
        temperature_multiplied: ["do not multiply"],
        temperature_ignored: ["logits unchanged"],
        temperature_then_softmax: ["not probabilities"],
        temperature_log_softmax: ["exactly logits / temperature"],
        temperature_max_subtracted: ["exactly logits / temperature"],
        temperature_after_softmax: ["softmax first", "before any softmax"],
        temperature_between_two_softmaxes: ["softmax first", "before any softmax"],
        temperature_in_place: ["overwrites the array you were given"],
    },
    "generation.top_k_filter": {
        top_k_keeps_k_plus_one: ["one token too many"],
        top_k_keeps_k_minus_one: ["one token too few"],
        top_k_keeps_the_k_smallest: ["k smallest"],
        top_k_fills_zero: ["-inf", "not to 0"],
        top_k_fills_large_negative: ["not to 0 or a large negative number"],
        top_k_multiplies_by_mask: ["not to 0"],
        top_k_values_only: ["not just the k largest values"],
        top_k_indices: ["not the indices"],
        top_k_probabilities: ["not probabilities"],
        top_k_without_min: ["larger than the vocabulary"],
        top_k_threshold_without_keepdim: ["keep its last axis"],
        top_k_first_row_threshold: ["distribution of its own"],
        top_k_whole_batch: ["distribution of its own"],
        top_k_in_place: ["overwrites the array you were given"],
    },
    "generation.top_p_filter": {
        top_p_drops_the_crossing_token: ["carries the running sum across p"],
        top_p_unsorted_sum: ["sort each row"],
        top_p_ascending: ["descending=True"],
        top_p_on_logits: ["not of the logits"],
        top_p_each_token_against_p: ["not each token's own"],
        top_p_left_sorted: ["still in sorted order"],
        top_p_gathers_back: ["scatter"],
        top_p_fills_zero: ["not to 0"],
        top_p_probabilities: ["not probabilities"],
        top_p_sums_down_the_batch: ["last axis"],
        top_p_exp_by_hand: ["overflows"],
        top_p_in_place: ["overwrites the array you were given"],
    },
}

CORRECT = {
    "generation.apply_temperature": [temperature_by_reciprocal, temperature_with_torch_div],
    "generation.top_k_filter": [top_k_with_kthvalue, top_k_by_scatter, top_k_by_sorting],
    "generation.top_p_filter": [top_p_shifted_mask, top_p_from_the_tail, top_p_row_by_row,
                                top_p_inverse_permutation],
}


(test_wrong_implementation_is_rejected_with_feedback_naming_the_mistake,
 test_correct_variants_pass, test_the_stub_is_not_attempted) = catalogue_tests(WRONG, CORRECT)
