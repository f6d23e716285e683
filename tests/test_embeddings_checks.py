"""Lesson 02 checks: plausible wrong embeddings, cosines and positional encodings are rejected,
each with a hint that names the mistake; differently written correct ones pass."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from gptcourse import check


def result_of(exercise, fn, seed=0):
    return check(f"embeddings.{exercise}", fn, seed=seed)


# --- embed: wrong ----------------------------------------------------------------------------

def embed_transposed(ids, weight):
    return weight.T[ids]


def embed_columns(ids, weight):
    return weight[:, ids].permute(1, 2, 0)


def one_hot_guessing_classes(ids, weight):
    return F.one_hot(ids).float() @ weight


def one_hot_wrong_orientation(ids, weight):
    return F.one_hot(ids, weight.size(0)).float() @ weight.T


def one_hot_left_as_integers(ids, weight):
    return F.one_hot(ids, weight.size(0)) @ weight


def one_hot_always_float32(ids, weight):
    return F.one_hot(ids, weight.size(0)).float() @ weight.float()


def embed_detached(ids, weight):
    return weight.detach()[ids]


def embed_rebuilt_from_numpy(ids, weight):
    return torch.from_numpy(weight.detach().numpy()[ids.numpy()])


def embed_forgets_return(ids, weight):
    weight[ids]


EMBED_WRONG = {
    embed_transposed: ["ROW per token", "transposed"],
    embed_columns: ["ROW per token", "transposed"],
    one_hot_guessing_classes: ["guesses the number of classes", "num_classes"],
    one_hot_wrong_orientation: ["one_hot @ weight", "not transposed"],
    one_hot_left_as_integers: ["one dtype on both sides"],
    one_hot_always_float32: ["dtype"],
    embed_detached: ["gradient does not flow"],
    embed_rebuilt_from_numpy: ["gradient does not flow"],
    embed_forgets_return: ["return"],
}


# --- cosine_similarity: wrong ----------------------------------------------------------------

def cosine_normalising_a_only(a, b):
    return (a * b).sum(-1) / a.norm(dim=-1)


def cosine_normalising_b_only(a, b):
    return (a * b).sum(-1) / b.norm(dim=-1)


def plain_dot_product(a, b):
    return (a * b).sum(-1)


def cosine_without_eps(a, b):
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))


def cosine_with_eps_added_to_the_product(a, b):
    return (a * b).sum(-1) / (torch.linalg.vector_norm(a, dim=-1)
                              * torch.linalg.vector_norm(b, dim=-1) + 1e-8)


def cosine_clamping_the_product_of_lengths(a, b):
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(1e-8)


def cosine_with_eps_inside_the_root(a, b):
    lengths = torch.sqrt((a * a).sum(-1) + 1e-8) * torch.sqrt((b * b).sum(-1) + 1e-8)
    return (a * b).sum(-1) / lengths


def cosine_with_eps_inside_one_root(a, b):
    return (a * b).sum(-1) / torch.sqrt((a * a).sum(-1) * (b * b).sum(-1) + 1e-12)


def cosine_with_squared_lengths(a, b):
    return (a * b).sum(-1) / ((a ** 2).sum(-1) * (b ** 2).sum(-1)).clamp_min(1e-8)


def cosine_distance(a, b):
    return 1 - F.cosine_similarity(a, b, dim=-1)


def cosine_forgetting_keepdim(a, b):
    a = a / a.norm(dim=-1).clamp_min(1e-8)
    b = b / b.norm(dim=-1).clamp_min(1e-8)
    return (a * b).sum(-1)


def cosine_keeping_the_last_axis(a, b):
    dot = (a * b).sum(-1, keepdim=True)
    return dot / (a.norm(dim=-1, keepdim=True) * b.norm(dim=-1, keepdim=True)).clamp_min(1e-8)


def cosine_over_the_first_axis(a, b):
    return (a * b).sum(0) / (a.norm(dim=0) * b.norm(dim=0)).clamp_min(1e-8)


def cosine_with_torch_dot(a, b):
    return torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(1e-8)


def functional_cosine_default_dim(a, b):
    return F.cosine_similarity(a, b)


def cosine_via_item(a, b):
    return torch.tensor(F.cosine_similarity(a, b, dim=-1).tolist(), dtype=a.dtype)


COSINE_WRONG = {
    cosine_normalising_a_only: ["BOTH lengths"],
    cosine_normalising_b_only: ["BOTH lengths"],
    plain_dot_product: ["plain dot product"],
    cosine_without_eps: ["zero vector", "eps"],
    cosine_with_squared_lengths: ["square root"],
    cosine_clamping_the_product_of_lengths: ["product of the lengths", "each length"],
    cosine_with_eps_added_to_the_product: ["product of the lengths", "each length"],
    cosine_with_eps_inside_the_root: ["eps went inside the square root"],
    cosine_with_eps_inside_one_root: ["eps went inside the square root"],
    cosine_distance: ["cosine distance"],
    cosine_forgetting_keepdim: ["keepdim=True"],
    cosine_keeping_the_last_axis: ["keepdim=False"],
    cosine_over_the_first_axis: ["last axis"],
    cosine_with_torch_dot: ["torch.dot"],
    functional_cosine_default_dim: ["dim=-1"],
    cosine_via_item: ["gradient does not flow"],
}


# --- sinusoidal_positions: wrong -------------------------------------------------------------

def positions(T, C, *, start=0, swap=False, i_exponent=lambda i, C: 2 * i / C, base=10000.0,
              halves=False, dtype=torch.float32):
    """One plausible way of writing it, with a switch for each slip."""
    pos = torch.arange(start, start + T, dtype=torch.float32).unsqueeze(1)
    i = torch.arange(C // 2, dtype=torch.float32)
    angle = pos / base ** i_exponent(i, C)
    first, second = (torch.cos, torch.sin) if swap else (torch.sin, torch.cos)
    if halves:
        return torch.cat([first(angle), second(angle)], dim=1).to(dtype)
    pe = torch.zeros(T, C, dtype=dtype)
    pe[:, 0::2] = first(angle)
    pe[:, 1::2] = second(angle)
    return pe


def sin_cos_swapped(T, C):
    return positions(T, C, swap=True)


def positions_from_1(T, C):
    return positions(T, C, start=1)


def exponent_i_not_2i(T, C):
    return positions(T, C, i_exponent=lambda i, C: i / C)


def exponent_doubled_twice(T, C):
    # torch.arange(0, C, 2) already gives 2i; doubling it again
    two_i = torch.arange(0, C, 2, dtype=torch.float32)
    angle = torch.arange(T, dtype=torch.float32)[:, None] / 10000 ** (2 * two_i / C)
    pe = torch.zeros(T, C)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(angle), torch.cos(angle)
    return pe


def exponent_over_c_minus_1(T, C):
    return positions(T, C, i_exponent=lambda i, C: 2 * i / (C - 1))


def frequency_inverted(T, C):
    return positions(T, C, i_exponent=lambda i, C: -2 * i / C)


def base_1000(T, C):
    return positions(T, C, base=1000.0)


def sines_then_cosines(T, C):
    return positions(T, C, halves=True)


def transposed_table(T, C):
    return positions(T, C).T


def float64_table(T, C):
    return positions(T, C, dtype=torch.float64)


def numpy_table(T, C):
    return positions(T, C).numpy()


SINUSOIDAL_WRONG = {
    sin_cos_swapped: ["sin and cos are swapped"],
    positions_from_1: ["Positions count from 0"],
    exponent_i_not_2i: ["frequency exponent is off"],
    exponent_doubled_twice: ["frequency exponent is off"],
    exponent_over_c_minus_1: ["frequency exponent is off"],
    frequency_inverted: ["DIVIDED"],
    base_1000: ["10000"],
    sines_then_cosines: ["interleave"],
    transposed_table: ["transposed"],
    float64_table: ["float32"],
    numpy_table: ["torch tensor"],
}

WRONG = [("embed", fn, words) for fn, words in EMBED_WRONG.items()] + \
        [("cosine_similarity", fn, words) for fn, words in COSINE_WRONG.items()] + \
        [("sinusoidal_positions", fn, words) for fn, words in SINUSOIDAL_WRONG.items()]


@pytest.mark.parametrize("exercise, wrong, words", WRONG, ids=lambda x: getattr(x, "__name__", ""))
def test_wrong_implementation_is_rejected_with_a_hint_that_names_the_mistake(exercise, wrong,
                                                                             words):
    result = result_of(exercise, wrong)
    assert result.status == "failed" and result.score == 0, str(result)
    for word in words:
        assert word in result.hint, f"{wrong.__name__}: {result}"


@pytest.mark.parametrize("exercise, wrong, words", WRONG, ids=lambda x: getattr(x, "__name__", ""))
def test_wrong_implementations_fail_on_other_seeds_too(exercise, wrong, words):
    for seed in (1, 2):
        assert result_of(exercise, wrong, seed).status == "failed"


def test_a_failure_names_the_case_and_expected_versus_got():
    result = result_of("cosine_similarity", cosine_without_eps)
    assert "a zero vector" in result.message and "got nan" in result.message
    result = result_of("sinusoidal_positions", positions_from_1)
    assert "T=6 positions" in result.message and "expected 0, got 0.841471" in result.message


# --- correct variants ------------------------------------------------------------------------

def embed_by_indexing(ids, weight):
    return weight[ids]


def embed_by_one_hot_matmul(ids, weight):
    return F.one_hot(ids, num_classes=weight.shape[0]).to(weight.dtype) @ weight


def embed_with_functional(ids, weight):
    return F.embedding(ids, weight)


def embed_by_index_select(ids, weight):
    return weight.index_select(0, ids.reshape(-1)).reshape(*ids.shape, weight.size(1))


def embed_row_by_row(ids, weight):
    rows = [[weight[int(i)] for i in sequence] for sequence in ids]
    return torch.stack([torch.stack(r) for r in rows])


def cosine_by_formula(a, b):
    dot = (a * b).sum(dim=-1)
    return dot / (a.norm(dim=-1).clamp_min(1e-8) * b.norm(dim=-1).clamp_min(1e-8))


def cosine_with_functional(a, b):
    return F.cosine_similarity(a, b, dim=-1)


def cosine_by_einsum_of_unit_vectors(a, b):
    a, b = torch.broadcast_tensors(a, b)
    ua = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    ub = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return torch.einsum("...c,...c->...", ua, ub)


def cosine_with_each_length_floored(a, b):
    eps = torch.tensor(1e-8, dtype=a.dtype)
    return (a * b).sum(-1) / (torch.maximum(torch.linalg.vector_norm(a, dim=-1), eps)
                              * torch.maximum(torch.linalg.vector_norm(b, dim=-1), eps))


def positions_by_slicing(T, C):
    return positions(T, C)


def positions_in_log_space(T, C):
    frequency = torch.exp(torch.arange(0, C, 2) * (-math.log(10000.0) / C))
    angle = torch.arange(T).unsqueeze(1) * frequency
    return torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1).reshape(T, C)


def positions_by_loops(T, C):
    pe = torch.zeros(T, C)
    for p in range(T):
        for i in range(0, C, 2):
            pe[p, i] = math.sin(p / 10000 ** (i / C))
            pe[p, i + 1] = math.cos(p / 10000 ** (i / C))
    return pe


CORRECT = [("embed", f) for f in (embed_by_indexing, embed_by_one_hot_matmul,
                                   embed_with_functional, embed_by_index_select,
                                   embed_row_by_row)] + \
          [("cosine_similarity", f) for f in (cosine_by_formula, cosine_with_functional,
                                               cosine_by_einsum_of_unit_vectors,
                                               cosine_with_each_length_floored)] + \
          [("sinusoidal_positions", f) for f in (positions_by_slicing, positions_in_log_space,
                                                  positions_by_loops)]


@pytest.mark.parametrize("exercise, correct", CORRECT, ids=lambda x: getattr(x, "__name__", ""))
def test_correct_variants_pass_on_several_seeds(exercise, correct):
    for seed in (0, 1, 2):
        result = result_of(exercise, correct, seed)
        assert result.passed and result.score == result.points, str(result)


# the ids this catalogue covers: embeddings.embed, embeddings.cosine_similarity,
# embeddings.sinusoidal_positions
@pytest.mark.parametrize("exercise", ["embed", "cosine_similarity", "sinusoidal_positions"])
def test_the_stub_is_not_attempted(exercise):
    def stub(*args):
        raise NotImplementedError("Replace this line with your code, then run the check below.")

    assert result_of(exercise, stub).status == "not_attempted"


def test_every_result_is_json_serialisable():
    for exercise, fn, _ in WRONG:
        data = json.loads(json.dumps(result_of(exercise, fn).to_dict()))
        assert data["status"] == "failed"
