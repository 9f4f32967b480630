"""Synthetic 3D nuclei: packed, touching in every direction, flattened along a coarse z."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_seamless_unet.core.synthetic import touching_nuclei_3d


def _touching_pairs(labels: np.ndarray, axis: int) -> set[tuple[int, int]]:
    """Pairs of different objects that share a face across ``axis``."""
    a = np.moveaxis(labels, axis, 0)
    p, q = a[:-1].ravel(), a[1:].ravel()
    touch = (p > 0) & (q > 0) & (p != q)
    return set(zip(np.minimum(p[touch], q[touch]).tolist(), np.maximum(p[touch], q[touch]).tolist(), strict=True))


def test_shape_dtype_and_consecutive_labels():
    image, labels = touching_nuclei_3d((16, 64, 80), seed=0)
    assert image.shape == labels.shape == (16, 64, 80)
    assert image.dtype == np.float32 and labels.dtype == np.int32
    ids = np.unique(labels)
    assert ids[0] == 0 and np.array_equal(ids, np.arange(labels.max() + 1)) and labels.max() > 10
    assert np.isfinite(image).all()
    # Nuclei are brighter than the background on average, but not by a clean threshold.
    assert image[labels > 0].mean() > image[labels == 0].mean() + 0.2
    assert image[labels > 0].min() < image[labels == 0].max()


def test_a_given_number_of_nuclei():
    _, labels = touching_nuclei_3d((24, 96, 96), n=20, seed=3)
    assert 15 <= labels.max() <= 20  # a few may be cut away by the border or hidden


def test_many_nuclei_touch_beside_and_above_each_other():
    _, labels = touching_nuclei_3d(seed=1)
    in_plane = _touching_pairs(labels, 1) | _touching_pairs(labels, 2)
    along_z = _touching_pairs(labels, 0)
    touching = {i for pair in in_plane | along_z for i in pair}
    assert len(touching) > 0.6 * labels.max()
    assert len(along_z) > 10
    # Some lie one on top of the other: no plane shows them side by side, only 3D context separates them.
    assert len(along_z - in_plane) > 5


def test_reproducible_for_a_seed():
    a = touching_nuclei_3d((12, 48, 48), seed=7)
    b = touching_nuclei_3d((12, 48, 48), seed=7)
    c = touching_nuclei_3d((12, 48, 48), seed=8)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


@pytest.mark.parametrize("ratio", [1.0, 3.0])
def test_nuclei_are_round_in_physical_space(ratio):
    """On the voxel grid a nucleus's z extent is its in-plane extent divided by the spacing ratio."""
    shape = (max(12, round(72 / ratio)), 128, 128)
    _, labels = touching_nuclei_3d(shape, spacing=(ratio, 1.0, 1.0), seed=2)
    ratios = []
    for box in ndimage.find_objects(labels):
        if box is None or any(s.start == 0 or s.stop == n for s, n in zip(box, shape, strict=True)):
            continue  # cut by the border
        dz, dy, dx = (s.stop - s.start for s in box)
        ratios.append(dz * ratio / (0.5 * (dy + dx)))
    assert len(ratios) > 10
    assert 0.75 < np.median(ratios) < 1.3
