"""Helpers of the dask tests: tiny networks, the comparison of partitions."""

from __future__ import annotations

import numpy as np
import torch

from napari_seamless_unet import UNet


def tiny(depth: int = 2, classes: int = 2, task: str = "semantic", seed: int = 0, **kwargs) -> UNet:
    torch.manual_seed(seed)
    return UNet(1, classes, base_channels=4, depth=depth, task=task, **kwargs).eval()


def assert_same_partition(expected: np.ndarray, got: np.ndarray) -> None:
    """The same objects, whatever their ids: the same foreground, and ids that map one to one."""
    assert expected.shape == got.shape
    np.testing.assert_array_equal(expected > 0, got > 0)
    fg = expected > 0
    pairs = np.unique(np.stack([expected[fg], got[fg]]), axis=1)
    assert len(np.unique(pairs[0])) == pairs.shape[1], "an object of segment is split"
    assert len(np.unique(pairs[1])) == pairs.shape[1], "two objects of segment are joined"
