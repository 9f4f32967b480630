"""instances_from_foreground: instances_from_probabilities of (1 - p, p) read from p alone, with ids after an offset."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from scipy import ndimage

from napari_seamless_unet import UNetInputError, instances_from_probabilities
from napari_seamless_unet.core import instances
from napari_seamless_unet.core.foreground import instances_from_foreground


def smooth_foreground(shape=(3, 70, 60), seed=0) -> np.ndarray:
    """Float32 foreground probabilities of blobs of many sizes, around 0.5 (thresholds 0.3 to 0.7 differ)."""
    smooth = ndimage.gaussian_filter(np.random.default_rng(seed).random(shape), (0,) * (len(shape) - 2) + (2.0, 2.0))
    return np.clip((smooth - smooth.mean()) / smooth.std() / 4 + 0.5, 0, 1).astype(np.float32)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"threshold": 0.3, "min_size": 15, "method": "watershed"},
        {"threshold": 0.6, "fill_holes": False, "restore_borders": False, "link_planes": True},
    ],
)
def test_the_same_labels_as_from_both_classes(options):
    p = smooth_foreground()
    expected = instances_from_probabilities(np.stack([1 - p, p]), **options)
    assert expected.max() > 10
    np.testing.assert_array_equal(instances_from_foreground(p, **options), expected)
    # a single plane, and explicit axes
    np.testing.assert_array_equal(
        instances_from_foreground(p[1], axes="YX", **options),
        instances_from_probabilities(np.stack([1 - p[1], p[1]]), **options),
    )


def test_the_options_change_the_labels():
    p = smooth_foreground()
    low, high = instances_from_foreground(p, threshold=0.3), instances_from_foreground(p, threshold=0.7)
    assert (low > 0).sum() > (high > 0).sum() > 0


def test_ids_after_the_offset_and_background_kept():
    p = smooth_foreground((60, 50))
    plain = instances_from_foreground(p, min_size=5)
    shifted = instances_from_foreground(p, min_size=5, offset=1000)
    np.testing.assert_array_equal(shifted == 0, plain == 0)
    np.testing.assert_array_equal(shifted[plain > 0], plain[plain > 0] + 1000)
    assert shifted.dtype == np.int32 and shifted[shifted > 0].min() == 1001
    with pytest.raises(UNetInputError, match="offset"):
        instances_from_foreground(p, offset=-1)


def test_lazy_inputs_outputs_and_planes_labelled_block_by_block(monkeypatch, tmp_path):
    p = smooth_foreground((2, 70, 50), seed=3)
    options = {"threshold": 0.55, "min_size": 4, "fill_holes": False, "restore_borders": False}
    expected = instances_from_probabilities(np.stack([1 - p, p]), **options)
    source = zarr.open_array(str(tmp_path / "p.zarr"), mode="w", shape=p.shape, chunks=(1, 16, 16), dtype="f4")
    source[:] = p
    monkeypatch.setattr(instances, "BLOCKWISE_PIXELS", 1000)  # planes read and labelled in blocks of 16 x 16
    monkeypatch.setattr(instances, "BLOCK", 16)
    out = zarr.open_array(str(tmp_path / "l.zarr"), mode="w", shape=p.shape, chunks=(1, 16, 16), dtype="i4")
    result = instances_from_foreground(source, axes="ZYX", out=out, **options)[:]
    np.testing.assert_array_equal(result, instances_from_probabilities(np.stack([1 - p, p]), out=None, **options))
    np.testing.assert_array_equal(result > 0, expected > 0)


def test_refused_like_instances_from_probabilities():
    with pytest.raises(UNetInputError, match="dtype"):
        instances_from_foreground(np.zeros((20, 30), np.uint8))
    with pytest.raises(UNetInputError, match="threshold"):
        instances_from_foreground(np.zeros((20, 30), np.float32), threshold=1.0)


@pytest.mark.parametrize("options", [{"threshold": 0.3}, {"threshold": 0.4, "min_size": 10, "link_planes": True}])
def test_three_class_interior_and_border_give_the_labels_of_the_whole_map(options):
    interior = smooth_foreground(seed=1) * 0.7
    border = smooth_foreground(seed=2) * 0.3
    full = np.stack([1 - interior - border, interior, border])
    expected = instances_from_probabilities(full, **options)
    assert expected.max() > 5
    kept = np.stack([interior, border])
    np.testing.assert_array_equal(instances_from_foreground(kept, num_classes=3, **options), expected)
    with pytest.raises(UNetInputError, match="2 classes first"):
        instances_from_foreground(interior, num_classes=3)
