"""The reference GPT: the same logits as Hugging Face's GPT-2 on the same weights, parameter
counts, the loss at initialisation, the KV cache, and clear errors."""

import math

import pytest
import torch

from gptcourse.model import (GPT, GPTConfig, gpt2_config, gpt2_state_dict, load_gpt2,
                             parameter_count)

SMALL = GPTConfig(vocab_size=97, block_size=24, n_layer=3, n_head=4, n_embd=32)


def _hf_gpt2(seed=0):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    config = transformers.GPT2Config(vocab_size=97, n_positions=24, n_embd=32, n_layer=3,
                                     n_head=4, bos_token_id=0, eos_token_id=0,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    hf = transformers.GPT2LMHeadModel(config).eval()
    # a random init has zero biases and unit LayerNorms; make every parameter count
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return hf


def test_same_logits_as_hugging_face_gpt2_on_the_same_weights():
    hf = _hf_gpt2()
    ours = GPT(gpt2_config(hf.state_dict(), n_head=4)).eval()
    ours.load_state_dict(gpt2_state_dict(hf.state_dict()))
    idx = torch.randint(0, 97, (3, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf(idx).logits
        got, _ = ours(idx)
    assert ours.config == SMALL
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


def test_gpt2_weights_load_from_a_folder_on_disk(tmp_path):
    hf = _hf_gpt2(seed=2)
    hf.save_pretrained(tmp_path)
    ours = load_gpt2(tmp_path).eval()
    idx = torch.randint(0, 97, (1, 10), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx)[0], hf(idx).logits, rtol=0, atol=1e-4)


def test_a_folder_without_gpt2_weights_is_refused_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_gpt2(tmp_path)
    (tmp_path / "config.json").write_text('{"n_head": 4}')
    with pytest.raises(FileNotFoundError, match="pytorch_model.bin"):
        load_gpt2(tmp_path)


def test_foreign_weight_names_are_refused():
    with pytest.raises(ValueError, match="not a GPT-2 weight name"):
        gpt2_state_dict({"h.0.attn.q_proj.weight": torch.zeros(2, 2)})


@pytest.mark.parametrize("config", [SMALL, GPTConfig(), GPTConfig(bias=False),
                                    GPTConfig(vocab_size=5, block_size=2, n_layer=1, n_head=1,
                                              n_embd=3)], ids=str)
def test_parameter_count_matches_the_built_model(config):
    assert parameter_count(config) == GPT(config).num_parameters()


def test_gpt2_small_has_124_million_parameters_with_the_tied_head():
    assert parameter_count(GPTConfig.gpt2_small()) == 124_439_808


def test_the_head_is_the_token_embedding():
    model = GPT(SMALL)
    assert model.lm_head.weight is model.wte.weight


def test_the_loss_at_initialisation_is_about_ln_vocab_size():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=2048, n_layer=2))
    idx, targets = torch.randint(0, 2048, (2, 4, 64))
    _, loss = model(idx, targets)
    assert abs(loss.item() - math.log(2048)) < 0.1


def test_ignored_targets_leave_the_loss_out():
    torch.manual_seed(0)
    model = GPT(SMALL)
    idx = torch.randint(0, 97, (2, 8))
    targets = idx.clone()
    targets[:, :4] = -100
    logits, loss = model(idx, targets)
    expected = torch.nn.functional.cross_entropy(logits[:, 4:].flatten(0, 1),
                                                 idx[:, 4:].flatten())
    torch.testing.assert_close(loss, expected)


def test_cached_features_equal_the_full_pass_in_any_chunks():
    torch.manual_seed(0)
    model = GPT(SMALL).eval()
    idx = torch.randint(0, 97, (2, 20))
    with torch.no_grad():
        full = model.features(idx)
        caches = model.new_caches(2)
        chunks = [model.features(idx[:, a:b], caches) for a, b in ((0, 7), (7, 8), (8, 20))]
    torch.testing.assert_close(torch.cat(chunks, dim=1), full, rtol=0, atol=1e-5)
    assert caches[0].length == 20


def test_cached_and_uncached_greedy_generation_agree_past_the_context():
    torch.manual_seed(0)
    model = GPT(SMALL)
    prompt = torch.randint(0, 97, (2, 5))
    cached = model.generate(prompt, 40, temperature=0)  # 45 tokens > block_size 24
    uncached = model.generate(prompt, 40, temperature=0, use_cache=False)
    assert torch.equal(cached, uncached)
    assert torch.equal(cached[:, :5], prompt)


@pytest.mark.parametrize("idx, message", [
    (torch.zeros(1, 25, dtype=torch.long), "block_size=24"),
    (torch.zeros(1, 0, dtype=torch.long), "at least one token"),
    (torch.zeros(4, dtype=torch.long), r"shape \(B, T\)"),
    (torch.zeros(1, 3), r"shape \(B, T\)"),
])
def test_bad_inputs_are_refused_clearly(idx, message):
    with pytest.raises(ValueError, match=message):
        GPT(SMALL)(idx)


@pytest.mark.parametrize("fields, message", [
    ({"n_embd": 30, "n_head": 4}, "divide"),
    ({"n_layer": 0}, "positive whole number"),
    ({"vocab_size": 2.5}, "positive whole number"),
])
def test_bad_configs_are_refused_clearly(fields, message):
    with pytest.raises(ValueError, match=message):
        GPTConfig(**fields)
