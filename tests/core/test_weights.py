"""The paper's weight map against brute-force distances."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_seamless_unet.core.synthetic import touching_discs
from napari_seamless_unet.core.weights import (
    border_weights,
    class_weights,
    distance_cutoff,
    instance_weight_map,
    separate_touching,
    two_nearest_distances,
)


def brute_force_border(objects: np.ndarray, w0: float, sigma: float) -> np.ndarray:
    """w0 * exp(-(d1 + d2)^2 / (2 sigma^2)) with d1, d2 from every background pixel to every object pixel."""
    ids = [i for i in np.unique(objects) if i > 0]
    out = np.zeros(objects.shape)
    for y, x in zip(*np.nonzero(objects == 0), strict=True):
        dists = sorted(
            min(math.hypot(y - oy, x - ox) for oy, ox in zip(*np.nonzero(objects == i), strict=True)) for i in ids
        )
        if len(dists) >= 2:
            out[y, x] = w0 * math.exp(-((dists[0] + dists[1]) ** 2) / (2 * sigma**2))
    return out


def test_two_objects_hand_computed():
    objects = np.zeros((7, 9), dtype=np.int32)
    objects[3, 1] = 1
    objects[3, 6] = 2
    # Pixel (3, 3): d1 = 2 (to object 1), d2 = 3 (to object 2).
    d1, d2 = two_nearest_distances(objects, cutoff=100)
    assert d1[3, 3] == pytest.approx(2.0)
    assert d2[3, 3] == pytest.approx(3.0)
    # Pixel (0, 0): d1 = hypot(3, 1), d2 = hypot(3, 6).
    assert d1[0, 0] == pytest.approx(math.hypot(3, 1), rel=1e-5)
    assert d2[0, 0] == pytest.approx(math.hypot(3, 6), rel=1e-5)
    w = border_weights(objects, w0=10, sigma=5)
    assert w[3, 3] == pytest.approx(10 * math.exp(-25 / 50), rel=1e-5)
    assert w[3, 1] == 0  # object pixels get no border term
    np.testing.assert_allclose(w, brute_force_border(objects, 10, 5), rtol=1e-5, atol=2e-3)


def test_matches_brute_force_on_touching_discs():
    _, labels = touching_discs((40, 40), n_objects=6, radius=(4, 7), seed=3)
    objects = separate_touching(labels)
    w = border_weights(objects, w0=10, sigma=3)
    # Truncation beyond the cutoff changes the term by at most the tolerance (1e-3).
    np.testing.assert_allclose(w, brute_force_border(objects, 10, 3), atol=2e-3)


def test_cutoff_makes_term_negligible():
    d = distance_cutoff(10, 5)
    assert 10 * math.exp(-(d**2) / 50) == pytest.approx(1e-3, rel=1e-6)


def test_class_weights_balance_and_ignore():
    classes = np.array([[0, 0, 0, 1]])
    valid = np.array([[True, True, True, True]])
    w = class_weights(classes, valid, 2)
    assert w[0, :3].sum() == pytest.approx(w[0, 3])  # each class has the same total weight
    assert w.mean() == pytest.approx(1.0)
    valid[0, 0] = False
    assert class_weights(classes, valid, 2)[0, 0] == 0


def test_separate_touching_breaks_4_connectivity():
    labels = np.zeros((5, 8), dtype=np.int32)
    labels[1:4, 1:4] = 1
    labels[1:4, 4:7] = 2
    out = separate_touching(labels)
    assert (out[1:4, 3] == 0).all() and (out[1:4, 4] == 0).all()
    assert (out[1:4, 1:3] == 1).all() and (out[1:4, 5:7] == 2).all()


def test_instance_weight_map_excludes_unannotated():
    _, labels = touching_discs((64, 64), n_objects=8, seed=1)
    valid = np.ones(labels.shape, bool)
    valid[:, :10] = False
    w = instance_weight_map(separate_touching(labels), valid)
    assert (w[:, :10] == 0).all()
    assert (w[valid] > 0).all()
    # Gaps between touching objects carry the largest weights.
    gap = (separate_touching(labels) == 0) & (labels > 0)
    assert w[gap & valid].mean() > 3 * w[valid & (labels == 0)].mean()
