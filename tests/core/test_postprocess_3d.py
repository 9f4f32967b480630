"""Instance post-processing of 3D volumes (objects connected across planes), with and without anisotropic voxels."""

from __future__ import annotations

import numpy as np
import pytest

from napari_seamless_unet.core.postprocess import (
    fill_holes,
    label_foreground,
    label_plane,
    label_three_classes,
    labels_from_classes,
    remove_small,
    restore_borders,
    watershed_instances,
)
from napari_seamless_unet.core.weights import interior_border_classes, separate_touching

ANISOTROPIC = (3.0, 1.0, 1.0)


def touching_balls(shape=(20, 20, 32), centres=((10, 10, 9), (10, 10, 22)), radius=7.0, z_step=1.0) -> np.ndarray:
    """Balls round in physical space (planes ``z_step`` pixels apart) that overlap, each voxel given to the nearer
    centre: they touch across a flat contact."""
    zz, yy, xx = np.indices(shape).astype(float)
    zz *= z_step
    labels = np.zeros(shape, np.int32)
    best = np.full(shape, np.inf)
    for k, (cz, cy, cx) in enumerate(centres, start=1):
        d = np.sqrt((zz - cz) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2)
        take = (d <= radius) & (d < best)
        labels[take], best[take] = k, d[take]
    return labels


def assert_same_partition(labels: np.ndarray, expected: np.ndarray) -> None:
    """Exactly the same objects, ids aside."""
    np.testing.assert_array_equal(labels > 0, expected > 0)
    pairs = {(int(a), int(b)) for a, b in zip(labels[labels > 0], expected[labels > 0], strict=True)}
    n = len(np.unique(expected[expected > 0]))
    assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs}) == n


def assert_given_back(labels: np.ndarray, truth: np.ndarray) -> None:
    """``truth`` (two balls touching at x = 15 | 16) from its gapped foreground: each gap voxel went back to its
    own ball; as in 2D, the notch where the balls meet (background within 1.5 voxels of both) is filled too, and
    nothing else."""
    assert_same_partition(np.where(truth > 0, labels, 0), truth)
    extra = (labels > 0) & (truth == 0)
    assert extra.sum() < 0.02 * (truth > 0).sum()
    assert (np.abs(np.nonzero(extra)[2] - 15.5) <= 1).all()


def one_hot(classes: np.ndarray) -> np.ndarray:
    """Interior and border probabilities (2, Z, Y, X) of a perfect three-class model."""
    return np.stack([classes == 1, classes == 2]).astype(np.float32)


def test_touching_balls_come_back_whole_through_the_gap():
    truth = touching_balls()
    gapped = separate_touching(truth) > 0
    assert label_foreground(gapped).max() == 2  # the gap keeps them apart (face connectivity)
    assert label_foreground(truth > 0).max() == 1
    labels = label_plane(gapped.astype(np.float32), ndim=3, fill_holes=False)
    assert_given_back(labels, truth)
    without = label_plane(gapped.astype(np.float32), ndim=3, restore_borders=False, fill_holes=False)
    assert_same_partition(without, separate_touching(truth))


def test_restore_borders_3d_gives_back_narrow_channels_only():
    labels = np.zeros((12, 10, 30), np.int32)
    labels[1:5, 2:8, 2:10], labels[1:5, 2:8, 12:18] = 1, 2  # a two-voxel channel in x
    labels[1:5, 2:8, 21:28] = 3  # three voxels from 2: real background
    restored = restore_borders(labels)
    np.testing.assert_array_equal(restored[2, 4, 9:13], [1, 1, 2, 2])
    np.testing.assert_array_equal(restored[:, :, 18:21], 0)
    assert ((restored > 0) & (labels == 0)).sum() == 2 * 4 * 6  # nothing else: the objects never grow outward


