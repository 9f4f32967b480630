import dask.array as da
import numpy as np
import pytest
import torch
import zarr

from napari_seamless_unet import UNet, predict, segment
from napari_seamless_unet.core import shapes
from napari_seamless_unet.core.errors import Cancelled, InvalidShapeError, UNetInputError
from napari_seamless_unet.core.normalization import apply_statistics
from napari_seamless_unet.core.predict import choose_tile_shape, estimate_tile_memory
from napari_seamless_unet.core.tiling import TileGrid, reflect_indices


def tiny(in_channels=1, num_classes=2, depth=2, seed=0, **kwargs):
    torch.manual_seed(seed)
    return UNet(in_channels=in_channels, num_classes=num_classes, base_channels=4, depth=depth, **kwargs).eval()


def single_pass(model, image_cyx):
    """Reference: one forward pass over the whole mirror-padded image, no tiles."""
    offset, scale = model.normalization.statistics(image_cyx, 0)
    norm = apply_statistics(image_cyx, offset, scale)
    h, w = norm.shape[-2:]
    step, halo = 2**model.depth, model.halo
    # The same padding a tiled pass sees: halo before, enough after to reach a valid size.
    out_h, out_w = (step * -(-h // step) + 4, step * -(-w // step) + 4)
    pad = ((0, 0), (halo, out_h + halo - h), (halo, out_w + halo - w))
    padded = np.pad(norm, pad, mode="reflect")
    with torch.inference_mode():
        logits = model(torch.from_numpy(padded[None]).float())
    return torch.softmax(logits, 1)[0, :, :h, :w].numpy()


@pytest.mark.parametrize("shape", [(37, 23), (64, 64), (101, 150), (150, 61), (20, 20)])
@pytest.mark.parametrize("tile", [(60, 60), (76, 108), (124, 124)])
def test_tiled_equals_single_pass(shape, tile, device):
    model = tiny()
    image = np.random.default_rng(1).random(shape).astype(np.float32)
    tiled = predict(model, image, tile_shape=tile, device=device, precision="fp32")
    expected = single_pass(model.cpu(), image[None])
    assert tiled.shape == (2, *shape) and tiled.dtype == np.float32
    np.testing.assert_allclose(tiled, expected, atol=2e-5)


def test_batch_norm_network_tiles_stitch_exactly(device):
    """In eval mode batch norm is a fixed affine map per channel: tiles still equal one pass over the image."""
    model = tiny(batch_norm=True)
    model.train()
    with torch.no_grad():  # give the running statistics values that are not the identity
        model(torch.randn(2, 1, 92, 92) * 3 + 1)
    model.eval()
    image = np.random.default_rng(1).random((101, 150)).astype(np.float32)
    tiled = predict(model, image, tile_shape=(60, 60), device=device, precision="fp32")
    np.testing.assert_allclose(tiled, single_pass(model.cpu(), image[None]), atol=2e-5)


def test_tiles_write_every_pixel_once():
    grid = TileGrid.for_tile_shape((101, 150), (76, 76), depth=2)
    count = np.zeros((101, 150), int)
    for tile in grid:
        count[tile.out_slices] += 1
    assert np.all(count == 1)
    assert all(s % 4 == 0 for s in grid.stride)


def test_reflect_indices_match_numpy_pad():
    for size in (1, 2, 5, 17):
        padded = np.pad(np.arange(size), (40, 45), mode="reflect") if size > 1 else np.zeros(size + 85, int)
        np.testing.assert_array_equal(reflect_indices(-40, size + 45, size), padded)


def test_invalid_tile_shape_is_reported_with_fix():
    with pytest.raises(InvalidShapeError, match=r"tile shape \(61, 60\).*\(60, 60\)"):
        predict(tiny(), np.zeros((64, 64), np.float32), tile_shape=(61, 60))


@pytest.mark.parametrize(
    "axes,shape",
    [("ZYX", (3, 40, 44)), ("TYX", (2, 40, 44)), ("TZYX", (2, 2, 40, 44)), ("YXZ", (40, 44, 3))],
)
def test_stacks_are_predicted_plane_by_plane(axes, shape, device):
    model = tiny()
    image = np.random.default_rng(2).random(shape).astype(np.float32)
    result = predict(model, image, axes=axes, device=device, tile_shape=(60, 60))
    assert result.shape == (2, *shape)
    # Each plane is normalised on its own, so a plane gives the same answer alone as in its stack.
    plane_axes = [i for i, a in enumerate(axes) if a not in "YX"]
    first = tuple(0 if i in plane_axes else slice(None) for i in range(len(shape)))
    alone = predict(model, image[first], device=device, tile_shape=(60, 60))
    np.testing.assert_allclose(result[(slice(None), *first)], alone, atol=2e-5)


@pytest.mark.parametrize("axes,shape", [("CYX", (3, 40, 44)), ("YXC", (40, 44, 3)), ("TZCYX", (2, 2, 3, 40, 44))])
def test_channel_axis(axes, shape, device):
    model = tiny(in_channels=3, num_classes=3)
    image = np.random.default_rng(3).random(shape).astype(np.float32)
    result = predict(model, image, axes=axes, device=device)
    assert result.shape == (3, *(n for n, a in zip(shape, axes) if a != "C"))
    np.testing.assert_allclose(result.sum(axis=0), 1.0, atol=1e-5)


def test_rgb_is_inferred_for_three_channel_models():
    model = tiny(in_channels=3)
    rgb = (np.random.default_rng(4).random((40, 44, 3)) * 255).astype(np.uint8)
    assert segment(model, rgb).shape == (40, 44)


def test_dask_and_zarr_inputs_and_zarr_output_match_numpy(tmp_path, device):
    model = tiny()
    image = np.random.default_rng(5).random((2, 90, 70)).astype(np.float32)
    expected = predict(model, image, device=device, tile_shape=(60, 60))
    lazy = da.from_array(image, chunks=(1, 32, 32))
    np.testing.assert_allclose(predict(model, lazy, device=device, tile_shape=(60, 60)), expected, atol=1e-6)
    stored = zarr.open_array(str(tmp_path / "in.zarr"), mode="w", shape=image.shape, chunks=(1, 32, 32), dtype="f4")
    stored[:] = image
    out = zarr.open_array(
        str(tmp_path / "out.zarr"), mode="w", shape=(2, *image.shape), chunks=(1, 1, 32, 32), dtype="f4"
    )
    result = predict(model, stored, out=out, device=device, tile_shape=(60, 60))
    assert result is out
    np.testing.assert_allclose(out[:], expected, atol=1e-6)


class IntensityOracle(UNet):
    """A valid U-Net whose foreground logit is its (normalised) centre input: segment() then has to give back
    exactly the connected components of the bright pixels, wherever the tiles cut them."""

    def forward(self, x):
        centre = x[:, :1, self.halo : x.shape[-2] - self.halo, self.halo : x.shape[-1] - self.halo]
        centre = centre[..., : self.output_shape(x.shape[-2:])[0], : self.output_shape(x.shape[-2:])[1]]
        return torch.cat([0.5 - centre, centre - 0.5], dim=1) * 10


def oracle(task="instances"):
    return IntensityOracle(in_channels=1, num_classes=2, base_channels=2, depth=2, task=task).eval()


def bright_objects(shape=(90, 70), seed=0):
    """Separate bright rectangles, some cut by any tiling, on a dark background."""
    rng = np.random.default_rng(seed)
    image = np.zeros(shape, np.float32)
    for _ in range(12):
        y, x = rng.integers(0, shape[0] - 8), rng.integers(0, shape[1] - 8)
        image[y : y + rng.integers(3, 15), x : x + rng.integers(3, 15)] = 1
    return image


def assert_same_partition(labels: np.ndarray, expected: np.ndarray) -> None:
    """Same objects, ids aside: each label maps to exactly one expected label and back."""
    assert (labels > 0).sum() == (expected > 0).sum()
    pairs = {(int(a), int(b)) for a, b in zip(labels[labels > 0], expected[labels > 0])}
    assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs}) == expected.max()


