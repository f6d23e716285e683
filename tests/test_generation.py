"""The generation reference: the filters agree with Hugging Face's logits warpers, bad settings
are refused with a clear error, and the cached loop writes exactly what the uncached one does."""

import math

import numpy as np
import pytest
import torch

from gptcourse import generation
from gptcourse.generation import apply_temperature, next_token, top_k_filter, top_p_filter
from gptcourse.model import GPT, GPTConfig

NEG_INF = float("-inf")
SMALL = GPTConfig(vocab_size=40, block_size=16, n_layer=2, n_head=2, n_embd=16)


@pytest.fixture(scope="module")
def model():
    """A small GPT with weights large enough that its next-token scores are far apart: a
    freshly initialised one scores every token almost alike, and greedy decoding would then
    hinge on rounding."""
    torch.manual_seed(0)
    model = GPT(SMALL)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    return model.eval()


def prompt(*ids):
    return torch.tensor([list(ids)])


# --- the filters -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rows():
    return torch.randn(64, 300, generator=torch.Generator().manual_seed(0)) * 2


@pytest.mark.parametrize("k", [1, 5, 50, 300])
def test_top_k_filter_is_hugging_faces_top_k(rows, k):
    warpers = pytest.importorskip("transformers.generation.logits_process")
    assert torch.equal(top_k_filter(rows, k), warpers.TopKLogitsWarper(k)(None, rows.clone()))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9, 0.95])
def test_top_p_filter_is_hugging_faces_top_p(rows, p):
    warpers = pytest.importorskip("transformers.generation.logits_process")
    assert torch.equal(top_p_filter(rows, p), warpers.TopPLogitsWarper(p)(None, rows.clone()))


def test_temperature_divides_the_logits():
    logits = torch.tensor([2.0, -1.0, 0.5])
    torch.testing.assert_close(apply_temperature(logits, 0.5), torch.tensor([4.0, -2.0, 1.0]))
    torch.testing.assert_close(apply_temperature(logits, 2.0), torch.tensor([1.0, -0.5, 0.25]))


def test_top_k_keeps_ties_at_the_kth_value():
    logits = torch.tensor([3.0, 1.0, 2.0, 2.0, 0.0])
    expected = torch.tensor([3.0, NEG_INF, 2.0, 2.0, NEG_INF])
    assert torch.equal(top_k_filter(logits, 2), expected)


def test_top_k_larger_than_the_vocabulary_keeps_every_token():
    logits = torch.randn(2, 3, 5)
    assert torch.equal(top_k_filter(logits, 99), logits)


def test_top_p_keeps_the_token_that_crosses_p_and_always_one():
    logits = torch.tensor([0.2, 0.5, 0.3]).log()
    assert torch.isfinite(top_p_filter(logits, 0.6)).tolist() == [False, True, True]
    assert torch.isfinite(top_p_filter(logits, 0.01)).tolist() == [False, True, False]


def test_top_p_keeps_the_smallest_set_that_reaches_p(rows):
    for p in (0.3, 0.75, 0.9):
        kept = torch.isfinite(top_p_filter(rows, p))
        probs = torch.softmax(rows.double(), dim=-1)
        mass = (probs * kept).sum(-1)
        smallest_kept = probs.masked_fill(~kept, math.inf).amin(-1)
        assert (mass >= p - 1e-6).all() and (mass - smallest_kept < p + 1e-6).all()
        # and they are the most likely ones: nothing dropped beats anything kept
        assert (probs.masked_fill(kept, 0).amax(-1) <= smallest_kept).all()


def test_top_p_of_one_keeps_every_token_even_the_far_tail():
    # in float32 the running sum of 2048 sorted probabilities reaches 1 before the last ones
    logits = torch.randn(8, 2048, generator=torch.Generator().manual_seed(1)) * 3
    assert torch.equal(top_p_filter(logits, 1.0), logits)


