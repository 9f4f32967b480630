"""Shared test options: ``--device`` runs the same suite on CUDA on a machine that has one."""

from __future__ import annotations

import pytest


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", help="torch device for the tests (cpu, cuda, cuda:1, mps)")


@pytest.fixture(scope="session")
def device(request) -> str:
    name = request.config.getoption("--device")
    if name.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            pytest.skip(f"--device {name} asked for, but CUDA is not available")
    return name


@pytest.fixture
def intensity_model_path(tmp_path):
    """A tiny instance model built, not trained, to find bright objects: every convolution passes channel 0 on
    (a 3 x 3 mean at full resolution), and the head calls "foreground" what is brighter than the middle of the
    normalised range. Untrained networks find nothing; this one finds the touching discs (merged where they touch)."""
    import torch
    from torch import nn

    from napari_seamless_unet import UNet, save_model

    model = UNet(base_channels=4, depth=2, dropout=0.0, task="instances")
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                module.weight.zero_()
                module.bias.zero_()
        for block in [*model.down, model.bottom, *(up.conv for up in model.up)]:
            for layer in block:
                if isinstance(layer, nn.Conv2d):
                    layer.weight[0, 0, 1, 1] = 1.0
        for layer in [*model.down[0], *model.up[-1].conv]:
            if isinstance(layer, nn.Conv2d):
                layer.weight[0, 0] = 1.0 / 9
        model.head.weight[1, 0] = 40.0
        model.head.bias[1] = -20.0
    return save_model(model, tmp_path / "bright.unet.pt")
