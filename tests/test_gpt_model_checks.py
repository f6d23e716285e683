"""Lesson 05's check rejects plausible wrong parameter counts, each with a hint that names the
mistake, and accepts differently written correct counts."""

import torch

from catalogue import catalogue_tests


def _count(config, *, positions=True, head_twice=False, layer_norms=True, final_norm=True,
           norm_bias=True, biases=True, widen=4, qkv=3, out_proj=True, per_head=False,
           blocks=None):
    """A learner's count, written term by term, with one term optionally wrong."""
    V, T, C = config.vocab_size, config.block_size, config.n_embd
    L = config.n_layer if blocks is None else blocks
    b = 1 if biases else 0
    norm = (2 * C if norm_bias else C) if layer_norms else 0
    attn = qkv * C * C + b * qkv * C + ((C * C + b * C) if out_proj else 0)
    if per_head:
        attn *= config.n_head
    mlp = widen * C * C + b * widen * C + widen * C * C + b * C
    total = V * C + (T * C if positions else 0) + L * (2 * norm + attn + mlp)
    total += norm if final_norm else 0
    return total + (V * C if head_twice else 0)


def forgets_position_embeddings(config):
    return _count(config, positions=False)


def counts_tied_head_twice(config):
    return _count(config, head_twice=True)


def forgets_layer_norms(config):
    return _count(config, layer_norms=False)


def forgets_final_layer_norm(config):
    return _count(config, final_norm=False)


def layer_norm_without_bias(config):
    return _count(config, norm_bias=False)


def forgets_linear_biases(config):
    return _count(config, biases=False)


def mlp_not_widened(config):
    return _count(config, widen=1)


def one_projection_for_qkv(config):
    return _count(config, qkv=1)


def forgets_attention_output_projection(config):
    return _count(config, out_proj=False)


def counts_attention_per_head(config):
    return _count(config, per_head=True)


def counts_one_block(config):
    return _count(config, blocks=1)


def returns_a_float(config):
    return float(_count(config))


WRONG = {"gpt_model.parameter_count": {
    forgets_position_embeddings: ["position embedding"],
    counts_tied_head_twice: ["tied", "once"],
    forgets_layer_norms: ["LayerNorm"],
    forgets_final_layer_norm: ["final LayerNorm"],
    layer_norm_without_bias: ["bias as well as a weight"],
    forgets_linear_biases: ["bias"],
    mlp_not_widened: ["4 × n_embd"],
    one_projection_for_qkv: ["three input projections"],
    forgets_attention_output_projection: ["output projection"],
    counts_attention_per_head: ["heads"],
    counts_one_block: ["n_layer blocks"],
}}


def count_by_building_the_model(config):
    from gptcourse.model import GPT

    with torch.device("meta"):  # shapes only, no memory
        model = GPT(config)
    return sum(p.numel() for p in model.parameters())


def count_per_part(config):
    C = config.n_embd
    embeddings = (config.vocab_size + config.block_size) * C
    block = 2 * (2 * C) + (3 * C * C + 3 * C) + (C * C + C) + (8 * C * C + 5 * C)
    return embeddings + config.n_layer * block + 2 * C


def count_as_polynomial(config):
    C, L = config.n_embd, config.n_layer
    return 12 * L * C * C + 13 * L * C + 2 * C + (config.vocab_size + config.block_size) * C


CORRECT = {"gpt_model.parameter_count": [count_by_building_the_model, count_per_part,
                                          count_as_polynomial]}

(test_wrong_implementation_is_rejected_with_feedback_naming_the_mistake,
 test_correct_variants_pass, test_the_stub_is_not_attempted) = catalogue_tests(WRONG, CORRECT)


def test_a_float_count_is_refused():
    from gptcourse import check

    result = check("gpt_model.parameter_count", returns_a_float)
    assert result.status == "failed" and "integer" in result.message
