"""Regions to annotate next (``propose_regions``) and a corrected region as a training pair (``region_pair``)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_seamless_unet import IGNORE, UNetInputError, propose_regions, region_pair


def _brute_force_best(u: np.ndarray, size: int, stride: int):
    best = None
    for y in [*range(0, u.shape[0] - size + 1, stride), u.shape[0] - size]:
        for x in [*range(0, u.shape[1] - size + 1, stride), u.shape[1] - size]:
            score = u[y : y + size, x : x + size].mean()
            if best is None or score > best[0]:
                best = (score, y, x)
    return best


def test_the_first_region_is_the_most_uncertain_window():
    u = np.random.default_rng(1).random((90, 110)).astype(np.float32)
    first = propose_regions(u, 20, 1, stride=5)[0]
    score, y, x = _brute_force_best(u, 20, 5)
    assert first.box == (y, x, y + 20, x + 20) and first.score == pytest.approx(score)


def test_regions_are_ranked_non_overlapping_and_inside():
    u = np.zeros((100, 100), np.float32)
    u[10:30, 10:30] = 1.0  # the most uncertain place
    u[60:80, 50:70] = 0.5  # the next
    regions = propose_regions(u, 20, 3)
    assert [r.rank for r in regions] == [1, 2, 3]
    assert regions[0].box == (10, 10, 30, 30) and regions[1].box == (60, 50, 80, 70)
    assert [r.score for r in regions] == sorted((r.score for r in regions), reverse=True)
    for a in regions:
        y0, x0, y1, x1 = a.box
        assert 0 <= y0 < y1 <= 100 and 0 <= x0 < x1 <= 100
        for b in regions:
            if a is not b:
                assert not (y0 < b.box[2] and b.box[0] < y1 and x0 < b.box[3] and b.box[1] < x1)


def test_annotated_pixels_are_excluded_and_planes_limited():
    u = np.zeros((2, 64, 64), np.float32)
    u[0, :32, :32] = 1.0
    u[0, 32:, 32:] = 0.9
    u[1, :32, 32:] = 0.8
    exclude = np.zeros(u.shape, bool)
    exclude[0, :32, :32] = True
    regions = propose_regions(u, 32, 2, exclude=exclude)
    assert [(r.plane, r.box) for r in regions] == [((0,), (32, 32, 64, 64)), ((1,), (0, 32, 32, 64))]
    regions = propose_regions(u, 32, 2, per_plane=1)
    assert [r.plane for r in regions] == [(0,), (1,)]
    np.testing.assert_array_equal(regions[1].corners(), [[1, 0, 32], [1, 0, 64], [1, 32, 64], [1, 32, 32]])


def test_separation_keeps_neighbouring_planes_from_proposing_the_same_place():
    u = np.zeros((5, 64, 64), np.float32)
    u[:, :32, :32] = 1.0  # one structure through the stack
    u[:, 32:, 32:] = 0.5
    plain = propose_regions(u, 32, 3, per_plane=1)
    assert [(r.plane, r.box[:2]) for r in plain] == [((0,), (0, 0)), ((1,), (0, 0)), ((2,), (0, 0))]
    apart = propose_regions(u, 32, 3, per_plane=1, separation=1)
    assert [(r.plane, r.box[:2]) for r in apart] == [((0,), (0, 0)), ((2,), (0, 0)), ((4,), (0, 0))]
    exclude = np.zeros(u.shape, bool)
    exclude[2, :32, :32] = True  # annotated in plane 2: planes 1 and 3 there are near-copies of it
    near = propose_regions(u, 32, 2, per_plane=1, separation=1, exclude=exclude)
    assert [(r.plane, r.box[:2]) for r in near] == [((0,), (0, 0)), ((4,), (0, 0))]
    for r in propose_regions(u, 32, 5, per_plane=1, separation=1, exclude=exclude):
        if r.plane in ((1,), (2,), (3,)):
            assert r.box[0] >= 32 or r.box[1] >= 32  # not over the annotated structure


def test_power_sampling_draws_in_proportion_to_score_to_the_power():
    u = np.stack([np.full((16, 16), 0.8, np.float32), np.full((16, 16), 0.2, np.float32)])  # one window a plane
    firsts = [propose_regions(u, 16, 1, sampling="power", power=1.0, seed=s)[0].plane for s in range(2000)]
    assert np.mean([f == (0,) for f in firsts]) == pytest.approx(0.8, abs=0.03)
    squared = [propose_regions(u, 16, 1, sampling="power", power=2.0, seed=s)[0].plane for s in range(2000)]
    assert np.mean([f == (0,) for f in squared]) == pytest.approx(0.64 / 0.68, abs=0.03)
    both = propose_regions(u, 16, 2, sampling="power", seed=3)
    assert sorted(r.plane for r in both) == [(0,), (1,)] and [r.rank for r in both] == [1, 2]


def test_power_sampling_is_seeded_and_tends_to_top():
    u = np.random.default_rng(2).random((96, 96)).astype(np.float32)
    u[40:60, 40:60] += 4.0
    draw = [(r.box, r.score) for r in propose_regions(u, 16, 4, sampling="power", seed=7, exclude=u > 4.5)]
    assert draw == [(r.box, r.score) for r in propose_regions(u, 16, 4, sampling="power", seed=7, exclude=u > 4.5)]
    top = [r.box for r in propose_regions(u, 16, 3)]
    assert [r.box for r in propose_regions(u, 16, 3, sampling="power", power=1e4, seed=1)] == top


def test_bad_arguments_are_refused():
    with pytest.raises(UNetInputError):
        propose_regions(np.zeros(5), 2, 1)
    with pytest.raises(UNetInputError):
        propose_regions(np.zeros((8, 8)), 2, 1, exclude=np.zeros((4, 4), bool))
    with pytest.raises(UNetInputError):
        propose_regions(np.zeros((8, 8)), 2, 1, sampling="best")
    with pytest.raises(UNetInputError):
        propose_regions(np.zeros((2, 8, 8)), 2, 1, separation=-1)
    with pytest.raises(UNetInputError):
        propose_regions(np.zeros((8, 8)), 2, 1, sampling="power", power=-1)
    with pytest.raises(UNetInputError):
        region_pair(np.zeros((8, 8)), np.zeros((8, 8)), (0, 0, 9, 4))


def test_region_pair_keeps_the_region_and_ignores_the_rest():
    image = np.arange(100 * 120, dtype=np.float32).reshape(100, 120)
    labels = np.random.default_rng(0).integers(0, 5, (100, 120))
    crop, lab = region_pair(image, labels, (20, 30, 50, 70), context=10)
    np.testing.assert_array_equal(crop, image[10:60, 20:80])
    np.testing.assert_array_equal(lab[10:40, 10:50], labels[20:50, 30:70])
    outside = np.ones(lab.shape, bool)
    outside[10:40, 10:50] = False
    assert (lab[outside] == IGNORE).all() and lab.dtype == np.int32
    crop, lab = region_pair(np.stack([image, image]), labels, (0, 0, 10, 10), context=5)  # clipped at the edge
    assert crop.shape == (2, 15, 15) and lab.shape == (15, 15)


def test_a_region_pair_trains_on_the_region_only():
    from napari_seamless_unet import TrainConfig, train
    from napari_seamless_unet.core.synthetic import touching_discs

    image, labels = touching_discs((96, 96), n_objects=6, seed=3)[:2]
    crop, lab = region_pair(image, labels, (20, 20, 80, 80), context=12)
    config = TrainConfig(
        base_channels=4, depth=2, tile_size=60, steps=2, device="cpu", ignore_label=IGNORE, validation_fraction=0.0
    )
    result = train([crop], [lab], config=config)
    assert result.model.metadata["training_data"]["annotated_pixels"] == 60 * 60
