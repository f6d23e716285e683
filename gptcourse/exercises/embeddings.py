"""Checks for lesson 02, embeddings."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gptcourse import embeddings
from gptcourse.exercises.compare import Tolerance
from gptcourse.exercises.contract import NO_GRADIENT, Case, Exercise, Mistake, Outcome, error_says
from gptcourse.exercises.registration import register



def _value(case: Case, outcome: Outcome):
    """The learner's output itself, without the gradients a "gradients" probe adds."""
    value = outcome.value
    return value[0] if case.probe == "gradients" and isinstance(value, tuple) else value




# --- embed -----------------------------------------------------------------------------------

def _embed_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)

    def ids(V: int, *shape: int) -> torch.Tensor:
        return torch.randint(0, V, shape, generator=g)

    def weight(V: int, C: int) -> torch.Tensor:
        return torch.randn(V, C, generator=g)

    ends = ids(10, 2, 6)
    ends[0, 0], ends[1, -1] = 0, 9  # the first and the last row of the table
    square = ids(6, 2, 3)
    square[0, 0], square[1, 1] = 0, 5
    return [
        Case("a batch of 2 sequences of 5 tokens, V=10 words of width C=4",
             (torch.tensor([[1, 3, 3, 0, 2], [4, 1, 2, 2, 3]]), weight(10, 4))),
        Case("ids 0 and V-1, the first and the last row (V=10, C=3)", (ends, weight(10, 3))),
        Case("a square table (V = C = 6)", (square, weight(6, 6))),
        Case("a single token (B=1, T=1)", (torch.tensor([[7]]), weight(8, 5))),
        Case("width C=1", (ids(5, 3, 4), weight(5, 1))),
        Case("a wider table, float64 (V=50, C=16)",
             (ids(50, 3, 7), weight(50, 16).double())),
        Case("gradients reach the rows that were read (ids repeat)",
             (torch.tensor([[2, 2, 0], [5, 2, 1]]), weight(6, 4)), probe="gradients"),
    ]


def _ids_out_of_rows(case: Case, outcome: Outcome) -> bool:
    """IndexError from a table read along its columns: an id ≥ C but < V."""
    ids, weight = case.args
    return outcome.error is not None and "out of bounds" in outcome.error.message and \
        int(ids.max()) < weight.size(0)


def _one_hot_guessed_classes(case: Case, outcome: Outcome) -> bool:
    ids, weight = case.args
    return outcome.error is not None and "cannot be multiplied" in outcome.error.message and \
        f"x{int(ids.max()) + 1} and" in outcome.error.message


register(Exercise(
    id="embeddings.embed",
    title="look up token embeddings",
    points=1,
    reference=embeddings.embed,
    make_cases=_embed_cases,
    mistakes=(
        Mistake("`weight` has one ROW per token: shape (V, C). You read it as if each token "
                "were a column (through the transposed matrix, weight.T or weight[:, ids]). "
                "Use weight[ids].", wrong=lambda ids, weight: weight.T[ids]),
        Mistake("`weight` has one ROW per token: shape (V, C). You read it as if each token "
                "were a column (through the transposed matrix, weight.T or weight[:, ids]). "
                "Use weight[ids].", symptom=_ids_out_of_rows),
        Mistake("`weight` has one ROW per token: shape (V, C). weight[:, ids] picks columns "
                "(the transposed matrix); use weight[ids].",
                wrong=lambda ids, weight: weight[:, ids]),
        Mistake("F.one_hot(ids) guesses the number of classes from the largest id in this "
                "batch, which need not be V - 1: pass num_classes=weight.size(0).",
                symptom=_one_hot_guessed_classes),
        Mistake("One-hot rows (B, T, V) times the table (V, C) give (B, T, C): multiply "
                "one_hot @ weight, with the one-hot on the left and the table as it is, not "
                "transposed.", symptom=error_says("cannot be multiplied")),
        Mistake("F.one_hot returns integers (int64); matrix products need one dtype on both "
                "sides: convert with .to(weight.dtype) before multiplying by weight.",
                symptom=error_says("same dtype", "expected scalar type", "Long")),
        Mistake("The numbers are right but the dtype is not: return weight's dtype (float32 "
                "in, float32 out; float64 in, float64 out). A one-hot made with .float() "
                "turns a float64 table into float32.",
                wrong=lambda ids, weight: weight[ids].float()),
        NO_GRADIENT,
    ),
    hint="out[b, t] is row ids[b, t] of weight: weight[ids] does it for every token at once "
         "(or F.one_hot(ids, V).to(weight.dtype) @ weight, the same numbers the slow way).",
))


