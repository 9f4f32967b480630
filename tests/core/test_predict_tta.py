"""Test-time augmentation: the mean of the 8 flips and quarter turns of each tile, still seamless across tiles."""

import numpy as np
import pytest
import torch

from napari_seamless_unet import UNet, predict, segment
from napari_seamless_unet.core import shapes
from napari_seamless_unet.core.inference import predict_tiles


def tiny(seed: int, **kwargs) -> UNet:
    torch.manual_seed(seed)
    return UNet(1, 2, base_channels=4, depth=2, **kwargs).eval()


def test_tta_is_the_mean_of_the_eight_transformed_tiles(device):
    model = tiny(seed=3)
    side = shapes.valid_input_shape((70, 70), model.depth)[0]
    tiles = np.random.default_rng(0).normal(size=(2, 1, side, side)).astype(np.float32)
    expected = 0
    for k in range(4):
        for flip in (False, True):
            x = tiles[..., ::-1] if flip else tiles
            p = predict_tiles(model, np.rot90(x, k, axes=(-2, -1)).copy(), device=device, precision="fp32")
            p = np.rot90(p, -k, axes=(-2, -1))
            expected = expected + (p[..., ::-1] if flip else p)
    expected = expected / 8
    got = predict_tiles(model, tiles, device=device, precision="fp32", tta=True)
    np.testing.assert_allclose(got, expected, atol=2e-5)
    plain = predict_tiles(model, tiles, device=device, precision="fp32")
    assert np.abs(got - plain).max() > 1e-3  # a random network is not symmetric: TTA changes the result


@pytest.mark.parametrize("tile", [(60, 60), (76, 108)])
def test_tta_tiles_stitch_like_one_tile(tile, device):
    model = tiny(seed=4)
    image = np.random.default_rng(2).random((101, 150)).astype(np.float32)
    one = predict(model, image, tile_shape=(220, 220), device=device, precision="fp32", tta=True)
    tiled = predict(model, image, tile_shape=tile, device=device, precision="fp32", tta=True)
    np.testing.assert_allclose(tiled, one, atol=2e-5)


def test_segment_with_tta_labels_the_tta_probabilities(device):
    model = tiny(seed=5, task="semantic")
    image = np.random.default_rng(3).random((64, 80)).astype(np.float32)
    probabilities = predict(model, image, device=device, precision="fp32", tta=True)
    labels = segment(model, image, device=device, precision="fp32", tta=True)
    ambiguous = np.abs(probabilities[1] - probabilities[0]) < 1e-4
    np.testing.assert_array_equal(labels[~ambiguous], probabilities.argmax(0)[~ambiguous])
