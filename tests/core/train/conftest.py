"""Fixtures for the training tests: a tiny config factory, two small images of touching discs, weight equality."""

from __future__ import annotations

import pytest
import torch

from napari_seamless_unet.core.synthetic import touching_discs
from napari_seamless_unet.core.train import TrainConfig


@pytest.fixture
def tiny():
    """``tiny(**overrides)``: a network and schedule small enough for a few seconds on two CPU cores."""

    def make(**kwargs) -> TrainConfig:
        base = {
            "base_channels": 4,
            "depth": 2,
            "dropout": 0.0,
            "tile_size": 60,
            "steps": 4,
            "val_every": 1000,
            "checkpoint_every": 1000,
            "device": "cpu",
            "seed": 0,
        }
        base.update(kwargs)
        return TrainConfig(**base)

    return make


@pytest.fixture(scope="module")
def discs():
    pairs = [touching_discs((64, 64), n_objects=6, radius=(6, 10), seed=s) for s in range(2)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


@pytest.fixture
def state_equal():
    """``state_equal(a, b)``: the two networks have the same weights, bit for bit."""

    def equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
        sa, sb = a.state_dict(), b.state_dict()
        return all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)

    return equal