# --- cosine_similarity -----------------------------------------------------------------------

def _cosine_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    randn = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    zero_row = randn(3, 5)
    zero_row[1] = 0.0
    tiny, huge = randn(4, 6) * 1e-3, randn(4, 6) * 1e3
    return [
        Case("two vectors (C=3)", (torch.tensor([1.0, 2.0, 2.0]), torch.tensor([2.0, 0.0, 1.0]))),
        Case("a batch of 4 pairs (4, 8)", (randn(4, 8), randn(4, 8))),
        Case("same direction, different lengths", (torch.tensor([3.0, -4.0]),
                                                   torch.tensor([0.6, -0.8]))),
        Case("opposite directions", (torch.tensor([1.0, -2.0, 0.5]),
                                     torch.tensor([-2.0, 4.0, -1.0]))),
        Case("batch dims (2, 3, 5)", (randn(2, 3, 5), randn(2, 3, 5))),
        Case("one query against a table of 6 vectors: (5,) and (6, 5) broadcast",
             (randn(5), randn(6, 5))),
        Case("very different lengths (about 0.001 and 1000)", (tiny, huge)),
        Case("two tiny vectors (lengths about 1e-5), nearly parallel",
             (torch.tensor([1e-5, 2e-5, 2e-5]), torch.tensor([2e-5, 1.5e-5, 2e-5]))),
        Case("a zero vector (row 1 of a): it has no direction, similarity 0",
             (zero_row, randn(3, 5))),
        Case("float64 (7, 4)", (randn(7, 4).double(), randn(7, 4).double())),
        Case("width C=1", (randn(5, 1), randn(5, 1))),
        Case("gradients reach a and b", (randn(3, 4), randn(3, 4)), probe="gradients"),
    ]


def _nan_from_zero_vector(case: Case, outcome: Outcome) -> bool:
    value = _value(case, outcome)
    return isinstance(value, torch.Tensor) and value.is_floating_point() and \
        bool(torch.isnan(value).any()) and any(
            bool((a.norm(dim=-1) == 0).any()) for a in case.args)


def _dot(a, b):
    return (a * b).sum(-1)


def _divides_by_one_of(case: Case, outcome: Outcome, lengths) -> bool:
    """The learner's value is a · b divided by one of the `lengths(a, b, eps)`, for some eps
    from 1e-12 to 1e-6."""
    value = _value(case, outcome)
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        return False
    a, b = case.args
    for eps in (1e-12, 1e-10, 1e-8, 1e-6):
        for norms in lengths(a, b, eps):
            guess = _dot(a, b) / norms
            if guess.shape == value.shape and torch.allclose(value.detach(), guess, rtol=1e-4,
                                                             atol=1e-6):
                return True
    return False


