"""Batch norm folded into convolutions for inference: the same function, fewer passes, the trained model untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spermlib.models import ARCHS, build_model
from spermlib.models.fusion import fold_batchnorm


def _with_running_stats(model: nn.Module) -> nn.Module:
    """Batch norms with non-trivial statistics and affine parameters, as after training."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model


@pytest.mark.parametrize("arch", ARCHS)
def test_every_batch_norm_is_folded_and_the_outputs_agree(arch):
    torch.manual_seed(0)
    model = _with_running_stats(build_model(arch, 4, "tf_efficientnet_lite0")).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    folded, n = fold_batchnorm(model, 64)
    assert n == n_bn > 0 and not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(3, 3, 64, 64)
    model.eval()
    with torch.inference_mode():
        ref, got = model(x), folded(x)
        feats_ref, feats_got = model.forward_features(x), folded.forward_features(x)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(feats_got, feats_ref, rtol=1e-4, atol=1e-4)  # what Grad-CAM++ explains
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)  # untouched
    assert not folded.training


def test_training_mode_of_the_original_is_restored():
    model = build_model("simplecnn", 3).train()
    fold_batchnorm(model, 32)
    assert model.training and all(m.training for m in model.modules())


class _BatchNormBeforeItsConv(nn.Module):
    """Registration order (conv, bn) but execution order bn → conv: folding by the tree would be wrong."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        return self.conv(self.bn(x)).mean((2, 3))


def test_a_wrong_fold_is_caught_and_the_original_returned():
    model = _with_running_stats(_BatchNormBeforeItsConv())
    with pytest.warns(UserWarning, match="running unfolded"):
        out, n = fold_batchnorm(model, 16)
    assert out is model and n == 0 and isinstance(model.bn, nn.BatchNorm2d)


def test_a_model_without_batch_norm_is_returned_as_is():
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU())
    assert fold_batchnorm(model, 8) == (model, 0)
