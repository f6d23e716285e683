"""Lesson 02, embeddings: how a token id becomes a vector, and how a vector learns where it is.

A model cannot compute with the id 9282; it computes with vectors. The embedding matrix W_E
holds one row of C numbers per token of the vocabulary, and embedding a token is reading its
row. Trained vectors put tokens that are used alike close together, and differences between
vectors can carry meaning: E(queen) - E(king) ≈ E(woman) - E(man). Attention itself does not
see the order of tokens, so a second vector, one per position, is added to each token's.

Shapes: B batch, T tokens, V vocabulary size, C embedding width.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# --- from ids to vectors ---------------------------------------------------------------------


def one_hot(ids: torch.Tensor, vocab_size: int, dtype: torch.dtype = torch.float32
            ) -> torch.Tensor:
    """(...) integer ids -> (..., V): a row of zeros with a single 1 at each id's column."""
    return F.one_hot(ids, vocab_size).to(dtype)


def one_hot_lookup(ids: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(B, T) ids, (V, C) weight -> (B, T, C) by matrix product: one_hot(ids) @ weight.

    The same numbers as `embed`, but it builds a (B, T, V) tensor that is almost all zeros and
    multiplies through it: V times more work than reading the rows directly.
    """
    return one_hot(ids, weight.size(0), weight.dtype) @ weight


def embed(ids: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Look up each id's row of the embedding matrix.

    ids: (B, T) integer token ids in [0, V); weight: (V, C), one row per token.
    Returns (B, T, C), out[b, t] = weight[ids[b, t]]. Gradients flow to the rows that were
    read (a row read twice gets both gradients added).
    """
    return weight[ids]


def cosine_similarity(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """How aligned two vectors are, from -1 (opposite) through 0 (unrelated) to 1 (same
    direction), whatever their lengths.

    a: (..., C), b: (..., C), broadcastable against each other. Returns (...): the dot product
    of a and b divided by both lengths. Each length is clamped to at least `eps` (the
    convention of torch.nn.functional.cosine_similarity), so a zero vector, which has no
    direction, gets similarity 0 with everything instead of 0 / 0 = nan.
    """
    dot = (a * b).sum(dim=-1)
    norms = a.norm(dim=-1).clamp_min(eps) * b.norm(dim=-1).clamp_min(eps)
    return dot / norms


# --- positions -------------------------------------------------------------------------------


def sinusoidal_positions(T: int, C: int) -> torch.Tensor:
    """The fixed positional encodings of "Attention Is All You Need" (Vaswani et al., 2017).

    Returns (T, C) float32: row p is position p (counting from 0). Columns come in pairs
    (2i, 2i + 1) that share the frequency ω_i = 1 / 10000^(2i / C):
        PE[p, 2i] = sin(p · ω_i),   PE[p, 2i + 1] = cos(p · ω_i).
    The first pairs turn fast (ω_0 = 1 radian per position), the last ones very slowly, so
    every position gets a different pattern, and a shift by k positions is the same rotation of
    each pair wherever it starts. C must be even.
    """
    if T < 1 or C < 2 or C % 2:
        raise ValueError(f"need T >= 1 positions and an even width C >= 2, got T={T}, C={C}")
    position = torch.arange(T, dtype=torch.float64)[:, None]  # (T, 1)
    frequency = 10000.0 ** (-torch.arange(0, C, 2, dtype=torch.float64) / C)  # (C/2,)
    angle = position * frequency  # (T, C/2)
    pe = torch.empty(T, C, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle)
    return pe.float()  # float64 angles first: p · ω stays exact to float32's last digit


class TokenAndPositionEmbedding(nn.Module):
    """What enters the first block of a GPT: each token's vector plus its position's vector.

    positions="learned": the position vectors are a second trainable table (block_size, C),
    as in GPT-2 and GPT-3; "sinusoidal": the fixed `sinusoidal_positions` table, as in the
    original Transformer. forward: (B, T) ids -> (B, T, C), with T <= block_size.
    """

    def __init__(self, vocab_size: int, block_size: int, n_embd: int,
                 positions: str = "learned") -> None:
        super().__init__()
        self.token = nn.Embedding(vocab_size, n_embd)
        if positions == "learned":
            self.position = nn.Embedding(block_size, n_embd)
        elif positions == "sinusoidal":
            self.position = nn.Embedding.from_pretrained(sinusoidal_positions(block_size, n_embd))
        else:
            raise ValueError(f"positions must be 'learned' or 'sinusoidal', got {positions!r}")
        self.block_size = block_size

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        T = ids.size(-1)
        if T > self.block_size:
            raise ValueError(f"{T} tokens do not fit the context of {self.block_size}")
        where = torch.arange(T, device=ids.device)  # (T,)
        return self.token(ids) + self.position(where)  # (B, T, C) + (T, C) broadcasts


# --- size ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbeddingSize:
    """The shapes of a GPT's two embedding tables, from its configuration."""

    vocab_size: int
    n_embd: int
    block_size: int

    @property
    def token_parameters(self) -> int:
        """V × C: one row of C numbers per token."""
        return self.vocab_size * self.n_embd

    @property
    def position_parameters(self) -> int:
        """block_size × C when positions are learned (GPT-2, GPT-3); 0 when sinusoidal."""
        return self.block_size * self.n_embd


# GPT-3 175B (Brown et al., 2020, table 2.1): the GPT-2 tokenizer's 50,257 tokens, width
# 12,288, context 2,048 tokens.
GPT3 = EmbeddingSize(vocab_size=50_257, n_embd=12_288, block_size=2_048)


# --- word vectors trained on the course's own text -------------------------------------------

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def words_of(text: str) -> list[str]:
    """Lower-case words of `text`, punctuation dropped: "The King's crown." -> the king's crown."""
    return _WORD.findall(text.lower())


@dataclass
class WordVectors:
    """Unit-length word vectors with the questions a lesson asks of them.

    words: V words, most frequent first; vectors: (V, dim) float32, each row of length 1, so
    a dot product is a cosine similarity.
    """

    words: list[str]
    vectors: torch.Tensor
    counts: list[int]

    def __post_init__(self) -> None:
        self.index = {w: i for i, w in enumerate(self.words)}

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def __len__(self) -> int:
        return len(self.words)

    def __getitem__(self, word: str) -> torch.Tensor:
        """(dim,) the vector of `word`."""
        if word not in self.index:
            raise KeyError(f"{word!r} is not among the {len(self.words)} words these vectors "
                           f"know (words seen fewer times than min_count are left out)")
        return self.vectors[self.index[word]]

    def nearest(self, query: torch.Tensor, k: int = 5, exclude: Iterable[str] = ()
                ) -> list[tuple[str, float]]:
        """The k words whose vectors are most aligned with `query` (dim,), best first, as
        (word, cosine similarity), leaving out the words in `exclude`."""
        scores = cosine_similarity(self.vectors, query)  # (V,)
        for word in exclude:
            scores[self.index[word]] = -math.inf
        best = torch.topk(scores, min(k, len(self.words))).indices.tolist()
        return [(self.words[i], float(scores[i])) for i in best if scores[i] > -math.inf]

    def most_similar(self, word: str, k: int = 5) -> list[tuple[str, float]]:
        """The k nearest neighbours of `word` (itself excluded), as (word, cosine)."""
        return self.nearest(self[word], k, exclude=[word])

    def analogy(self, a: str, b: str, c: str, k: int = 5) -> list[tuple[str, float]]:
        """Words nearest to a - b + c, the three inputs excluded: ("king", "man", "woman")
        asks "king is to man as what is to woman?" and should answer "queen"."""
        return self.nearest(self[a] - self[b] + self[c], k, exclude=[a, b, c])


def cooccurrence_counts(ids: np.ndarray, vocab_size: int, window: int) -> np.ndarray:
    """(V, V) how often word j appears within `window` words of word i, counting a neighbour
    at distance d as 1/d (near words say more about a word than far ones). Symmetric."""
    counts = np.zeros(vocab_size * vocab_size)
    for d in range(1, window + 1):
        left, right = ids[:-d], ids[d:]
        keep = (left >= 0) & (right >= 0)  # -1 marks a word too rare to have a vector
        pair = left[keep] * vocab_size + right[keep]
        counts += np.bincount(pair, minlength=vocab_size * vocab_size) / d
    counts = counts.reshape(vocab_size, vocab_size)
    return counts + counts.T


def ppmi(counts: np.ndarray, alpha: float = 0.75) -> np.ndarray:
    """Positive pointwise mutual information of a (V, V) co-occurrence table.

    PMI(w, c) = log P(w, c) / (P(w) P(c)): how much more often w and c meet than chance would
    have them meet. Negative values (met less than chance) are mostly noise from few counts,
    so they become 0. Raising the context counts to alpha = 0.75 before normalising gives rare
    contexts a little more probability, so they do not dominate (Levy, Goldberg and Dagan,
    2015).
    """
    total = counts.sum()
    p_word = counts.sum(axis=1) / total
    context = counts.sum(axis=0) ** alpha
    p_context = context / context.sum()
    with np.errstate(divide="ignore"):
        pmi = np.log(counts / total) - np.log(p_word)[:, None] - np.log(p_context)[None, :]
    return np.maximum(pmi, 0.0)


def train_word_vectors(text: str, dim: int = 48, seed: int = 0, *, window: int = 4,
                       min_count: int = 5, min_share: float = 2e-4,
                       max_vocab: int = 4000) -> WordVectors:
    """Word vectors for the words of `text`, by counting and factorising: PPMI + truncated SVD.

    1. Count how often every pair of words appears near each other (`cooccurrence_counts`).
    2. Turn counts into PPMI (`ppmi`): a word is now a row saying which contexts it prefers.
    3. Keep the `dim` strongest directions of that (V, V) table with a truncated SVD; a word's
       vector is its row of U · √S, scaled to length 1.

    Why this and not word2vec's skip-gram: on a few megabytes the two learn much the same
    thing (skip-gram with negative sampling implicitly factorises a shifted PMI table, Levy
    and Goldberg 2014), but counting and one SVD take about a second on a CPU, need no
    learning rate or epochs, and give the same vectors on every machine.

    text: any English text. Words seen fewer than `min_count` times, or rarer than
    `min_share` of all words (1 in 5,000 by default), are left out, and only the `max_vocab`
    most frequent words are kept: a word seen a handful of times gets large, noisy PMI values
    from pure chance, and as a context it drowns the patterns of the common words (the corpus's
    made-up names are such words). dim: the width of the vectors. seed: seeds the randomised
    SVD used when the vocabulary is too large for an exact one (the exact SVD needs none).
    """
    words = words_of(text)
    frequency = Counter(words)
    min_count = max(min_count, math.ceil(min_share * len(words)))
    vocabulary = [w for w, n in sorted(frequency.items(), key=lambda item: (-item[1], item[0]))
                  if n >= min_count][:max_vocab]
    if len(vocabulary) < 3:
        raise ValueError(f"only {len(vocabulary)} words appear at least {min_count} times: "
                         f"give more text or a lower min_count")
    index = {w: i for i, w in enumerate(vocabulary)}
    ids = np.array([index.get(w, -1) for w in words], dtype=np.int64)
    table = ppmi(cooccurrence_counts(ids, len(vocabulary), window))
    dim = min(dim, len(vocabulary) - 1)
    if len(vocabulary) <= 2000:
        u, s, _ = np.linalg.svd(table)
        u, s = u[:, :dim], s[:dim]
    else:  # an exact SVD of a large table takes long; a seeded randomised one is as good
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            u, s, _ = torch.svd_lowrank(torch.from_numpy(table), q=dim + 10, niter=4)
        u, s = u[:, :dim].numpy(), s[:dim].numpy()
    vectors = torch.from_numpy(u * np.sqrt(s)).float()
    vectors = vectors / vectors.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return WordVectors(vocabulary, vectors, [frequency[w] for w in vocabulary])


def pair_axes(vectors: WordVectors, pairs: Sequence[tuple[str, str]]) -> torch.Tensor:
    """(2, dim) two orthonormal directions for a picture of `pairs`: the first is the average
    step from the first word of a pair to the second, the second is the main direction (PCA)
    in which the words differ apart from that step."""
    first = torch.stack([vectors[a] for a, _ in pairs]).double()  # (P, dim)
    second = torch.stack([vectors[b] for _, b in pairs]).double()
    shared = (second - first).mean(dim=0)
    shared = shared / shared.norm()
    points = torch.cat([first, second])
    rest = points - points.mean(dim=0)
    rest = rest - (rest @ shared)[:, None] * shared  # what is left once the step is removed
    _, _, v = torch.linalg.svd(rest, full_matrices=False)
    return torch.stack([shared, v[0]]).float()


def plot_pairs(vectors: WordVectors, pairs: Sequence[tuple[str, str]], ax=None):
    """Words of `pairs` on the two directions of `pair_axes`, an arrow from the first word of
    each pair to the second: arrows that run in parallel share a direction. Returns the
    matplotlib Axes."""
    import matplotlib.pyplot as plt

    axes = pair_axes(vectors, pairs)  # (2, dim)
    xy = {w: (axes @ vectors[w]).tolist() for pair in pairs for w in pair}
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 5))
    colours = plt.get_cmap("tab10").colors
    for n, (first, second) in enumerate(pairs):
        colour = colours[n % 10]
        ax.annotate("", xy=xy[second], xytext=xy[first],
                    arrowprops=dict(arrowstyle="-|>", color=colour, lw=2, shrinkA=5, shrinkB=5))
        ax.plot(*zip(xy[first], xy[second]), "o", color=colour, ms=7)
    # labels left of the first words and right of the second ones, nudged apart vertically
    # where two points nearly coincide
    spread = max(abs(y) for _, y in xy.values()) or 1.0
    for side, column in (("right", 0), ("left", 1)):
        placed: list[tuple[float, float]] = []
        for pair in sorted(pairs, key=lambda p: -xy[p[column]][1]):
            word = pair[column]
            x, y = xy[word]
            close = sum(abs(x - px) < 0.3 * spread and abs(y - py) < 0.08 * spread
                        for px, py in placed)
            placed.append((x, y))
            ax.annotate(word, (x, y), xytext=(-8 if side == "right" else 8, -13 * close),
                        textcoords="offset points", ha=side, va="center", fontsize=11,
                        color=colours[pairs.index(pair) % 10] if close else "black")
    ax.margins(0.25, 0.12)
    ax.grid(alpha=0.3)
    ax.set_xlabel("the average step from each first word to its partner")
    ax.set_ylabel("the main other direction")
    return ax


def plot_positions(pe: torch.Tensor, ax=None):
    """Heatmap of a (T, C) table of position vectors: rows positions, columns dimensions."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(9, 4))
    image = ax.imshow(pe.detach().numpy(), aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1,
                      interpolation="nearest")
    ax.set_xlabel("dimension (column) of the position vector")
    ax.set_ylabel("position in the text")
    ax.figure.colorbar(image, ax=ax, fraction=0.03)
    return ax
