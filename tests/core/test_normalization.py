"""Intensity normalisation: percentiles per channel and plane, and sparse images that must not collapse."""

from __future__ import annotations

import numpy as np
import pytest

from napari_seamless_unet.core.normalization import Normalization, apply_statistics


def sparse_image(seed=0):
    """Mostly background (0), with a few bright objects covering 0.05% of the pixels."""
    rng = np.random.default_rng(seed)
    image = np.zeros((200, 200), np.float32)
    image[rng.integers(0, 200, 20), rng.integers(0, 200, 20)] = 100.0
    image[rng.integers(0, 200, 5), rng.integers(0, 200, 5)] = 50.0
    return image


def test_a_sparse_image_keeps_its_objects_and_warns():
    image = sparse_image()
    with pytest.warns(UserWarning, match="almost all one value"):
        offset, scale = Normalization().plane_statistics(image, "YX", {})
    normalised = apply_statistics(image[None], offset, scale)[0]
    assert normalised[image == 0].max() == 0
    assert normalised[image == 100].min() == pytest.approx(1.0)  # the bright objects are not mapped to 0
    assert 0 < normalised[image == 50].max() < 1


def test_an_ordinary_image_uses_the_percentiles_without_warning(recwarn):
    image = np.random.default_rng(0).normal(10, 2, (100, 100))
    offset, scale = Normalization(low=1, high=99).plane_statistics(image, "YX", {})
    assert offset[0] == pytest.approx(np.percentile(image, 1))
    assert 1 / scale[0] == pytest.approx(np.percentile(image, 99) - np.percentile(image, 1), rel=1e-5)
    assert not [w for w in recwarn if "one value" in str(w.message)]


def test_a_constant_channel_maps_to_zero():
    _, scale = Normalization().plane_statistics(np.full((3, 20, 20), 7.0), "CYX", {})
    assert np.all(scale == 0)