def test_restore_borders_gap_is_in_in_plane_pixels_with_spacing():
    labels = np.zeros((7, 8, 20), np.int32)
    labels[0:3, 2:6, 2:6], labels[4:7, 2:6, 2:6] = 1, 2  # one plane between them in z
    labels[0:3, 2:6, 8:12], labels[0:3, 2:6, 14:18] = 3, 4  # two pixels between them in x
    channel_z = np.zeros(labels.shape, bool)
    channel_z[3, 2:6, 2:6] = True
    channel_x = np.zeros(labels.shape, bool)
    channel_x[0:3, 2:6, 12:14] = True
    # Voxels as cubes: the one-plane channel is one voxel wide, given back like the two-pixel one.
    isotropic = restore_borders(labels)
    assert (isotropic[channel_z] > 0).all() and (isotropic[channel_x] > 0).all()
    # Planes 3 pixels apart: that plane is 3 pixels of background, wider than gap=2: it stays; x is unchanged.
    anisotropic = restore_borders(labels, spacing=ANISOTROPIC)
    assert (anisotropic[channel_z] == 0).all() and (anisotropic[channel_x] > 0).all()
    np.testing.assert_array_equal(anisotropic[:, :, 7:], isotropic[:, :, 7:])
    # d1 + d2 = 2 * 3 at the channel: gap=5 gives it back, to the nearer object (both at 3: the first offset, -z).
    wide = restore_borders(labels, gap=5, spacing=ANISOTROPIC)
    assert (wide[channel_z] == 1).all()
    assert np.array_equal(restore_borders(labels, spacing=(1, 1, 1)), isotropic)


def test_watershed_splits_overlapping_balls_in_3d():
    both = touching_balls(centres=((10, 10, 10), (10, 10, 21))) > 0
    assert label_foreground(both).max() == 1
    split = watershed_instances(both)
    assert split.max() == 2
    truth = touching_balls(centres=((10, 10, 10), (10, 10, 21)))
    for k in (1, 2):  # each region is (almost all of) one ball
        assert (split[truth == k] == np.bincount(split[truth == k]).argmax()).mean() > 0.97
    labels = label_plane(both.astype(np.float32), ndim=3, method="watershed", fill_holes=False)
    assert labels.max() == 2


def test_watershed_with_spacing_splits_balls_overlapping_across_planes():
    # Balls of radius 6 pixels centred 10 pixels apart in z, sampled every 2 pixels in z.
    truth = touching_balls(shape=(16, 16, 16), centres=((8, 8, 8), (18, 8, 8)), radius=6, z_step=2)
    both = truth > 0
    assert label_foreground(both).max() == 1
    split = watershed_instances(both, spacing=(2, 1, 1))
    assert split.max() == 2
    for k in (1, 2):
        assert (split[truth == k] == np.bincount(split[truth == k]).argmax()).mean() > 0.95


def test_fill_holes_fills_cavities_in_3d_only():
    zz, yy, xx = np.indices((24, 24, 48))
    r1 = np.sqrt((zz - 12) ** 2 + (yy - 12) ** 2 + (xx - 12) ** 2)
    r2 = np.sqrt((zz - 12) ** 2 + (yy - 12) ** 2 + (xx - 35) ** 2)
    labels = np.zeros(zz.shape, np.int32)
    labels[(r1 <= 10) & (r1 > 6)] = 1  # a hollow ball
    labels[r1 <= 2] = 2  # another object inside its cavity
    labels[(r2 <= 10) & (r2 > 6) & (zz < 15)] = 3  # a hollow ball with its top cut off: a cup, open to outside
    filled = fill_holes(labels)
    expected = labels.copy()
    expected[(r1 <= 6) & (labels == 0)] = 1
    np.testing.assert_array_equal(filled, expected)
    # Every plane of the cup below its opening has a hole of its own: a volume is filled as one, not plane by plane.
    assert (filled[12][r2[12] < 6] == 0).all()