def _eps_on_the_product(case: Case, outcome: Outcome) -> bool:
    return _divides_by_one_of(case, outcome, lambda a, b, eps: (
        (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(eps), a.norm(dim=-1) * b.norm(dim=-1) + eps))


def _eps_inside_the_root(case: Case, outcome: Outcome) -> bool:
    return _divides_by_one_of(case, outcome, lambda a, b, eps: (
        torch.sqrt((a * a).sum(-1) + eps) * torch.sqrt((b * b).sum(-1) + eps),
        torch.sqrt((a * a).sum(-1) * (b * b).sum(-1) + eps)))


def _kept_dim(case: Case, outcome: Outcome) -> bool:
    value, expected = _value(case, outcome), embeddings.cosine_similarity(*case.args)
    return isinstance(value, torch.Tensor) and tuple(value.shape) == (*expected.shape, 1)


register(Exercise(
    id="embeddings.cosine_similarity",
    title="cosine similarity",
    points=1,
    reference=embeddings.cosine_similarity,
    make_cases=_cosine_cases,
    mistakes=(
        Mistake("Divide the dot product by BOTH lengths, |a| · |b|. Yours divides by one of "
                "them only, so the result still grows with the other vector's length.",
                wrong=lambda a, b: _dot(a, b) / a.norm(dim=-1)),
        Mistake("Divide the dot product by BOTH lengths, |a| · |b|. Yours divides by one of "
                "them only, so the result still grows with the other vector's length.",
                wrong=lambda a, b: _dot(a, b) / b.norm(dim=-1)),
        Mistake("That is the plain dot product: it grows with the vectors' lengths. Divide it "
                "by |a| · |b| to keep only how aligned they are.", wrong=_dot),
        Mistake("The length is the square root of the sum of squares: a.norm(dim=-1), not the "
                "sum of squares itself.",
                wrong=lambda a, b: _dot(a, b) / ((a * a).sum(-1) * (b * b).sum(-1))),
        Mistake("eps went inside the square root: sqrt(sum of squares + eps) adds to every "
                "length, which changes short vectors (length 1e-5 becomes about 1e-4). Clamp "
                "each length from below instead, so only the zero vector is affected.",
                symptom=_eps_inside_the_root),
        Mistake("You protected the product of the lengths, |a| · |b|, with eps (clamped it, "
                "or added eps to it) rather than each length. Two short vectors (lengths 1e-5 "
                "each) have a product of 1e-10, which eps then outweighs, shrinking their "
                "similarity many times over; clamp |a| and |b| each, then multiply.",
                symptom=_eps_on_the_product),
        Mistake("That is the cosine distance, 1 - cosine. Return the similarity itself.",
                wrong=lambda a, b: 1 - embeddings.cosine_similarity(a, b)),
        Mistake("A zero vector has no direction: |a| = 0 makes 0 / 0 = nan. Clamp each length "
                "to at least a small eps (say 1e-8) before dividing, as "
                "torch.nn.functional.cosine_similarity does; then the similarity is 0.",
                symptom=_nan_from_zero_vector),
        Mistake("Sum over the last axis (dim=-1), the C numbers of each vector; yours sums over "
                "another axis.",
                wrong=lambda a, b: (a * b).sum(0) / (a.norm(dim=0) * b.norm(dim=0))),
        Mistake("The result has one number per pair of vectors, shape (...): sum with "
                "keepdim=False (the default) so the last axis disappears.", symptom=_kept_dim),
        Mistake("Normalising a (..., C) vector by its (...) length needs keepdim=True, "
                "a / a.norm(dim=-1, keepdim=True), so the lengths line up with the last axis.",
                symptom=error_says("must match the size of tensor")),
        Mistake("torch.dot (and a @ b) only handles single vectors. For batches multiply "
                "elementwise and sum over the last axis: (a * b).sum(dim=-1).",
                symptom=error_says("1D tensors expected", "both arguments to matmul need",
                                    "cannot be multiplied", "inconsistent tensor size")),
        Mistake("torch.nn.functional.cosine_similarity works along dim=1 unless told "
                "otherwise: pass dim=-1.",
                wrong=lambda a, b: F.cosine_similarity(a, b) if a.dim() > 1 else None),
        Mistake("torch.nn.functional.cosine_similarity works along dim=1 unless told "
                "otherwise: pass dim=-1.", symptom=error_says("Dimension out of range")),
        NO_GRADIENT,
    ),
    hint="(a * b).sum(dim=-1) divided by a.norm(dim=-1) * b.norm(dim=-1), each norm clamped "
         "to at least 1e-8 (.clamp_min(1e-8)) so a zero vector gives 0 instead of nan.",
))


# --- sinusoidal_positions --------------------------------------------------------------------

def _sinusoidal_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    T = int(torch.randint(20, 60, (1,), generator=g))
    return [
        Case("T=6 positions, C=8 dimensions", (6, 8)),
        Case("a single position (T=1)", (1, 16)),
        Case("the narrowest width, C=2", (5, 2)),
        Case("C=4", (10, 4)),
        Case(f"a longer text (T={T}, C=32)", (T, 32)),
        Case("wide (T=16, C=128)", (16, 128)),
        Case("more dimensions than positions (T=3, C=64)", (3, 64)),
    ]


def _pe(T, C, *, start=0, swap=False, exponent=lambda i, C: 2 * i / C, base=10000.0,
        halves=False):
    """Sinusoidal positions with one thing done differently, for predicting mistakes."""
    position = torch.arange(start, start + T, dtype=torch.float64)[:, None]
    i = torch.arange(C // 2, dtype=torch.float64)
    angle = position / base ** exponent(i, C)
    first, second = (torch.cos, torch.sin) if swap else (torch.sin, torch.cos)
    if halves:
        return torch.cat([first(angle), second(angle)], dim=1).float()
    pe = torch.empty(T, C, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = first(angle), second(angle)
    return pe.float()


def _close(got, expected: torch.Tensor, atol: float = 1e-4) -> bool:
    return isinstance(got, torch.Tensor) and got.shape == expected.shape and \
        torch.allclose(got.double(), expected.double(), atol=atol)


_EXPONENT_HINT = ("The frequency exponent is off. Columns 2i and 2i + 1 share ω_i = "
                  "1 / 10000^(2i / C), with i counting PAIRS (0, 1, ..., C/2 - 1): with "
                  "torch.arange(0, C, 2) the 2i is already there, so divide by C; with "
                  "torch.arange(C // 2) multiply by 2 first.")

register(Exercise(
    id="embeddings.sinusoidal_positions",
    title="sinusoidal positional encodings",
    points=2,
    reference=embeddings.sinusoidal_positions,
    make_cases=_sinusoidal_cases,
    # The angles reach p · ω ≈ 60 radians: float32 computations of the same angle differ by
    # a few units in the 6th digit, which sin and cos pass on as they are.
    tolerance=Tolerance(atol=2e-5),
    mistakes=(
        Mistake("sin and cos are swapped: even columns (0, 2, 4, ...) hold sin, odd columns "
                "(1, 3, 5, ...) hold cos. Position 0 should read 0, 1, 0, 1, ...",
                wrong=lambda T, C: _pe(T, C, swap=True)),
        Mistake("Positions count from 0: the first row is position 0, which reads "
                "0, 1, 0, 1, ... (sin 0 = 0, cos 0 = 1). Use torch.arange(T).",
                wrong=lambda T, C: _pe(T, C, start=1)),
        Mistake(_EXPONENT_HINT, wrong=lambda T, C: _pe(T, C, exponent=lambda i, C: i / C)),
        Mistake(_EXPONENT_HINT, wrong=lambda T, C: _pe(T, C, exponent=lambda i, C: 4 * i / C)),
        Mistake(_EXPONENT_HINT,
                wrong=lambda T, C: _pe(T, C, exponent=lambda i, C: 2 * i / (C - 1))),
        Mistake("The frequency is 1 / 10000^(2i / C): positions are DIVIDED by 10000^(2i / C) "
                "(or multiplied by 10000^(-2i / C)). Yours multiplies by 10000^(2i / C), so "
                "later columns spin faster instead of slower.",
                # angles of thousands of radians: float32 keeps only 2 or 3 digits of them
                symptom=lambda case, outcome: _close(
                    outcome.value, _pe(*case.args, exponent=lambda i, C: -2 * i / C), 1e-2)),
        Mistake("The base of the frequencies is 10000 (\"Attention Is All You Need\"), so "
                "that the slowest pair takes tens of thousands of positions to repeat.",
                symptom=lambda case, outcome: any(
                    _close(outcome.value, _pe(*case.args, base=base))
                    for base in (1000.0, 100.0, math.e))),
        Mistake("sin and cos interleave: column 2i is sin and column 2i + 1 is cos of the same "
                "angle. Yours puts all the sines in the first half and all the cosines in the "
                "second; fill pe[:, 0::2] and pe[:, 1::2] instead.",
                wrong=lambda T, C: _pe(T, C, halves=True)),
        Mistake("The table is (T, C): one row per position, one column per dimension. Yours "
                "is transposed.", wrong=lambda T, C: _pe(T, C).T),
        Mistake("Return float32 (torch.arange gives int64 or float32; a float64 computation "
                "needs .float() at the end).",
                symptom=lambda case, outcome: isinstance(outcome.value, torch.Tensor)
                and outcome.value.dtype != torch.float32),
        Mistake("Return a torch tensor: torch.from_numpy(...).float() turns a NumPy array "
                "into one.", symptom=lambda case, outcome: not isinstance(
                    outcome.value, torch.Tensor) and outcome.error is None),
    ),
    hint="angle = torch.arange(T)[:, None] / 10000 ** (torch.arange(0, C, 2) / C); then "
         "pe[:, 0::2] = sin(angle) and pe[:, 1::2] = cos(angle) in a torch.zeros(T, C).",
))

