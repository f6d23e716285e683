"""gptcourse.embeddings: the reference functions, positions, sizes, and word vectors trained on
text that has parallel word pairs."""

import itertools
import math
import random
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gptcourse import embeddings as E

# --- lookups and cosines ---------------------------------------------------------------------


def test_lookup_is_one_hot_times_the_matrix():
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(11, 6, generator=g)
    ids = torch.tensor([[0, 10, 3], [3, 3, 7]])
    assert E.embed(ids, weight).shape == (2, 3, 6)
    assert torch.equal(E.embed(ids, weight), F.embedding(ids, weight))
    torch.testing.assert_close(E.one_hot_lookup(ids, weight), E.embed(ids, weight))
    assert E.one_hot(ids, 11).sum(-1).eq(1).all() and E.one_hot(ids, 11)[0, 1, 10] == 1


def test_embed_adds_the_gradients_of_a_row_read_twice():
    weight = torch.zeros(4, 2, requires_grad=True)
    E.embed(torch.tensor([[1, 1, 3]]), weight).sum().backward()
    assert weight.grad.tolist() == [[0, 0], [2, 2], [0, 0], [1, 1]]


def test_cosine_similarity_agrees_with_torch_and_is_scale_free():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    torch.testing.assert_close(E.cosine_similarity(a, b), F.cosine_similarity(a, b, dim=-1))
    torch.testing.assert_close(E.cosine_similarity(3 * a, 0.01 * b), E.cosine_similarity(a, b))
    torch.testing.assert_close(E.cosine_similarity(a, a), torch.ones(5))
    torch.testing.assert_close(E.cosine_similarity(a, -a), -torch.ones(5))
    assert E.cosine_similarity(a[0], b).shape == (5,)  # one query against a table


def test_cosine_of_a_zero_vector_is_zero_like_torch():
    zero, x = torch.zeros(3), torch.tensor([1.0, 2.0, 3.0])
    assert E.cosine_similarity(zero, x).item() == 0.0 == F.cosine_similarity(zero, x, dim=0)
    assert E.cosine_similarity(zero, zero).item() == 0.0


# --- positions -------------------------------------------------------------------------------


