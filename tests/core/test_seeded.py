"""Objects grown from confident seeds (``method="seeds"``, the 3D default): touching objects apart and whole."""

from __future__ import annotations

import numpy as np
import pytest

from napari_seamless_unet.core.postprocess import label_plane
from napari_seamless_unet.core.seeded import seeded_instances


def _two_touching_balls(spacing=(1.0, 1.0, 1.0)):
    """Two balls of radius 6 whose centres are 9 pixels apart (no voxel equidistant from both), split between
    them by the nearer centre; a probability of 0.95 in their cores (3 pixels around the centres), 0.5 in the
    rest of them, 0.05 outside."""
    z, y, x = np.meshgrid(*(np.arange(n) * s for n, s in zip((24, 24, 32), spacing, strict=True)), indexing="ij")
    centres = [(12.0 * spacing[0], 12.0, 10.0), (12.0 * spacing[0], 12.0, 19.0)]
    distances = np.stack([np.sqrt((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) for c in centres])
    inside = distances.min(0) <= 6
    truth = np.where(inside, distances.argmin(0) + 1, 0).astype(np.int32)
    probability = np.where(inside, 0.5, 0.05).astype(np.float32)
    probability[distances.min(0) <= 3] = 0.95
    return probability, truth


def test_touching_objects_come_back_apart_and_whole_from_their_cores():
    probability, truth = _two_touching_balls()
    joined = label_plane(probability, threshold=0.3, ndim=3, fill_holes=False, restore_borders=False)
    assert joined.max() == 1  # one threshold: the two balls are one component
    labels = seeded_instances(probability, threshold=0.3)
    assert labels.max() == 2
    np.testing.assert_array_equal(labels, truth)  # every foreground voxel to the nearer core: the true split
    # Through label_plane (the options of segment and instances_from_probabilities), the same objects; with
    # restore_borders they also take the background in the narrow crease where the balls meet.
    options = {"threshold": 0.3, "ndim": 3, "method": "seeds"}
    np.testing.assert_array_equal(label_plane(probability, restore_borders=False, **options), truth)
    restored = label_plane(probability, **options)
    assert (restored[truth > 0] == truth[truth > 0]).all() and (restored[truth == 0] > 0).any()


def test_seeds_grow_over_the_foreground_only_and_at_most_reach_pixels():
    probability, _ = _two_touching_balls()
    probability[:, :, 26:] = 0.5  # a foreground strip far from both cores (x 26-31: at least 4 from the balls)
    labels = seeded_instances(probability, threshold=0.3, reach=4.0)
    assert not labels[..., 28:].any()  # more than 4 pixels from every core
    near = seeded_instances(probability, threshold=0.3, reach=30.0)
    assert near[..., 28:][probability[..., 28:] > 0.3].all()  # within reach: taken
    assert (seeded_instances(probability, threshold=0.6) > 0).sum() == (probability > 0.9).sum()


def test_small_seeds_are_noise_and_a_high_threshold_raises_the_seed_threshold():
    probability, _ = _two_touching_balls()
    probability[2, 2, 2] = 0.99  # one confident voxel in the background
    labels = seeded_instances(probability, threshold=0.3)
    assert labels.max() == 2 and labels[2, 2, 2] == 0
    assert seeded_instances(probability, threshold=0.3, seed_min_size=1).max() == 3
    # A foreground threshold above the seed threshold: the seeds are the foreground.
    assert (seeded_instances(probability, threshold=0.96, seed_min_size=1) > 0).sum() == 1


@pytest.mark.parametrize("spacing", [(3.0, 1.0, 1.0)])
def test_reach_is_in_in_plane_pixels_with_a_voxel_size(spacing):
    probability, truth = _two_touching_balls(spacing)
    labels = seeded_instances(probability, threshold=0.3, spacing=spacing)
    np.testing.assert_array_equal(labels, truth)  # physical distances: the split by the nearer centre
    # A reach of 2 in-plane pixels covers no plane 3 pixels away across z.
    short = seeded_instances(probability, threshold=0.3, spacing=spacing, reach=2.0)
    cores = probability > 0.9
    planes = np.flatnonzero(cores.any(axis=(1, 2)))
    assert not short[: planes[0]].any() and not short[planes[-1] + 1 :].any()
