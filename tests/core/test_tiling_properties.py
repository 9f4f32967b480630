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
HALO = shapes.halo(DEPTH)
_MODEL = None


def model():
    global _MODEL
    if _MODEL is None:
        torch.manual_seed(0)
        _MODEL = UNet(base_channels=2, depth=DEPTH).eval()
    return _MODEL


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


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(HALO, 90),
    w=st.integers(HALO, 90),
    ty=valid_tiles,
    tx=valid_tiles,
    seed=st.integers(0, 2**16),
)
def test_stitched_equals_single_pass(h, w, ty, tx, seed):
    net = model()
    image = np.random.default_rng(seed).random((h, w)).astype(np.float32)
    tiled = predict(net, image, tile_shape=(ty, tx), device="cpu", precision="fp32")
    offset, scale = net.normalization.statistics(image, None)
    norm = apply_statistics(image[None], offset, scale)
    step = 2**DEPTH
    out_h, out_w = step * -(-h // step) + 4, step * -(-w // step) + 4
    padded = np.pad(norm, ((0, 0), (HALO, out_h + HALO - h), (HALO, out_w + HALO - w)), mode="reflect")
    with torch.inference_mode():
        whole = torch.softmax(net(torch.from_numpy(padded[None])), 1)[0, :, :h, :w].numpy()
    np.testing.assert_allclose(tiled, whole, atol=2e-5)