def test_min_size_counts_voxels_and_objects_connect_across_planes():
    fg = np.zeros((6, 8, 8), bool)
    fg[0:2, 0:2, 0:2] = True  # 8 voxels
    fg[:, 5, 5] = True  # a column through all planes: one object of 6 voxels
    fg[3, 2, 2], fg[4, 3, 3] = True, True  # corner neighbours only: two objects
    labels = label_foreground(fg)
    assert labels.max() == 4
    assert len(np.unique(labels[:, 5, 5])) == 1
    assert label_foreground(fg, min_size=6).max() == 2
    assert label_foreground(fg, min_size=7).max() == 1
    assert label_foreground(fg, min_size=9).max() == 0
    np.testing.assert_array_equal(remove_small(labels, 7) > 0, label_foreground(fg, min_size=7) > 0)
    assert label_plane(fg.astype(np.float32), ndim=3, min_size=7).max() == 1
    assert label_plane(fg.astype(np.float32), ndim=3, min_size=7, method="watershed").max() == 1


@pytest.mark.parametrize("spacing", [None, ANISOTROPIC])
def test_label_three_classes_3d_gives_back_touching_objects(spacing):
    z_step = 1.0 if spacing is None else spacing[0]
    shape = (20, 20, 32) if spacing is None else (8, 20, 32)
    truth = touching_balls(shape=shape, centres=((10, 10, 9), (10, 10, 22)), z_step=z_step)
    classes = interior_border_classes(truth, spacing=spacing)
    labels = label_plane(one_hot(classes), spacing=spacing, ndim=3, fill_holes=False)
    assert labels.max() == 2
    assert_same_partition(labels, truth)
    direct = label_three_classes(classes == 1, classes == 2, spacing=spacing, fill_holes=False)
    np.testing.assert_array_equal(direct, labels)
    interiors = label_three_classes(classes == 1, classes == 2, restore_borders=False, spacing=spacing)
    assert_same_partition(interiors, np.where(classes == 1, truth, 0))


def test_label_three_classes_reach_is_in_in_plane_pixels():
    interior = np.zeros((6, 5, 5), bool)
    interior[0, 1:4, 1:4] = True
    border = np.zeros(interior.shape, bool)
    border[1:3, 1:4, 1:4] = True  # two planes of border above the interior
    isotropic = label_three_classes(interior, border, fill_holes=False)
    assert (isotropic[0:3, 1:4, 1:4] == 1).all()  # 1 and 2 voxels away: within BORDER_REACH = 3
    anisotropic = label_three_classes(interior, border, fill_holes=False, spacing=ANISOTROPIC)
    assert (anisotropic[0:2, 1:4, 1:4] == 1).all()  # 3 pixels away: within reach
    assert (anisotropic[2] == 0).all()  # 6 pixels away: not


def test_label_plane_ndim_tells_two_classes_from_three():
    volume = np.zeros((2, 10, 10), np.float32)
    volume[:, 2:5, 2:5] = 1  # a foreground volume of two planes: one object through both
    volume[1, 6:9, 6:9] = 1
    assert label_plane(volume, ndim=3, fill_holes=False).max() == 2
    assert label_plane(volume, spacing=(2, 1, 1), fill_holes=False).max() == 2  # ndim from the spacing
    # Without ndim or spacing a (2, H, W) array is a three-class plane, as before 3D: interior 0, border 1.
    as_plane = label_plane(volume, fill_holes=False)
    np.testing.assert_array_equal(as_plane, label_three_classes(volume[0], volume[1], fill_holes=False))
    with pytest.raises(ValueError, match="2 first"):
        label_plane(np.zeros((3, 4, 10, 10)), ndim=3)
    with pytest.raises(ValueError, match="one value per axis"):
        label_plane(np.zeros((4, 10, 10)), ndim=3, spacing=(1, 1))


@pytest.mark.parametrize("num_classes", [2, 3])
def test_labels_from_classes_of_a_volume(num_classes):
    truth = touching_balls()
    classes = interior_border_classes(truth) if num_classes == 3 else (separate_touching(truth) > 0).astype(np.uint8)
    labels = labels_from_classes(classes, "instances", num_classes=num_classes, spacing=None)
    assert labels.shape == truth.shape
    if num_classes == 3:
        assert_same_partition(labels, truth)
    else:
        assert_given_back(labels, truth)
