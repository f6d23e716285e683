"""The attention reference: agrees with torch's fused kernel, is causal, and refuses bad
shapes with a clear message."""

import pytest
import torch
import torch.nn.functional as F

from gptcourse.attention import (KVCache, MultiHeadAttention, causal_mask, merge_heads,
                                 scaled_dot_product_attention, split_heads)


def outside_attention(module: MultiHeadAttention, x: torch.Tensor) -> torch.Tensor:
    """The same layer computed independently: torch's kernel, heads cut with unflatten."""
    B, T, C = x.shape
    q, k, v = F.linear(x, module.qkv.weight, module.qkv.bias).split(C, dim=-1)
    heads = [t.unflatten(-1, (module.n_head, -1)).permute(0, 2, 1, 3) for t in (q, k, v)]
    out = F.scaled_dot_product_attention(*heads, is_causal=True)
    return F.linear(out.permute(0, 2, 1, 3).flatten(2), module.proj.weight, module.proj.bias)


@pytest.mark.parametrize("B, T, C, nh", [(2, 7, 32, 4), (1, 1, 8, 2), (3, 16, 48, 6)])
def test_multi_head_attention_matches_torchs_fused_attention(B, T, C, nh):
    torch.manual_seed(0)
    module, x = MultiHeadAttention(C, nh), torch.randn(B, T, C)
    expected = outside_attention(module, x)
    fast = module(x)
    explicit, weights = module(x, return_weights=True)
    torch.testing.assert_close(fast, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(explicit, expected, rtol=1e-5, atol=1e-5)
    assert weights.shape == (B, nh, T, T)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, nh, T))


@pytest.mark.parametrize("chunks", [(5, 1, 1, 3), (1,) * 10, (10,), (4, 6)])
def test_attention_with_a_kv_cache_equals_the_full_pass(chunks):
    torch.manual_seed(0)
    module, x = MultiHeadAttention(24, 3), torch.randn(2, sum(chunks), 24)
    expected, expected_weights = module(x, return_weights=True)
    cache, start, outs = KVCache(2, 3, max_len=16, head_size=8), 0, []
    for n in chunks:
        fast = module(x[:, start:start + n], cache=cache)
        cache.length = start  # again, returning the weights this time
        explicit, weights = module(x[:, start:start + n], return_weights=True, cache=cache)
        torch.testing.assert_close(fast, explicit, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(weights, expected_weights[:, :, start:start + n, :start + n])
        outs.append(fast)
        start += n
    torch.testing.assert_close(torch.cat(outs, dim=1), expected, rtol=1e-5, atol=1e-5)


def test_a_full_kv_cache_refuses_more_tokens():
    cache = KVCache(1, 2, max_len=4, head_size=3)
    cache.append(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 3))
    with pytest.raises(ValueError, match="at most 4 tokens"):
        cache.append(torch.zeros(1, 2, 2, 3), torch.zeros(1, 2, 2, 3))


def test_no_token_sees_the_future():
    torch.manual_seed(1)
    module, x = MultiHeadAttention(16, 2), torch.randn(1, 6, 16)
    changed = x.clone()
    changed[:, 4:] = torch.randn(1, 2, 16)
    torch.testing.assert_close(module(x)[:, :4], module(changed)[:, :4])
    assert not torch.allclose(module(x)[:, 4:], module(changed)[:, 4:])
    _, weights = module(x, return_weights=True)
    assert (weights[..., ~causal_mask(6)] == 0).all()


def test_split_and_merge_are_inverse():
    x = torch.randn(2, 5, 12)
    heads = split_heads(x, 3)
    assert heads.shape == (2, 3, 5, 4)
    torch.testing.assert_close(heads[:, 1], x[..., 4:8])  # head 1 holds channels 4..7
    torch.testing.assert_close(merge_heads(heads), x)


def test_attention_weights_are_a_distribution_over_earlier_tokens():
    q, k, v = torch.randn(3, 2, 5, 4).unbind(0)
    out, weights = scaled_dot_product_attention(q, k, v, causal_mask(5))
    assert out.shape == (2, 5, 4)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 5))
    torch.testing.assert_close(weights[:, 0, 0], torch.ones(2))  # the first token sees itself


def test_bad_shapes_are_refused_clearly():
    with pytest.raises(ValueError, match="at least 1"):
        causal_mask(0)
    with pytest.raises(ValueError, match="C=10 must divide into n_head=4"):
        split_heads(torch.randn(1, 2, 10), 4)
    with pytest.raises(ValueError, match="n_embd=10 must divide into n_head=4"):
        MultiHeadAttention(10, 4)
