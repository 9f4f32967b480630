"""CPU inference with the convolutions' ReLUs fused (core/fused.py): same outputs, caller's model untouched."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from napari_seamless_unet import UNet, predict
from napari_seamless_unet.core import fused, inference
from napari_seamless_unet.core.fused import FusedConvReLU, fuse_for_cpu_inference, fused_relu_available

pytestmark = pytest.mark.skipif(not fused_relu_available(), reason="this torch build has no fused oneDNN convolution")


def _eval_net(batch_norm: bool) -> UNet:
    torch.manual_seed(0)
    model = UNet(1, 3, base_channels=4, depth=2, batch_norm=batch_norm)
    if batch_norm:  # running statistics and affine parameters far from the identity, so a wrong fold shows
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                nn.init.uniform_(module.weight, 0.5, 1.5)
                nn.init.uniform_(module.bias, -0.2, 0.2)
    return model.eval().requires_grad_(False)


def _fused_count(network: nn.Module) -> int:
    return sum(isinstance(m, FusedConvReLU) for m in network.modules())


@pytest.mark.parametrize("batch_norm", [False, True])
def test_every_convolution_with_a_relu_is_fused_and_the_output_is_the_same_in_float32(batch_norm):
    model = _eval_net(batch_norm)
    net = fuse_for_cpu_inference(copy.deepcopy(model))
    # 2 per double convolution: depth 2 -> 2 down, 1 bottom, 2 up blocks; the up-convolutions and head are not
    assert _fused_count(net) == 10
    assert not any(isinstance(m, (nn.ReLU, nn.BatchNorm2d)) for m in net.modules())
    x = torch.randn(2, 1, 60, 60).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        np.testing.assert_allclose(net(x).numpy(), model(x).numpy(), rtol=1e-4, atol=1e-5)


def test_under_bf16_autocast_the_fused_network_runs_in_bf16_and_agrees():
    model = _eval_net(False)
    net = fuse_for_cpu_inference(copy.deepcopy(model))
    x = torch.randn(1, 1, 60, 60)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        got, expected = net(x), model(x)
    assert got.dtype == expected.dtype == torch.bfloat16
    np.testing.assert_allclose(got.float().numpy(), expected.float().numpy(), atol=0.05)


def test_a_training_network_is_left_alone():
    model = UNet(1, 2, base_channels=4, depth=2).train()
    assert fuse_for_cpu_inference(model) is model
    assert _fused_count(model) == 0


def test_prediction_on_the_cpu_runs_fused_and_leaves_the_callers_model_as_it_was(monkeypatch):
    model = _eval_net(True)
    before = copy.deepcopy(model.state_dict())
    runner = inference.TileRunner(model, torch.device("cpu"), "fp32")
    assert _fused_count(runner.network) == 10
    assert _fused_count(model) == 0 and any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    image = np.random.default_rng(1).random((70, 90)).astype(np.float32)
    got = predict(model, image, precision="fp32", tile_shape=(60, 60))  # several tiles, stitched
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])
    monkeypatch.setattr(fused, "fused_relu_available", lambda: False)
    np.testing.assert_allclose(got, predict(model, image, precision="fp32", tile_shape=(60, 60)), atol=1e-5)


def test_without_the_private_op_prediction_runs_the_plain_network(monkeypatch):
    monkeypatch.setattr(fused, "fused_relu_available", lambda: False)
    runner = inference.TileRunner(_eval_net(False), torch.device("cpu"), "fp32")
    assert _fused_count(runner.network) == 0


def test_other_devices_and_3d_networks_are_not_fused(device):
    runner3d = inference.TileRunner(UNet(1, 2, base_channels=4, depth=1, ndim=3), torch.device("cpu"), "fp32")
    assert _fused_count(runner3d.network) == 0
    runner = inference.TileRunner(_eval_net(False), torch.device(device), "fp32")
    assert _fused_count(runner.network) == (10 if torch.device(device).type == "cpu" else 0)