def test_segment_gives_the_connected_foreground_components_across_tiles(device):
    from scipy import ndimage

    image = bright_objects()
    expected, n = ndimage.label(image > 0.5)
    assert n > 3
    # 20-pixel tiles cut most objects; the bare components (no border given back, no hole filled)
    labels = segment(oracle(), image, tile_shape=(60, 60), device=device, restore_borders=False, fill_holes=False)
    assert labels.dtype == np.int32
    assert_same_partition(labels, expected)
    semantic = segment(oracle(task="semantic"), image, tile_shape=(60, 60), device=device)
    assert semantic.dtype == np.uint8
    np.testing.assert_array_equal(semantic, image > 0.5)


def test_progress_callback_and_tqdm_like():
    calls = []
    predict(
        tiny(),
        np.zeros((100, 100), np.float32),
        tile_shape=(60, 60),
        batch_size=2,
        progress=lambda d, t: calls.append((d, t)),
    )
    total = len(TileGrid.for_tile_shape((100, 100), (60, 60), 2))
    assert calls[-1] == (total, total) and len(calls) == -(-total // 2)

    class Bar:
        total, n = None, 0

        def update(self, k):
            self.n += k

    bar = Bar()
    predict(tiny(), np.zeros((3, 50, 50), np.float32), tile_shape=(60, 60), progress=bar)
    assert bar.n == bar.total > 0


def test_cancel_keeps_finished_planes():
    image = np.random.default_rng(6).random((4, 40, 40)).astype(np.float32)
    model = tiny()
    seen = []  # (tiles done, tiles total)
    with pytest.raises(Cancelled) as stop:
        segment(
            model,
            image,
            tile_shape=(60, 60),  # 2x2 tiles a plane
            progress=lambda done, total: seen.append((done, total)),
            should_stop=lambda: seen[-1][0] >= seen[-1][1] // 2,  # stop once two of four planes are done
        )
    partial = stop.value.partial
    full = segment(model, image, tile_shape=(60, 60))
    assert seen[-1] == (8, 16)
    np.testing.assert_array_equal(partial[:2], full[:2])
    assert not np.array_equal(partial[2:], full[2:])  # the rest was never computed


@pytest.mark.parametrize(
    "image,axes,message",
    [
        (np.zeros((2, 3, 4, 5, 6, 7), np.float32), None, "dimensions"),
        (np.zeros((64, 64), bool), None, "bool"),
        (np.zeros((64, 64), complex), None, "complex"),
        (np.zeros((64, 64), object), None, "object"),
        (np.zeros((3, 64, 64), np.float32), "CYX", "channel"),
        (np.zeros((64, 64), np.float32), "ZYX", "letters"),
        (np.zeros((10, 64), np.float32), None, "smaller than the network"),
        (np.full((64, 64), np.nan, np.float32), None, "NaN"),
    ],
)
def test_bad_input_gives_clear_errors(image, axes, message):
    with pytest.raises(UNetInputError, match=message):
        predict(tiny(), image, axes=axes)


def test_nan_inside_a_tile_is_reported():
    image = np.random.default_rng(0).random((300, 300)).astype(np.float32)
    image[150, 151] = np.inf  # missed by a strided sample? it is read by a tile either way
    with pytest.raises(UNetInputError, match="NaN or Inf"):
        predict(tiny(), image, tile_shape=(60, 60))


def test_constant_image_warns_and_gives_one_class():
    with pytest.warns(UserWarning, match="constant"):
        labels = segment(tiny(), np.full((64, 64), 7, np.uint16))
    assert len(np.unique(labels)) == 1


def test_automatic_tile_fits_budget_and_covers_image():
    model = UNet(base_channels=64, depth=4)
    tile = choose_tile_shape(model, (2048, 2048), "cpu", memory_budget_bytes=4 * 2**30)
    assert estimate_tile_memory(model, tile) <= 4 * 2**30
    shapes.check_input_shape(tile, 4)
    small = choose_tile_shape(model, (100, 80), "cpu", memory_budget_bytes=4 * 2**30)
    # One tile just covering the image: output strides 112 and 80 (multiples of 16) plus 4 and the halo.
    assert small == (112 + 4 + 184, 80 + 4 + 184)
    tight = choose_tile_shape(model, (2048, 2048), "cpu", memory_budget_bytes=600 * 2**20)
    assert tight[0] < tile[0] and estimate_tile_memory(model, tight) <= 600 * 2**20


@pytest.mark.parametrize("block", [7, 16, 1000])
@pytest.mark.parametrize("min_size", [0, 5])
def test_blockwise_instance_labels_match_in_memory_labels(block, min_size):
    from napari_seamless_unet.core.postprocess import label_foreground, label_foreground_blockwise

    rng = np.random.default_rng(block)
    classes = (ndimage_smooth(rng.random((60, 45))) > 0.5).astype(np.int32)
    expected = label_foreground(classes == 1, min_size=min_size)
    plane = classes.copy()
    n = label_foreground_blockwise(plane, block=block, min_size=min_size)
    assert n == expected.max()
    # The same partition into objects, whatever the numbering.
    pairs = set(zip(plane.ravel().tolist(), expected.ravel().tolist()))
    assert len(pairs) == n + 1 and len({a for a, _ in pairs}) == n + 1


def ndimage_smooth(noise):
    from scipy import ndimage

    return ndimage.gaussian_filter(noise, 2) * 4 - 1.5


def test_instances_into_zarr_output(tmp_path):
    from scipy import ndimage

    image = np.stack([bright_objects(seed=1), bright_objects(seed=2)])
    out = zarr.open_array(str(tmp_path / "l.zarr"), mode="w", shape=image.shape, chunks=(1, 16, 16), dtype="i4")
    segment(oracle(), image, axes="ZYX", out=out, restore_borders=False, fill_holes=False)
    for plane in range(2):
        assert_same_partition(out[plane], ndimage.label(image[plane] > 0.5)[0])
    assert not set(np.unique(out[0])[1:]) & set(np.unique(out[1])[1:])  # ids unique across the stack


def test_nested_lists_are_accepted_like_arrays():
    image = np.random.default_rng(8).random((40, 44)).astype(np.float32)
    np.testing.assert_array_equal(segment(tiny(), image.tolist()), segment(tiny(), image))


def test_an_image_too_small_for_a_trained_model_suggests_padding_not_a_smaller_depth():
    with pytest.raises(InvalidShapeError, match=r"Pad the image to at least 20 x 20") as err:
        predict(tiny(), np.zeros((12, 30), np.float32))
    assert "model trained with a smaller depth" in str(err.value)
