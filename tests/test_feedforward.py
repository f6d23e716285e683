"""The feed-forward reference agrees with torch's own layers."""

import torch
import torch.nn.functional as F
from torch import nn

from gptcourse.feedforward import MLP, gelu, layer_norm, mlp


def test_gelu_is_torchs_exact_gelu():
    x = torch.linspace(-8, 8, 1001, dtype=torch.float64)
    torch.testing.assert_close(gelu(x), F.gelu(x))


def test_layer_norm_is_torchs_layer_norm():
    torch.manual_seed(0)
    ln = nn.LayerNorm(12)
    nn.init.normal_(ln.weight)
    nn.init.normal_(ln.bias)
    x = torch.randn(3, 5, 12) * 4 + 7
    torch.testing.assert_close(layer_norm(x, ln.weight, ln.bias), ln(x))


def test_mlp_function_is_the_mlp_module_with_exact_gelu():
    torch.manual_seed(0)
    module, x = MLP(8, approximate="none"), torch.randn(2, 3, 8)
    torch.testing.assert_close(
        mlp(x, module.fc.weight, module.fc.bias, module.proj.weight, module.proj.bias), module(x))


def test_the_mlp_treats_every_position_on_its_own():
    torch.manual_seed(0)
    module, x = MLP(8), torch.randn(1, 4, 8)
    changed = x.clone()
    changed[:, 3] += 1.0
    torch.testing.assert_close(module(x)[:, :3], module(changed)[:, :3])