def test_the_filters_leave_their_input_alone():
    logits = torch.randn(3, 7)
    before = logits.clone()
    apply_temperature(logits, 0.5), top_k_filter(logits, 2), top_p_filter(logits, 0.5)
    top_p_filter(logits, 1.0).add_(1.0)  # even the p = 1 shortcut returns a new tensor
    assert torch.equal(logits, before)


@pytest.mark.parametrize("temperature", [0, 0.0, -1.0, math.nan])
def test_apply_temperature_refuses_a_temperature_that_is_not_positive(temperature):
    with pytest.raises(ValueError, match="temperature must be > 0.*greedy"):
        apply_temperature(torch.zeros(3), temperature)


@pytest.mark.parametrize("k", [0, -2, 1.5, True, None])
def test_top_k_filter_refuses_a_k_that_is_not_a_whole_number_from_1(k):
    with pytest.raises(ValueError, match="k must be a whole number >= 1"):
        top_k_filter(torch.zeros(3), k)


def test_numpy_integers_count_as_whole_numbers(model):
    logits = torch.tensor([1.0, 3.0, 2.0])
    assert torch.equal(top_k_filter(logits, np.int64(2)), torch.tensor([NEG_INF, 3.0, 2.0]))
    assert model.generate(prompt(1), np.int64(3), top_k=np.int32(5)).shape == (1, 4)


@pytest.mark.parametrize("p", [0, -0.1, 1.01, math.nan])
def test_top_p_filter_refuses_p_outside_0_1(p):
    with pytest.raises(ValueError, match=r"p must be in \(0, 1\]"):
        top_p_filter(torch.zeros(3), p)


# --- the next token --------------------------------------------------------------------------

def test_temperature_zero_is_the_argmax_whatever_the_filters():
    logits = torch.randn(5, 11)
    for top_k, top_p in [(None, None), (3, None), (None, 0.2)]:
        assert torch.equal(next_token(logits, 0, top_k, top_p), logits.argmax(-1, keepdim=True))


def test_top_k_of_one_samples_the_argmax():
    logits = torch.randn(5, 11)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        assert torch.equal(next_token(logits, 1.0, top_k=1, generator=g),
                           logits.argmax(-1, keepdim=True))


def test_samples_follow_the_softmax_and_stay_inside_the_filters():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, 0.5]]).expand(20_000, 5)
    g = torch.Generator().manual_seed(0)
    counts = torch.bincount(next_token(logits, 1.0, generator=g).flatten(), minlength=5)
    # 20 000 draws: each frequency is within 0.01 of its probability (over 3 standard errors)
    torch.testing.assert_close(counts / 20_000, torch.softmax(logits[0], -1), atol=0.01, rtol=0)
    top2 = next_token(logits, 1.0, top_k=2, generator=g)
    assert set(top2.flatten().tolist()) == {0, 1}
    nucleus = next_token(logits, 1.0, top_p=0.8, generator=g)  # probs .56 .21 .08 .03 .13
    assert set(nucleus.flatten().tolist()) == {0, 1, 4}


# --- the loop --------------------------------------------------------------------------------

def test_generate_returns_the_prompt_then_the_new_tokens(model):
    idx = torch.tensor([[1, 2, 3], [4, 5, 6]])
    out = model.generate(idx, 5, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 8) and out.dtype == torch.int64
    assert torch.equal(out[:, :3], idx)
    assert ((0 <= out) & (out < SMALL.vocab_size)).all()


@pytest.mark.parametrize("settings", [dict(temperature=0), dict(temperature=1.0),
                                      dict(temperature=0.7, top_k=5),
                                      dict(temperature=1.3, top_p=0.9)], ids=str)
def test_cached_and_uncached_generation_write_the_same_tokens(model, settings):
    idx = torch.tensor([[3, 1, 4], [1, 5, 9]])
    outs = [model.generate(idx, 10, use_cache=use_cache,
                           generator=torch.Generator().manual_seed(0), **settings)
            for use_cache in (True, False)]
    assert torch.equal(*outs)


