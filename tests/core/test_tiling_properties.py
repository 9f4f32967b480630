"""Property-based checks of the overlap-tile strategy: any image, any valid tile, the same answer."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_seamless_unet import UNet, predict
from napari_seamless_unet.core import shapes
from napari_seamless_unet.core.normalization import apply_statistics
from napari_seamless_unet.core.tiling import TileGrid

DEPTH = 2

valid_tiles = st.integers(0, 12).map(lambda k: shapes.min_input_size(DEPTH) + 2**DEPTH * (k + 1))


@settings(max_examples=200, deadline=None)
@given(h=st.integers(1, 700), w=st.integers(1, 700), ty=valid_tiles, tx=valid_tiles)
def test_every_output_pixel_is_written_exactly_once(h, w, ty, tx):
    grid = TileGrid.for_tile_shape((h, w), (ty, tx), DEPTH)
    count = np.zeros((h, w), np.uint8)
    for tile in grid:
        count[tile.out_slices] += 1
        assert all(s % 2**DEPTH == 0 for s in tile.out_start)  # aligned with the pooling grid
    assert np.all(count == 1)


_MODELS: dict = {}


def net(depth: int, channels: int, classes: int) -> UNet:
    key = (depth, channels, classes)
    if key not in _MODELS:
        torch.manual_seed(sum(key))
        _MODELS[key] = UNet(channels, classes, base_channels=2, depth=depth).eval()
    return _MODELS[key]


def single_pass(model: UNet, image: np.ndarray) -> np.ndarray:
    """One forward pass over the whole mirror-padded (C, H, W) image: what every tiling must reproduce."""
    h, w = image.shape[-2:]
    offset, scale = model.normalization.statistics(image, 0)
    norm = apply_statistics(image, offset, scale)
    step, halo = 2**model.depth, model.halo
    out_h, out_w = step * -(-h // step) + 4, step * -(-w // step) + 4
    padded = np.pad(norm, ((0, 0), (halo, out_h + halo - h), (halo, out_w + halo - w)), mode="reflect")
    with torch.inference_mode():
        return torch.softmax(model(torch.from_numpy(padded[None])), 1)[0, :, :h, :w].numpy()


@st.composite
def stitching_cases(draw):
    depth = draw(st.integers(1, 4))
    halo = shapes.halo(depth)
    # Odd and even sizes from below one tile's output to several tiles; at least the halo (mirroring needs it).
    h = draw(st.integers(halo, halo + 3 * 2**depth + 40))
    w = draw(st.integers(halo, halo + 3 * 2**depth + 40))
    tile = st.integers(1, 6).map(lambda k: shapes.min_input_size(depth) + 2**depth * k)  # the smallest writes 2**depth
    return depth, h, w, (draw(tile), draw(tile))


@settings(max_examples=40, deadline=None)
@given(
    case=stitching_cases(),
    channels=st.integers(1, 3),
    classes=st.integers(2, 3),
    batch=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_stitched_equals_single_pass_at_every_depth(case, channels, classes, batch, seed):
    depth, h, w, tile = case
    model = net(depth, channels, classes)
    image = np.random.default_rng(seed).random((channels, h, w)).astype(np.float32)
    tiled = predict(model, image, axes="CYX", tile_shape=tile, batch_size=batch, device="cpu", precision="fp32")
    # Equal up to float32 rounding, which differs with the tile's shape (oneDNN picks kernels by shape) and grows
    # with depth; a stitching error would be of the order of the probabilities themselves.
    np.testing.assert_allclose(tiled, single_pass(model, image), atol=1e-4)
