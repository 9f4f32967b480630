"""segment_dask gives segment's objects: global ids, objects cut by block borders joined, every option."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from dask_helpers import assert_same_partition, tiny

from napari_seamless_unet import predict, segment, segment_dask
from napari_seamless_unet.core.dask_segment import label_foreground
from napari_seamless_unet.core.postprocess import label_plane
from napari_seamless_unet.core.synthetic import touching_discs
from napari_seamless_unet.core.weights import interior_border_classes, separate_touching


@pytest.fixture(scope="module")
def discs():
    """Touching discs and the paper's target of them (the gap where they touch), as foreground probabilities."""
    image, labels = touching_discs((150, 170), n_objects=30, seed=5)
    return image, labels, (separate_touching(labels) > 0).astype(np.float32)


@pytest.mark.parametrize("chunks", [(150, 170), (37, 41), 23, ((20, 130), (100, 70))])
@pytest.mark.parametrize("options", [{}, {"min_size": 60}, {"fill_holes": False}, {"restore_borders": False}])
def test_blocks_label_a_perfect_map_as_label_plane(discs, chunks, options):
    _, _, foreground = discs
    expected = label_plane(foreground, threshold=0.5, **options)
    got = label_foreground(da.from_array(foreground, chunks=chunks), unit=(0, 1), threshold=0.5, **options)
    assert isinstance(got, da.Array)
    assert_same_partition(expected, got.compute())


def test_objects_cut_by_block_borders_get_one_id(discs):
    _, labels, foreground = discs
    got = label_foreground(da.from_array(foreground, chunks=31), unit=(0, 1), threshold=0.5).compute()
    assert_same_partition(label_plane(foreground, threshold=0.5), got)
    ys, xs = np.nonzero(got)
    blocks_of = {}
    for y, x, i in zip(ys, xs, got[ys, xs]):
        blocks_of.setdefault(i, set()).add((y // 31, x // 31))
    assert sum(len(b) > 1 for b in blocks_of.values()) >= 10  # most discs span two to four blocks
    # and the gap between touching discs is given back: nearly every true pixel is in its object
    assert np.mean((got > 0) == (labels > 0)) > 0.99


def test_holes_are_filled_across_blocks():
    ring = np.zeros((60, 60), np.float32)
    yy, xx = np.mgrid[:60, :60]
    r = np.hypot(yy - 30, xx - 30)
    ring[(r < 20)] = 1
    ring[(r < 6)] = 0  # a hole cut by the block borders at 32
    ring[5:9, 50:54] = 1  # another object
    expected = label_plane(ring, threshold=0.5)
    assert expected[30, 30] > 0
    got = label_foreground(da.from_array(ring, chunks=32), unit=(0, 1), threshold=0.5).compute()
    assert_same_partition(expected, got)


def test_background_around_an_object_inside_a_hole_goes_to_the_enclosing_object():
    yy, xx = np.mgrid[:64, :64]
    r = np.hypot(yy - 32, xx - 32)
    image = ((r < 24) & (r >= 12)).astype(np.float32)  # a ring, its hole cut by the block borders at 32
    image[29:35, 29:35] = 1  # an object inside the hole, apart from the ring
    expected = label_plane(image, threshold=0.5, restore_borders=False)
    assert expected[32, 38] == expected[32, 50] != expected[32, 32] > 0  # the ring took the background in its hole
    got = label_foreground(da.from_array(image, chunks=32), unit=(0, 1), threshold=0.5, restore_borders=False)
    assert_same_partition(expected, got.compute())


@pytest.mark.parametrize("chunks", [(150, 170), 29])
def test_a_ragged_noisy_map_with_every_step(discs, chunks):
    """Noise makes holes, specks inside holes and objects touching at corners, cut by blocks everywhere."""
    _, _, foreground = discs
    noisy = np.clip(foreground * 0.9 + np.random.default_rng(0).normal(0, 0.25, foreground.shape), 0, 1)
    expected = label_plane(noisy.astype(np.float32), threshold=0.6, min_size=4)
    got = label_foreground(
        da.from_array(noisy.astype(np.float32), chunks=chunks), unit=(0, 1), threshold=0.6, min_size=4
    )
    assert_same_partition(expected, got.compute())


def test_three_classes_and_watershed(discs):
    _, labels, foreground = discs
    classes = interior_border_classes(labels)
    three = np.stack([classes == 1, classes == 2]).astype(np.float32)
    for min_size in (0, 80):
        expected = label_plane(three, threshold=0.5, min_size=min_size)
        got = label_foreground(
            da.from_array(three, chunks=(2, 40, 33)), unit=(0, 1), threshold=0.5, min_size=min_size, three_classes=True
        )
        assert_same_partition(expected, got.compute())
    for method in ("watershed", "seeds"):
        expected = label_plane(foreground, threshold=0.5, method=method, min_size=10)
        got = label_foreground(
            da.from_array(foreground, chunks=40), unit=(0, 1), threshold=0.5, method=method, min_size=10
        )
        assert_same_partition(expected, got.compute())


def test_planes_of_a_stack_are_apart_and_ids_unique_across_it(discs):
    _, _, foreground = discs
    stack = np.stack([foreground, foreground[::-1], foreground[:, ::-1]])
    got = label_foreground(da.from_array(stack, chunks=(1, 50, 60)), unit=(1, 2), threshold=0.5).compute()
    for plane, labels in zip(stack, got):
        assert_same_partition(label_plane(plane, threshold=0.5), labels)
    ids = [set(np.unique(p)) - {0} for p in got]
    assert not (ids[0] & ids[1]) and not (ids[1] & ids[2])


@pytest.mark.parametrize("chunks", [24, (40, 56)])
def test_segment_dask_with_a_network_gives_segment(discs, chunks, device):
    """An untrained network: ragged foreground that blocks cut everywhere; the threshold keeps about half."""
    image, _, _ = discs
    model = tiny(2, task="instances", seed=3)
    threshold = float(np.median(predict(model, image, device=device)[1]))
    options = {"threshold": threshold, "min_size": 3, "fill_holes": False}
    expected = segment(model, image, device=device, **options)
    assert expected.max() > 20
    got = segment_dask(model, image, chunks=chunks, device=device, **options)
    assert got.dtype == np.int32
    assert_same_partition(expected, got.compute())


def test_a_3d_model_with_its_seeds_default_gives_segment(device):
    import torch

    from napari_seamless_unet.core.synthetic import touching_nuclei_3d

    image, _ = touching_nuclei_3d((12, 48, 48), spacing=(3.0, 1.0, 1.0), seed=1)
    model = tiny(2, task="instances", seed=4, ndim=3, voxel_size=(3.0, 1.0, 1.0))
    with torch.no_grad():  # an untrained network is never confident: sharpen its output so that seeds exist
        model.head.weight *= 40.0
        model.head.bias.zero_()
    foreground = predict(model, image, device=device)[1]
    assert 0.02 < (foreground > 0.9).mean() < 0.5
    threshold = float(np.quantile(foreground, 0.5))
    expected = segment(model, image, threshold=threshold, device=device)  # seeds, 30 voxels: the 3D defaults
    assert expected.max() >= 3
    got = segment_dask(model, image, threshold=threshold, chunks=(6, 24, 24), device=device)
    assert_same_partition(expected, got.compute())
    watershed = segment(model, image, threshold=threshold, method="watershed", device=device)
    assert not np.array_equal(watershed, expected)  # the default is not the watershed
    got = segment_dask(model, image, threshold=threshold, method="watershed", chunks=(6, 24, 24), device=device)
    assert_same_partition(watershed, got.compute())
