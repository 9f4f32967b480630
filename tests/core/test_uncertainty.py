"""The uncertainty map: the normalised entropy of the test-time-augmented probabilities, tiled exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_seamless_unet import Cancelled, UNet, UNetInputError, predict, uncertainty
from napari_seamless_unet.core.metrics import roc_auc
from napari_seamless_unet.core.uncertainty import entropy


@pytest.fixture(scope="module")
def model():
    import torch

    torch.manual_seed(0)
    return UNet(1, 3, 4, 2, task="semantic").eval()


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).random((130, 150)).astype(np.float32)


def test_the_map_is_the_normalised_entropy_of_the_tta_probabilities(model, image, device):
    u = uncertainty(model, image, device=device)
    p = predict(model, image, tta=True, device=device)
    assert u.shape == image.shape and u.dtype == np.float32
    assert u.min() >= 0.0 and u.max() <= 1.0
    expected = -(np.clip(p, 1e-12, 1) * np.log(np.clip(p, 1e-12, 1))).sum(0) / math.log(3)
    np.testing.assert_allclose(u, expected, atol=1e-5)


@pytest.mark.parametrize("tile", [(60, 60), (92, 76)])
def test_tiled_equals_untiled(model, image, tile, device):
    whole = uncertainty(model, image, tile_shape=(188, 204), device=device)
    np.testing.assert_allclose(uncertainty(model, image, tile_shape=tile, device=device), whole, atol=1e-5)


def test_stacks_and_out(model, image):
    stack = np.stack([image, image[::-1].copy()])
    out = np.zeros(stack.shape, np.float32)
    result = uncertainty(model, stack, axes="ZYX", out=out)
    assert result is out
    np.testing.assert_allclose(out[1], uncertainty(model, image[::-1].copy()), atol=1e-5)
    with pytest.raises(UNetInputError, match="expected"):
        uncertainty(model, stack, axes="ZYX", out=np.zeros((2, 5, 5), np.float32))


def test_a_stopped_run_hands_back_what_it_finished(model, image):
    with pytest.raises(Cancelled) as info:
        uncertainty(model, np.stack([image] * 3), axes="ZYX", should_stop=lambda: True)
    assert info.value.partial.shape == (3, *image.shape)


def test_entropy_bounds():
    assert entropy(np.array([[1.0], [0.0]]))[0] == pytest.approx(0.0, abs=1e-6)
    assert entropy(np.array([[0.5], [0.5]]))[0] == pytest.approx(1.0)


def test_roc_auc():
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == 1.0
    assert roc_auc(np.array([0.9, 0.8, 0.2, 0.1]), np.array([0, 0, 1, 1])) == 0.0
    assert roc_auc(np.array([0.5, 0.5, 0.5, 0.5]), np.array([0, 1, 0, 1])) == 0.5
    assert math.isnan(roc_auc(np.array([0.1, 0.2]), np.array([0, 0])))