def test_generation_goes_on_past_the_context_with_a_sliding_window(model):
    idx = torch.arange(10).unsqueeze(0)  # 10 + 20 tokens > block_size 16
    cached = model.generate(idx, 20, temperature=0)
    assert cached.shape == (1, 30)
    assert torch.equal(cached, model.generate(idx, 20, temperature=0, use_cache=False))
    # the last step saw only the last 16 tokens
    logits, _ = model(cached[:, -17:-1])
    assert cached[0, -1] == logits[0, -1].argmax()


def test_a_prompt_longer_than_the_context_is_cropped_to_its_last_block_size_tokens(model):
    long = torch.randint(0, 40, (2, 25), generator=torch.Generator().manual_seed(3))
    for use_cache in (True, False):
        out = model.generate(long, 4, temperature=0, use_cache=use_cache)
        assert torch.equal(out[:, :25], long)
        assert torch.equal(out[:, 25:], model.generate(long[:, -16:], 4, temperature=0)[:, 16:])
    assert torch.equal(generation.autoregressive_loop(model, long, 4, temperature=0), out)


def test_the_plain_loop_writes_what_generate_writes(model):
    for settings in ({"temperature": 0}, {"temperature": 0.8, "top_k": 5}, {}):
        def sampled(loop):
            return loop(model, prompt(3, 1, 4), 22, generator=torch.Generator().manual_seed(1),
                        **settings)
        assert torch.equal(sampled(generation.autoregressive_loop),
                           sampled(lambda m, *a, **k: m.generate(*a, use_cache=False, **k)))


def test_the_cache_feeds_each_token_to_the_model_once(model):
    fed = []
    hook = model.wte.register_forward_hook(lambda module, args, out: fed.append(args[0].size(1)))
    try:
        model.generate(prompt(1, 2, 3, 4), 5, temperature=0)
        assert fed == [4, 1, 1, 1, 1]
        fed.clear()
        model.generate(prompt(1, 2, 3, 4), 5, temperature=0, use_cache=False)
        assert fed == [4, 5, 6, 7, 8]
    finally:
        hook.remove()


def test_the_same_seed_writes_the_same_text_and_another_seed_other_text(model):
    def sample(seed):
        return model.generate(prompt(7), 12, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(sample(1), sample(1))
    assert not torch.equal(sample(1), sample(2))


def test_generate_restores_training_mode_and_is_the_models_method(model):
    model.train()
    try:
        out = generation.generate(model, prompt(2, 3), 4, temperature=0)
        assert model.training
    finally:
        model.eval()
    assert torch.equal(out, model.generate(prompt(2, 3), 4, temperature=0))


def test_zero_new_tokens_returns_the_prompt(model):
    assert torch.equal(model.generate(prompt(5, 6), 0), prompt(5, 6))


@pytest.mark.parametrize("idx, settings, message", [
    (torch.zeros(1, 0, dtype=torch.long), {}, "the prompt is empty"),
    (torch.tensor([1, 2]), {}, r"shape \(B, T\)"),
    (torch.tensor([[1.0, 2.0]]), {}, "integer token ids"),
    (prompt(1, 40), {}, "knows ids 0 to 39"),
    (prompt(-1, 2), {}, "knows ids 0 to 39"),
    (prompt(1), {"max_new_tokens": -1}, "max_new_tokens must be a whole number"),
    (prompt(1), {"temperature": -0.5}, "temperature must be >= 0"),
    (prompt(1), {"temperature": math.nan}, "temperature must be >= 0"),
    (prompt(1), {"top_k": 0}, "top_k must be a whole number >= 1"),
    (prompt(1), {"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
    (prompt(1), {"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
], ids=lambda x: x if isinstance(x, str) else None)
def test_bad_settings_are_refused_with_a_clear_error(model, idx, settings, message):
    settings = {"max_new_tokens": 3, **settings}
    with pytest.raises(ValueError, match=message):
        model.generate(idx, **settings)