def test_sinusoidal_positions_follow_the_paper():
    pe = E.sinusoidal_positions(50, 16)
    assert pe.shape == (50, 16) and pe.dtype == torch.float32
    assert pe[0].tolist() == [0.0, 1.0] * 8  # sin 0, cos 0
    for p, i in [(7, 0), (13, 3), (49, 7)]:
        angle = p / 10000 ** (2 * i / 16)
        assert pe[p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
        assert pe[p, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    # every pair is a point on the unit circle, and every position is different
    torch.testing.assert_close(pe[:, 0::2] ** 2 + pe[:, 1::2] ** 2, torch.ones(50, 8))
    assert torch.cdist(pe, pe).add(torch.eye(50)).min() > 0.1


def test_a_shift_is_the_same_rotation_wherever_it_starts():
    """PE[p + k] is a fixed linear map of PE[p], the same for every p: relative positions are
    easy to read off."""
    C, k = 8, 5
    pe = E.sinusoidal_positions(40, C).double()
    rotation = torch.zeros(C, C, dtype=torch.float64)  # block-diagonal: one 2x2 turn a pair
    for i in range(C // 2):
        turn = k / 10000 ** (2 * i / C)
        c, s = math.cos(turn), math.sin(turn)
        # (sin x, cos x) -> (sin(x + t), cos(x + t)) = (sin x cos t + cos x sin t, ...)
        rotation[2 * i:2 * i + 2, 2 * i:2 * i + 2] = torch.tensor([[c, -s], [s, c]])
    torch.testing.assert_close(pe[:-k] @ rotation, pe[k:], atol=1e-6, rtol=0)


def test_sinusoidal_positions_refuse_an_odd_width():
    with pytest.raises(ValueError, match="even width"):
        E.sinusoidal_positions(4, 7)


@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_token_plus_position(positions):
    torch.manual_seed(0)
    layer = E.TokenAndPositionEmbedding(vocab_size=20, block_size=8, n_embd=6,
                                        positions=positions)
    ids = torch.tensor([[3, 3, 3, 3], [1, 2, 3, 4]])
    x = layer(ids)
    assert x.shape == (2, 4, 6)
    # the same token at different positions gets different vectors
    assert not torch.allclose(x[0, 0], x[0, 1])
    torch.testing.assert_close(x[0, 2] - layer.token.weight[3], layer.position.weight[2])
    trainable = {n for n, p in layer.named_parameters() if p.requires_grad}
    assert ("position.weight" in trainable) == (positions == "learned")
    with pytest.raises(ValueError, match="do not fit"):
        layer(torch.zeros(1, 9, dtype=torch.long))


def test_gpt3_embedding_size_from_its_config():
    assert E.GPT3.token_parameters == 50_257 * 12_288 == 617_558_016
    assert E.GPT3.position_parameters == 2_048 * 12_288


# --- word vectors ----------------------------------------------------------------------------

PAIRS = [("king", "queen"), ("man", "woman"), ("boy", "girl"), ("prince", "princess"),
         ("father", "mother"), ("brother", "sister")]
# what each pair, both of its words alike, does, has and is
ROLES = [(["ruled", "crowned"], ["crown", "throne", "kingdom"], ["royal", "wise"]),
         (["worked", "walked"], ["hat", "coat", "job"], ["tall", "busy"]),
         (["played", "ran"], ["ball", "toy", "kite"], ["little", "young"]),
         (["rode", "fought"], ["horse", "sword", "tower"], ["brave", "young"]),
         (["cooked", "worked"], ["children", "family", "home"], ["kind", "busy"]),
         (["played", "laughed"], ["bike", "game", "room"], ["little", "kind"])]
OTHERS = ["dog", "cat", "bird", "tree", "river", "town", "friend", "baker"]


def parallel_text(n_sentences: int, seed: int) -> str:
    """Synthetic test text: each pair's two words appear in the same contexts, except for the
    pronouns (he/his or she/her) that come with them."""
    rng = random.Random(seed)
    sentences = []
    for _ in range(n_sentences):
        r, g = rng.randrange(len(PAIRS)), rng.randrange(2)
        who, (he, his) = PAIRS[r][g], (("he", "his"), ("she", "her"))[g]
        verbs, things, adjectives = ROLES[r]
        v, t, a, o = (rng.choice(verbs), rng.choice(things), rng.choice(adjectives),
                      rng.choice(OTHERS))
        sentences.append(rng.choice([f"The {a} {who} {v} with {his} {t}.",
                                     f"{he.title()} is a {a} {who} and {he} has a {t}.",
                                     f"The {who} saw a {o} near {his} {t}.",
                                     f"One day the {who} {v}, and {he} was happy."]))
    return " ".join(sentences)


def test_words_of_lowercases_and_drops_punctuation():
    assert E.words_of("The King's crown, the QUEEN's throne!") == \
        ["the", "king's", "crown", "the", "queen's", "throne"]


def test_ppmi_is_positive_where_words_meet_more_often_than_chance():
    counts = np.array([[0.0, 8.0, 1.0], [8.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    table = E.ppmi(counts, alpha=1.0)
    assert (table >= 0).all() and table[0, 1] > 0 and table[0, 0] == 0
    expected = math.log((8 / 20) / ((9 / 20) * (9 / 20)))
    assert table[0, 1] == pytest.approx(expected)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_analogies_on_synthetic_parallel_text_for_any_seed(seed):
    vectors = E.train_word_vectors(parallel_text(20_000, seed), dim=16)
    for (a, a2), (b, b2) in [(PAIRS[0], PAIRS[1]), (PAIRS[3], PAIRS[2]), (PAIRS[4], PAIRS[5])]:
        # king - man + woman = queen, and back: queen - woman + man = king
        assert vectors.analogy(a, b, b2, k=1)[0][0] == a2
        assert vectors.analogy(a2, b2, b, k=1)[0][0] == a


def test_word_vectors_are_deterministic_unit_vectors_with_readable_answers():
    text = parallel_text(5_000, 0)
    start = time.perf_counter()
    first = E.train_word_vectors(text, dim=12)
    assert time.perf_counter() - start < 5
    second = E.train_word_vectors(text, dim=12)
    assert first.words == second.words and torch.equal(first.vectors, second.vectors)
    torch.testing.assert_close(first.vectors.norm(dim=1), torch.ones(len(first)))
    top = first.analogy("king", "man", "woman", k=5)
    assert len(top) == 5 and all(isinstance(w, str) and isinstance(s, float) for w, s in top)
    assert [s for _, s in top] == sorted((s for _, s in top), reverse=True)
    assert not {"king", "man", "woman"} & {w for w, _ in top}
    near = first.most_similar("queen", k=3)
    assert len(near) == 3 and "queen" not in {w for w, _ in near}
    assert near[0][1] == pytest.approx(E.cosine_similarity(first["queen"],
                                                           first[near[0][0]]).item(), abs=1e-5)


def test_unknown_words_and_too_little_text_are_explained():
    vectors = E.train_word_vectors(parallel_text(2_000, 0), dim=8)
    with pytest.raises(KeyError, match="'dragon' is not among"):
        vectors.most_similar("dragon")
    with pytest.raises(ValueError, match="at least 5 times"):
        E.train_word_vectors("just a few words", dim=8)


def test_words_rarer_than_min_share_are_left_out():
    text = parallel_text(2_000, 0) + " zyzzyva" * 20  # 20 in about 20,000 words
    assert "zyzzyva" in E.train_word_vectors(text, dim=8, min_share=1e-4)
    assert "zyzzyva" not in E.train_word_vectors(text, dim=8, min_share=2e-3)


def test_a_large_vocabulary_uses_the_seeded_randomised_svd():
    rng = random.Random(0)
    words = ["".join(letters) for letters in itertools.product("abcdefghijklmn", repeat=3)]
    words = words[:2_300]
    text = " ".join(rng.choice(words) for _ in range(60_000))
    a = E.train_word_vectors(text, dim=8, seed=3, min_count=1, min_share=0)
    b = E.train_word_vectors(text, dim=8, seed=3, min_count=1, min_share=0)
    assert len(a) == 2_300 and torch.equal(a.vectors, b.vectors)


# --- word vectors on the course corpus -------------------------------------------------------

# In the corpus every role has a male and a female form used in the same sentences, and a rank
# (royal or not) and an age (grown-up or child) shown by the words around it. Royal roles are
# one per (age, gender), so analogies that land on them have exactly one right answer.
ROYAL_ANALOGIES = [("king", "man", "woman", "queen"), ("queen", "woman", "man", "king"),
                   ("prince", "boy", "girl", "princess"), ("princess", "girl", "boy", "prince"),
                   ("king", "queen", "princess", "prince"), ("prince", "king", "queen", "princess"),
                   ("queen", "king", "prince", "princess"), ("princess", "prince", "king", "queen")]
# Common roles of the same age and gender are used alike (man, father, uncle), so the answer is
# any one of them.
COMMON_ANALOGIES = [("man", "boy", "girl", {"woman", "mother", "aunt"}),
                    ("boy", "man", "woman", {"girl", "daughter", "sister"}),
                    ("woman", "man", "boy", {"girl", "daughter", "sister"}),
                    ("girl", "woman", "man", {"boy", "son", "brother"})]


@pytest.mark.parametrize("n_bytes, seed", [(3_000_000, 0), (1_000_000, 1), (1_000_000, 2),
                                           (1_000_000, 3), (2_000_000, 7), (2_000_000, 123)])
def test_analogies_on_the_course_corpus_for_any_seed(n_bytes, seed):
    from gptcourse.data import generate_corpus

    vectors = E.train_word_vectors(generate_corpus(n_bytes, seed))
    for a, b, c, answer in ROYAL_ANALOGIES:
        assert vectors.analogy(a, b, c, k=1)[0][0] == answer, (a, b, c, vectors.analogy(a, b, c))
    for a, b, c, answers in COMMON_ANALOGIES:
        assert vectors.analogy(a, b, c, k=1)[0][0] in answers, (a, b, c, vectors.analogy(a, b, c))
    # the steps man -> woman and king -> queen point the same way; king -> prince does not
    step = lambda a, b: vectors[b] - vectors[a]  # noqa: E731
    assert E.cosine_similarity(step("man", "woman"), step("king", "queen")) > 0.6
    assert abs(E.cosine_similarity(step("man", "woman"), step("king", "prince"))) < 0.3


def test_the_pictures_draw():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vectors = E.train_word_vectors(parallel_text(5_000, 0), dim=12)
    pairs = [("man", "woman"), ("king", "queen"), ("boy", "girl")]
    ax = E.plot_pairs(vectors, pairs)
    assert {t.get_text() for t in ax.texts} >= {w for p in pairs for w in p}
    axes = E.pair_axes(vectors, pairs)
    torch.testing.assert_close(axes @ axes.T, torch.eye(2), atol=1e-5, rtol=0)
    assert E.plot_positions(E.sinusoidal_positions(16, 8)).images
    plt.close("all")


def test_the_same_corpus_gives_the_same_vectors():
    from gptcourse.data import generate_corpus

    text = generate_corpus(500_000, seed=4)
    first, second = E.train_word_vectors(text), E.train_word_vectors(text)
    assert first.words == second.words and torch.equal(first.vectors, second.vectors)
    assert first.analogy("king", "man", "woman") == second.analogy("king", "man", "woman")
