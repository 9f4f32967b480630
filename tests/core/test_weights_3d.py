"""The weight map and the three-class target of 3D volumes with anisotropic voxels, against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from napari_seamless_unet.core.synthetic import touching_discs
from napari_seamless_unet.core.weights import (
    border_weights,
    instance_weight_map,
    interior_border_classes,
    separate_touching,
    three_class_weight_map,
    two_nearest_distances,
    unit_spacing,
)

ANISOTROPIC = (3.0, 1.0, 1.0)


def balls(shape=(6, 20, 20), spacing=ANISOTROPIC) -> np.ndarray:
    """Four balls round in physical space (z planes ``spacing[0]`` pixels apart): 1 and 2 overlap (each voxel to
    the nearer centre, so they touch across a face), 3 lies two pixels from 2 in-plane, 4 touches 1 across a z face."""
    zz, yy, xx = np.indices(shape).astype(float)
    zz *= spacing[0] / spacing[2]
    labels = np.zeros(shape, np.int32)
    centres = {1: (6, 6, 5, 4.5), 2: (6, 6, 13, 4.5), 3: (6, 15, 14, 2.5), 4: (15, 6, 5, 3.5)}
    best = np.full(shape, np.inf)
    for k, (cz, cy, cx, r) in centres.items():
        d = np.sqrt((zz - cz) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2)
        take = (d <= r) & (d < best)
        labels[take], best[take] = k, d[take]
    return labels


def brute_force_distances(objects: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray]:
    """d1, d2 of every voxel: physical distances (smallest spacing = 1) to every voxel of every object."""
    step = np.asarray(spacing if spacing is not None else (1.0,) * objects.ndim, float)
    step = step / step.min()
    points = np.indices(objects.shape).reshape(objects.ndim, -1).T * step
    per_object = []
    for k in np.unique(objects[objects > 0]):
        inside = points[(objects == k).ravel()]
        per_object.append(np.sqrt(((points[:, None, :] - inside[None, :, :]) ** 2).sum(-1)).min(1))
    d = np.sort(np.stack(per_object), axis=0)
    inf = np.full(objects.size, np.inf)
    d1 = d[0] if len(d) > 0 else inf
    d2 = d[1] if len(d) > 1 else inf
    return d1.reshape(objects.shape), d2.reshape(objects.shape)


def brute_force_weight_map(objects: np.ndarray, spacing, w0: float, sigma: float) -> np.ndarray:
    """``w_c + w0 * exp(-(d1 + d2)**2 / (2 sigma**2))`` on background voxels, ``w_c`` equal class totals."""
    foreground = objects > 0
    n, n_fg = objects.size, foreground.sum()
    wc = np.where(foreground, n / (2 * n_fg), n / (2 * (n - n_fg)))
    d1, d2 = brute_force_distances(objects, spacing)
    term = np.where(foreground, 0.0, w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2)))
    return wc + term


def test_unit_spacing_normalises_and_checks():
    assert unit_spacing(None, 3) is None
    assert unit_spacing((6, 2, 2), 3) == (3.0, 1.0, 1.0)
    assert unit_spacing((0.5, 0.25), 2) == (2.0, 1.0)
    with pytest.raises(ValueError, match="one value per axis"):
        unit_spacing((3, 1), 3)
    with pytest.raises(ValueError, match="positive"):
        unit_spacing((0, 1, 1), 3)


@pytest.mark.parametrize("spacing", [ANISOTROPIC, None, (1.0, 2.0, 1.5)])
def test_3d_weight_map_matches_brute_force(spacing):
    truth = balls()
    objects = separate_touching(truth, spacing=spacing)
    assert len(np.unique(objects)) == 5 and (objects != truth).sum() > 15  # touching: gaps cut
    w = instance_weight_map(objects, w0=10, sigma=3, spacing=spacing)
    expected = brute_force_weight_map(objects, spacing, 10, 3)
    # Truncation beyond the cutoff changes the term by at most its tolerance (1e-3).
    np.testing.assert_allclose(w, expected, rtol=1e-5, atol=2e-3)
    assert w.max() > 5  # the term is not negligible here: the test measures something


def test_3d_bounding_boxes_grow_by_the_cutoff_in_steps_of_each_axis():
    # A volume much longer in z than the cutoff: boxes grown by the cutoff in z *planes* would be too large (slow
    # but right); grown by too little they would miss voxels within the cutoff: compare with brute force.
    objects = np.zeros((16, 12, 12), np.int32)
    objects[2:4, 3:6, 3:6], objects[9:11, 6:9, 5:8], objects[14, 1, 10] = 1, 2, 3
    for cutoff in (2.5, 4.0, 7.0):
        d1, d2 = two_nearest_distances(objects, cutoff, spacing=ANISOTROPIC)
        b1, b2 = brute_force_distances(objects, ANISOTROPIC)
        for got, want in ((d1, b1), (d2, b2)):
            within = want <= cutoff - 1e-4
            np.testing.assert_allclose(got[within], want[within], rtol=1e-5)
            assert np.isinf(got[want > cutoff + 1e-4]).all()


def test_3d_spacing_none_is_unit_spacing_and_only_ratios_count():
    objects = separate_touching(balls())
    reference = instance_weight_map(objects, w0=10, sigma=3)
    np.testing.assert_array_equal(instance_weight_map(objects, w0=10, sigma=3, spacing=(1, 1, 1)), reference)
    np.testing.assert_array_equal(instance_weight_map(objects, w0=10, sigma=3, spacing=(2, 2, 2)), reference)
    anisotropic = instance_weight_map(objects, w0=10, sigma=3, spacing=ANISOTROPIC)
    np.testing.assert_allclose(instance_weight_map(objects, w0=10, sigma=3, spacing=(0.6, 0.2, 0.2)), anisotropic)
    assert not np.allclose(anisotropic, reference)  # the spacing does change the map


def test_2d_spacing_none_is_unchanged_and_anisotropic_2d_matches_brute_force():
    _, labels = touching_discs((30, 30), n_objects=5, radius=(3, 6), seed=2)
    objects = separate_touching(labels)
    plain = border_weights(objects, w0=10, sigma=3)
    np.testing.assert_array_equal(border_weights(objects, w0=10, sigma=3, spacing=(1, 1)), plain)
    w = instance_weight_map(objects, w0=10, sigma=3, spacing=(1.0, 2.0))
    np.testing.assert_allclose(w, brute_force_weight_map(objects, (1.0, 2.0), 10, 3), rtol=1e-5, atol=2e-3)


def test_3d_unannotated_voxels_get_no_weight():
    truth = balls()
    valid = np.ones(truth.shape, bool)
    valid[:, :, :3] = False
    w = instance_weight_map(separate_touching(truth), valid, spacing=ANISOTROPIC)
    assert (w[~valid] == 0).all() and (w[valid] > 0).all()


def test_separate_touching_3d_cuts_across_faces_only():
    labels = np.zeros((4, 5, 8), np.int32)
    labels[:2, 1:4, 1:4], labels[2:, 1:4, 1:4] = 1, 2  # touching across a z face
    labels[:2, 1:4, 4:7] = 3  # touching 1 across an x face
    labels[3, 4, 7], labels[2, 4, 6] = 4, 5  # 4 and 5 meet along an edge only (and touch nothing else)
    out = separate_touching(labels, spacing=ANISOTROPIC)
    np.testing.assert_array_equal(out, separate_touching(labels))  # the gap is a voxel per side, whatever spacing
    assert (out[1, 1:4, 1:3] == 0).all() and (out[2, 1:4, 1:4] == 0).all()  # the z contact, both sides
    assert (out[0, 1:4, 3] == 0).all() and (out[0, 1:4, 4] == 0).all()  # the x contact, both sides
    assert (out[0, 1:4, 1:3] == 1).all() and (out[3, 1:4, 1:4] == 2).all() and (out[0, 1:4, 5:7] == 3).all()
    assert out[3, 4, 7] == 4 and out[2, 4, 6] == 5


def test_interior_border_classes_3d():
    labels = np.zeros((7, 7, 12), np.int32)
    labels[1:6, 1:6, 1:6], labels[1:6, 1:6, 6:11] = 1, 2
    classes = interior_border_classes(labels)
    # Each cube's border is its one-voxel skin (toward background or the other cube); the rest is interior.
    interior = np.zeros(labels.shape, bool)
    interior[2:5, 2:5, 2:5] = interior[2:5, 2:5, 7:10] = True
    np.testing.assert_array_equal(classes == 1, interior)
    np.testing.assert_array_equal(classes == 2, (labels > 0) & ~interior)
    np.testing.assert_array_equal(interior_border_classes(labels, spacing=ANISOTROPIC), classes)  # width 1


def test_interior_border_classes_3d_width_in_in_plane_pixels():
    labels = np.zeros((9, 11, 11), np.int32)
    labels[1:8, 1:10, 1:10] = 1
    wide = interior_border_classes(labels, width=2, spacing=ANISOTROPIC)
    # Two pixels in y and x, but round(2 / 3) -> at least one plane in z.
    interior = np.zeros(labels.shape, bool)
    interior[2:7, 3:8, 3:8] = True
    np.testing.assert_array_equal(wide == 1, interior)
    isotropic = interior_border_classes(labels, width=2)
    interior[:] = False
    interior[3:6, 3:8, 3:8] = True
    np.testing.assert_array_equal(isotropic == 1, interior)


def test_three_class_weight_map_3d():
    truth = balls()
    classes = interior_border_classes(truth, spacing=ANISOTROPIC)
    assert {0, 1, 2} <= set(np.unique(classes))
    w = three_class_weight_map(classes, truth, w0=10, sigma=3, spacing=ANISOTROPIC)
    term = border_weights(truth, 10, 3, background=classes != 1, spacing=ANISOTROPIC)
    balanced = three_class_weight_map(classes, truth, w0=0, spacing=ANISOTROPIC)
    np.testing.assert_allclose(w, balanced + term, rtol=1e-6)
    for k in range(3):  # the three classes carry the same total weight
        assert balanced[classes == k].sum() == pytest.approx(truth.size / 3, rel=1e-5)
    assert term[classes == 2].max() > 5  # where 1 and 2 meet
