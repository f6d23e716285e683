"""gptcourse.rollouts: the layout of sampled answers (ids, masks, lengths, ended rows), the
KV cache giving the same tokens as recomputing, seeding, limits and errors."""

import re

import pytest
import torch

from gptcourse.data import generate_corpus
from gptcourse.finetuning import END, PAD, add_chat_tokens, chat_ids, encode_chat
from gptcourse.model import GPT, GPTConfig
from gptcourse.rlhf import sequence_logprobs
from gptcourse.rollouts import Rollout, sample_answers
from gptcourse.tokenizer import Tokenizer

CHAT = [{"role": "user", "content": "Write a story about a girl named Mia."}]


@pytest.fixture(scope="module")
def chat_model():
    """A tiny random chat model (a context of 96 tokens) whose end marker is likely enough
    that some of eight rows end within 40 tokens and some do not: the final LayerNorm's bias
    points along the end marker's embedding, which raises its logit at every position."""
    tokenizer = Tokenizer.train(generate_corpus(20_000, seed=5), 300)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=300, block_size=96, n_layer=1, n_head=2, n_embd=16))
    model, tokenizer = add_chat_tokens(model, tokenizer)
    direction = torch.randn(16, generator=torch.Generator().manual_seed(0))
    direction /= direction.norm()
    with torch.no_grad():
        model.ln_f.bias.copy_(2 * direction)
        model.wte.weight[chat_ids(tokenizer)[END]] = direction
    return model, tokenizer


def _sample(chat_model, k=8, seed=0, **settings):
    model, tokenizer = chat_model
    settings = {"max_new_tokens": 40, **settings}
    return sample_answers(model, tokenizer, CHAT, k,
                          generator=torch.Generator().manual_seed(seed), **settings)


def test_rows_are_prompt_answer_end_then_padding_with_the_mask_on_the_answer(chat_model):
    model, tokenizer = chat_model
    ids = chat_ids(tokenizer)
    prompt = encode_chat(tokenizer, CHAT, add_generation_prompt=True)
    P = len(prompt)
    r = _sample(chat_model)
    assert r.ended.any() and not r.ended.all()  # the fixture does its job
    T = int(r.lengths.max())
    assert r.ids.shape == r.mask.shape == (8, T) and r.ids.dtype == torch.long
    assert r.mask.dtype == torch.float32 and r.lengths.dtype == torch.long
    assert r.ended.dtype == torch.bool and len(r.texts) == 8
    assert (r.ids[:, :P] == torch.tensor(prompt)).all()
    assert (r.mask[:, :P] == 0).all()  # so mask[:, 0] == 0, as sequence_logprobs requires
    for b in range(8):
        n = int(r.lengths[b])
        assert r.mask[b].tolist() == [0.0] * P + [1.0] * (n - P) + [0.0] * (T - n)
        assert (r.ids[b, n:] == ids[PAD]).all()
        answer = r.ids[b, P:n].tolist()
        assert (answer[-1] == ids[END]) == bool(r.ended[b])  # the end marker is in the mask
        assert ids[END] not in answer[:-1]  # a row stops at its first end marker
        if not r.ended[b]:
            assert n == P + 40  # it ran to max_new_tokens
        text = tokenizer.decode(answer[:-1] if r.ended[b] else answer).strip()
        assert r.texts[b] == text and END not in text
    logits = model(r.ids)[0]
    assert sequence_logprobs(logits, r.ids, r.mask).shape == (8,)


def test_the_cache_gives_the_same_tokens_as_recomputing_the_prefix(chat_model):
    cached = _sample(chat_model, seed=3)
    recomputed = _sample(chat_model, seed=3, use_cache=False)
    assert torch.equal(cached.ids, recomputed.ids)
    assert torch.equal(cached.lengths, recomputed.lengths) and cached.texts == recomputed.texts


def test_the_same_seed_gives_the_same_answers_and_another_seed_others(chat_model):
    first, again, other = _sample(chat_model, seed=5), _sample(chat_model, seed=5), \
        _sample(chat_model, seed=6)
    assert torch.equal(first.ids, again.ids) and first.texts == again.texts
    assert first.texts != other.texts


def test_the_answer_stops_where_the_context_is_full(chat_model):
    model, tokenizer = chat_model
    long_chat = [{"role": "user", "content": "Once upon a time, there was a queen. " * 3}]
    P = len(encode_chat(tokenizer, long_chat, add_generation_prompt=True))
    assert 60 < P < 96
    r = sample_answers(model, tokenizer, long_chat, 4, max_new_tokens=100,
                       generator=torch.Generator().manual_seed(0))
    assert r.ids.shape[1] <= 96 and (r.lengths <= 96).all()
    assert not r.ended.all() and ((r.lengths == 96) | r.ended).all()


def test_sampling_leaves_the_models_mode_as_it_was(chat_model):
    model, _ = chat_model
    model.train()
    _sample(chat_model, k=1)
    assert model.training
    model.eval()


@pytest.mark.parametrize("settings, says", [
    ({"k": 0}, "k, the number of answers, must be a whole number >= 1"),
    ({"k": 2.0}, "k, the number of answers"),
    ({"temperature": 0}, "temperature must be > 0"),
    ({"temperature": float("nan")}, "temperature must be > 0"),
    ({"max_new_tokens": 0}, "max_new_tokens must be a whole number >= 1"),
])
def test_bad_settings_are_refused(chat_model, settings, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        _sample(chat_model, **settings)


def test_a_chat_that_leaves_no_room_for_an_answer_is_refused(chat_model):
    model, tokenizer = chat_model
    with pytest.raises(ValueError, match="no room is left for an answer|more than the model"):
        sample_answers(model, tokenizer, [{"role": "user", "content": "a b c d e f " * 40}], 2)
    ids = encode_chat(tokenizer, CHAT, add_generation_prompt=True)
    exact = GPT(GPTConfig(**{**vars(model.config), "block_size": len(ids)}))
    with pytest.raises(ValueError, match="no room is left for an answer"):
        sample_answers(exact, tokenizer, CHAT, 2)


def test_rollouts_of_several_prompts_join_and_pad_again(chat_model):
    model, tokenizer = chat_model
    pad = chat_ids(tokenizer)[PAD]
    short = _sample(chat_model, k=2, seed=1, max_new_tokens=3)
    long = _sample(chat_model, k=3, seed=2)
    both = Rollout.cat([short, long], pad)
    T = long.ids.shape[1]
    assert both.ids.shape == both.mask.shape == (5, T)
    assert torch.equal(both.ids[2:], long.ids) and torch.equal(both.mask[2:], long.mask)
    S = short.ids.shape[1]
    assert torch.equal(both.ids[:2, :S], short.ids) and (both.ids[:2, S:] == pad).all()
    assert (both.mask[:2, S:] == 0).all()
    assert both.texts == short.texts + long.texts
    assert torch.equal(both.lengths, torch.cat([short.lengths, long.lengths]))
    assert torch.equal(both.ended, torch.cat([short.ended, long.ended]))
    with pytest.raises(ValueError, match="at least one rollout"):
        Rollout.cat([], pad)
