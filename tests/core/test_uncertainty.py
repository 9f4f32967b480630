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


def _views(model, image, device):
    """The 8 views' probabilities, each predicted on the flipped and rotated image and turned back."""
    views = []
    for k in range(4):
        for flip in (False, True):
            view = np.ascontiguousarray(np.rot90(image[:, ::-1] if flip else image, k))
            p = np.rot90(predict(model, view, device=device), -k, axes=(1, 2))
            views.append(p[:, :, ::-1] if flip else p)
    return np.stack(views)


def test_disagreement_is_the_mutual_information_of_the_views(model, image, device):
    # Sides divisible by 2**depth: a flipped image then pools on the same grid as the flipped tile does.
    image = np.ascontiguousarray(image[:128, :148])
    views = _views(model, image, device)
    expected = np.clip(entropy(views.mean(0)) - np.mean([entropy(v) for v in views], axis=0), 0, 1)
    d = uncertainty(model, image, measure="disagreement", device=device)
    assert d.shape == image.shape and d.dtype == np.float32
    np.testing.assert_allclose(d, expected, atol=1e-5)
    assert d.min() >= 0.0 and d.max() <= 1.0
    # The entropy of the mean bounds it: the views' own hesitation is taken out, not added.
    assert np.all(d <= uncertainty(model, image, device=device) + 1e-6)
    assert d.max() > 1e-3  # an untrained network's views do disagree somewhere


def test_disagreement_tiled_equals_untiled_and_rescaled(model, image, device):
    whole = uncertainty(model, image, measure="disagreement", tile_shape=(188, 204), device=device)
    tiled = uncertainty(model, image, measure="disagreement", tile_shape=(60, 60), device=device)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
    sized = UNet(1, 3, 4, 2, task="semantic", voxel_size=(0.5, 0.5)).eval()
    sized.load_state_dict(model.state_dict())
    rescaled = uncertainty(sized, image, measure="disagreement", voxel_size=(0.25, 0.25), device=device)
    assert rescaled.shape == image.shape and rescaled.min() >= 0.0 and rescaled.max() <= 1.0


def test_a_symmetric_network_has_no_disagreement(image, device):
    import torch

    net = UNet(1, 2, 2, 1, task="semantic").eval()
    with torch.no_grad():  # kernels invariant to the 8 flips and turns make the 8 views identical
        for conv in (m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))):
            w = conv.weight
            sym = sum(torch.rot90(f, k, dims=(-2, -1)) for k in range(4) for f in (w, w.flip(-1))) / 8
            conv.weight.copy_(sym)
    d = uncertainty(net, image, measure="disagreement", device=device)
    assert d.max() < 1e-5
    assert uncertainty(net, image, device=device).max() > 0.01  # while the entropy is not 0


def test_an_unknown_measure_is_refused(model, image):
    with pytest.raises(ValueError, match="measure"):
        uncertainty(model, image, measure="variance")


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
