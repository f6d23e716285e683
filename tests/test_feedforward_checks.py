"""Lesson 04's checks reject plausible wrong feed-forward code, each with a hint that names the
mistake, and accept differently written correct code."""

import math

import torch
import torch.nn.functional as F

from catalogue import catalogue_tests


# --- feedforward.gelu ------------------------------------------------------------------------

def gelu_as_relu(x):
    return torch.clamp(x, min=0)


def gelu_as_silu(x):
    return x * torch.sigmoid(x)


def gelu_sigmoid_approximation(x):
    return x * torch.sigmoid(1.702 * x)


def gelu_tanh_without_cubic(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * x))


def gelu_tanh_without_sqrt_2_over_pi(x):
    return 0.5 * x * (1 + torch.tanh(x + 0.044715 * x ** 3))


def gelu_erf_without_sqrt2(x):
    return 0.5 * x * (1 + torch.erf(x))


def gelu_through_python_math(x):
    return torch.tensor([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.flatten().tolist()]
                        ).reshape(x.shape)


def gelu_exact(x):
    return x * 0.5 * (1.0 + torch.special.erf(x * 2 ** -0.5))


def gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def gelu_via_normal_cdf(x):
    return x * torch.distributions.Normal(0.0, 1.0).cdf(x)


# --- feedforward.layer_norm ------------------------------------------------------------------

def ln_unbiased(x, weight, bias, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(x.var(-1, keepdim=True) + eps) * weight + bias


def ln_eps_outside(x, weight, bias, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    std = x.var(-1, keepdim=True, unbiased=False).sqrt()
    return (x - mean) / (std + eps) * weight + bias


def ln_over_tokens(x, weight, bias, eps=1e-5):
    mean = x.mean(-2, keepdim=True)
    var = x.var(-2, keepdim=True, unbiased=False)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def ln_without_affine(x, weight, bias, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + eps)


def ln_fixed_eps(x, weight, bias, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + 1e-5) * weight + bias


def ln_mean_of_squares_minus_squared_mean(x, weight, bias, eps=1e-5):
    mean = x.mean(dim=-1, keepdim=True)
    var = (x * x).mean(dim=-1, keepdim=True) - mean ** 2
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def ln_fused(x, weight, bias, eps=1e-5):
    return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)


def ln_by_hand(x, weight, bias, eps=1e-5):
    centred = x - x.mean(dim=-1, keepdim=True)
    return centred * torch.rsqrt(centred.pow(2).mean(dim=-1, keepdim=True) + eps) * weight + bias


# --- feedforward.mlp -------------------------------------------------------------------------

def mlp_weights_not_transposed(x, w_fc, b_fc, w_proj, b_proj):
    return F.gelu(x @ w_fc + b_fc) @ w_proj + b_proj


def mlp_activation_after_projection(x, w_fc, b_fc, w_proj, b_proj):
    return F.gelu((x @ w_fc.T + b_fc) @ w_proj.T + b_proj)


def mlp_without_activation(x, w_fc, b_fc, w_proj, b_proj):
    return (x @ w_fc.T + b_fc) @ w_proj.T + b_proj


def mlp_with_relu(x, w_fc, b_fc, w_proj, b_proj):
    return F.relu(x @ w_fc.T + b_fc) @ w_proj.T + b_proj


def mlp_without_biases(x, w_fc, b_fc, w_proj, b_proj):
    return F.gelu(x @ w_fc.T) @ w_proj.T


def mlp_with_linear(x, w_fc, b_fc, w_proj, b_proj):
    return F.linear(F.gelu(F.linear(x, w_fc, b_fc)), w_proj, b_proj)


def mlp_with_einsum_and_tanh_gelu(x, w_fc, b_fc, w_proj, b_proj):
    h = F.gelu(torch.einsum("btc,hc->bth", x, w_fc) + b_fc, approximate="tanh")
    return torch.einsum("bth,ch->btc", h, w_proj) + b_proj


WRONG = {
    "feedforward.gelu": {
        gelu_as_relu: ["That is ReLU"],
        gelu_as_silu: ["That is SiLU"],
        gelu_sigmoid_approximation: ["sigmoid approximation"],
        gelu_tanh_without_cubic: ["cubic term"],
        gelu_tanh_without_sqrt_2_over_pi: ["missing the factor √(2/π)"],
        gelu_erf_without_sqrt2: ["divide x by √2"],
        gelu_through_python_math: ["gradient does not flow"],
    },
    "feedforward.layer_norm": {
        ln_unbiased: ["biased variance"],
        ln_eps_outside: ["inside the square root"],
        ln_over_tokens: ["last axis"],
        ln_without_affine: ["scale by `weight`"],
        ln_fixed_eps: ["`eps` argument"],
        ln_mean_of_squares_minus_squared_mean: ["E[x²] - mean²", "float32 keeps about seven"],
    },
    "feedforward.mlp": {
        mlp_weights_not_transposed: ["transpose"],
        mlp_activation_after_projection: ["between the two projections"],
        mlp_without_activation: ["just one linear map"],
        mlp_with_relu: ["not ReLU"],
        mlp_without_biases: ["Add the biases"],
    },
}

CORRECT = {
    "feedforward.gelu": [gelu_exact, gelu_tanh, gelu_via_normal_cdf,
                         lambda x: F.gelu(x, approximate="tanh")],
    "feedforward.layer_norm": [ln_fused, ln_by_hand],
    "feedforward.mlp": [mlp_with_linear, mlp_with_einsum_and_tanh_gelu],
}


(test_wrong_implementation_is_rejected_with_feedback_naming_the_mistake,
 test_correct_variants_pass, test_the_stub_is_not_attempted) = catalogue_tests(WRONG, CORRECT)


def test_gelu_in_float64_for_float32_input_passes_with_a_note():
    from gptcourse import check

    result = check("feedforward.gelu", lambda x: gelu_exact(x.double()))
    assert result.passed and "Note:" in result.message and "float64" in result.message
