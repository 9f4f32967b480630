"""Three-class instance models (background, interior, border): the target, its weights, and the labels made of it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr
from scipy import ndimage
from skimage.segmentation import find_boundaries

from napari_seamless_unet import UNet, UNetInputError, instances_from_probabilities, predict, segment
from napari_seamless_unet.core import instances
from napari_seamless_unet.core.metrics import instance_iou_matrix
from napari_seamless_unet.core.postprocess import label_three_classes, labels_from_classes
from napari_seamless_unet.core.synthetic import touching_discs
from napari_seamless_unet.core.weights import interior_border_classes, separate_touching, three_class_weight_map


def one_hot(classes: np.ndarray) -> np.ndarray:
    """A perfect three-class probability map (classes first) of a class map."""
    return np.stack([classes == k for k in range(3)]).astype(np.float32)


def assert_same_partition(labels: np.ndarray, expected: np.ndarray) -> None:
    """Exactly the same objects, ids aside: each id maps to one expected id and back, background to background."""
    np.testing.assert_array_equal(labels > 0, expected > 0)
    pairs = {(int(a), int(b)) for a, b in zip(labels[labels > 0], expected[labels > 0])}
    n = len(np.unique(expected[expected > 0]))
    assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs}) == n


def two_touching_squares() -> np.ndarray:
    labels = np.zeros((10, 12), np.int32)
    labels[2:7, 2:6] = 1  # rows 2-6, columns 2-5
    labels[2:7, 6:10] = 2  # touches 1 along columns 5 | 6
    return labels


# -- the training target -----------------------------------------------------------------------------------------
def test_the_target_of_two_touching_squares_by_hand():
    classes = interior_border_classes(two_touching_squares())
    expected = np.zeros((10, 12), np.int64)
    expected[2:7, 2:10] = 2  # each square is a one-pixel ring of border ...
    expected[3:6, 3:5] = 1  # ... around its interior: rows 3-5, columns 3-4 and 7-8
    expected[3:6, 7:9] = 1
    np.testing.assert_array_equal(classes, expected)
    # Two pixels wide: the border band between the squares has one column from each.
    np.testing.assert_array_equal(
        interior_border_classes(two_touching_squares(), width=2)[4], [0, 0] + [2] * 8 + [0, 0]
    )


def test_the_target_is_the_inner_boundary_on_annotated_planes():
    _, labels = touching_discs((96, 96), n_objects=12, seed=5)
    classes = interior_border_classes(labels)
    border = find_boundaries(labels, mode="inner") & (labels > 0)
    np.testing.assert_array_equal(classes == 2, border)
    np.testing.assert_array_equal(classes == 1, (labels > 0) & ~border)
    np.testing.assert_array_equal(classes == 0, labels == 0)


def test_unannotated_pixels_make_no_border():
    labels = two_touching_squares()
    valid = np.ones(labels.shape, bool)
    valid[:, 10:] = False  # beyond the right edge of square 2 nothing is annotated: what lies there is unknown
    classes = interior_border_classes(labels, valid)
    annotated = interior_border_classes(labels)
    np.testing.assert_array_equal(annotated[4, 6:10], [2, 1, 1, 2])
    np.testing.assert_array_equal(classes[4, 6:10], [2, 1, 1, 1])  # that edge is no border: interior
    assert (classes[~valid] == 0).all()
    np.testing.assert_array_equal(classes[:, :9], annotated[:, :9])  # the rest as if all were annotated


def test_three_class_weights_balance_the_classes_and_weigh_the_contact():
    labels = two_touching_squares()
    classes = interior_border_classes(labels)
    balanced = three_class_weight_map(classes, labels, w0=0)
    totals = [balanced[classes == k].sum() for k in range(3)]
    np.testing.assert_allclose(totals, [classes.size / 3] * 3, rtol=1e-5)  # each class the same total weight
    weights = three_class_weight_map(classes, labels, w0=10, sigma=5)
    extra = weights - balanced
    assert extra[4, 5] == pytest.approx(10 * np.exp(-1 / 50), rel=1e-4)  # contact border: d1 = 0, d2 = 1
    assert extra[4, 2] == pytest.approx(10 * np.exp(-16 / 50), rel=1e-4)  # outer border: 4 from the other square
    assert extra[4, 0] == pytest.approx(10 * np.exp(-64 / 50), rel=1e-4)  # background, as in the paper: d1 + d2 = 8
    assert (extra[classes == 1] == 0).all()  # interiors get no separation term
    valid = np.ones(labels.shape, bool)
    valid[0] = False
    assert (three_class_weight_map(classes, labels, valid)[0] == 0).all()


# -- labels from three-class probabilities ---------------------------------------------------------------------
def test_two_touching_squares_come_back_whole():
    labels = two_touching_squares()
    probabilities = one_hot(interior_border_classes(labels))
    assert_same_partition(instances_from_probabilities(probabilities), labels)
    assert ndimage.label(probabilities[1] + probabilities[2] > 0.5)[1] == 1  # the foreground alone joins them
    interiors = instances_from_probabilities(probabilities, restore_borders=False)
    assert_same_partition(interiors, np.where(probabilities[1] > 0.5, labels, 0))
    # min_size counts the border an object takes back: 20 pixels each, of which 6 interior.
    assert instances_from_probabilities(probabilities, min_size=20).max() == 2
    assert instances_from_probabilities(probabilities, min_size=21).max() == 0
    assert instances_from_probabilities(probabilities, min_size=6, restore_borders=False).max() == 2
    assert instances_from_probabilities(probabilities, min_size=7, restore_borders=False).max() == 0


@pytest.mark.parametrize("seed", [1, 2, 6])
def test_a_perfect_map_of_touching_discs_gives_back_the_true_instances(seed):
    _, truth = touching_discs((128, 128), n_objects=14, radius=(8, 14), seed=seed)
    classes = interior_border_classes(truth)
    assert (separate_touching(truth) != truth).sum() > 100  # many pixels where two discs touch
    assert ndimage.label(classes > 0)[1] < truth.max() - 2  # which the foreground alone would merge
    for method in ("components", "watershed"):
        assert_same_partition(instances_from_probabilities(one_hot(classes), method=method), truth)


def test_touching_discs_over_ten_images_beat_the_two_class_target():
    """The ceilings of benchmarks/bench_quality.py --ceiling: all but a few pixels where discs meet at a corner,
    one disc whose interior a neck at most two pixels wide cuts in two and one true object in two pieces."""
    three, two = [], []
    for seed in range(10):
        _, truth = touching_discs((256, 256), n_objects=40, seed=seed)
        found = instances_from_probabilities(one_hot(interior_border_classes(truth)))
        three.append(instance_iou_matrix(found, truth).max(1))
        gap = (separate_touching(truth) > 0).astype(np.float32)
        two.append(instance_iou_matrix(instances_from_probabilities(np.stack([1 - gap, gap])), truth).max(1))
    three, two = np.concatenate(three), np.concatenate(two)
    assert three.mean() >= 0.998 and np.sum(three < 0.95) <= 2, (three.mean(), np.sort(three)[:5])
    assert three.mean() > two.mean() and (three == 1).sum() > 1.5 * (two == 1).sum()


def test_a_neck_between_interiors_is_split_by_the_watershed():
    yy, xx = np.mgrid[:40, :70]
    blob = ((yy - 20) ** 2 + (xx - 18) ** 2 <= 12**2) | ((yy - 20) ** 2 + (xx - 50) ** 2 <= 12**2)
    blob |= (abs(yy - 20) <= 3) & (xx > 18) & (xx < 50)  # one object: two discs joined by a neck
    classes = interior_border_classes(blob.astype(np.int32))
    assert instances_from_probabilities(one_hot(classes)).max() == 1
    split = instances_from_probabilities(one_hot(classes), method="watershed")
    assert split.max() == 2 and (split > 0).sum() == blob.sum()  # split, and the border given back in full


def test_thresholds_and_stacks_of_three_class_maps():
    labels = np.stack([two_touching_squares(), np.roll(two_touching_squares(), 1, axis=0)])
    soft = one_hot(interior_border_classes(labels[0]))
    soft = np.stack([soft, one_hot(interior_border_classes(labels[1]))], axis=1)  # CZYX
    soft = 0.7 * soft + 0.1  # interior 0.8 where it is the class, 0.1 elsewhere
    found = instances_from_probabilities(soft, threshold=0.5)
    np.testing.assert_array_equal(np.unique(found), [0, 1, 2, 3, 4])  # ids unique across the stack
    assert_same_partition(found[1], labels[1])
    assert instances_from_probabilities(soft, threshold=0.85).max() == 0  # no interior above 0.85
    linked = instances_from_probabilities(soft, link_planes=True)
    assert linked.max() == 2
    zcyx = instances_from_probabilities(np.moveaxis(soft, 0, 1), axes="ZCYX")
    np.testing.assert_array_equal(zcyx, found)


def test_labels_from_classes_of_a_three_class_model():
    _, truth = touching_discs((128, 128), n_objects=14, radius=(8, 14), seed=1)
    classes = interior_border_classes(truth)
    expected = instances_from_probabilities(one_hot(classes))
    np.testing.assert_array_equal(labels_from_classes(classes, "instances", num_classes=3), expected)
    assert_same_partition(expected, truth)


def test_blockwise_planes_give_the_interiors_with_a_warning(monkeypatch, tmp_path):
    monkeypatch.setattr(instances, "BLOCKWISE_PIXELS", 1000)
    monkeypatch.setattr(instances, "BLOCK", 16)
    _, truth = touching_discs((64, 80), n_objects=10, radius=(6, 10), seed=2)
    probabilities = one_hot(interior_border_classes(truth))
    out = zarr.open_array(str(tmp_path / "l.zarr"), mode="w", shape=truth.shape, chunks=(16, 16), dtype="i4")
    with pytest.warns(UserWarning, match="objects are their interiors"):
        instances_from_probabilities(probabilities, out=out, fill_holes=False)
    interiors = label_three_classes(probabilities[1], probabilities[2], restore_borders=False, fill_holes=False)
    assert_same_partition(out[:], interiors)
    assert interiors.max() >= 8


def test_other_class_counts_are_refused():
    with pytest.raises(UNetInputError, match="4 classes"):
        instances_from_probabilities(np.zeros((4, 20, 30), np.float32))
    with pytest.raises(UNetInputError, match=r"2 classes .* or 3"):
        instances.StackLabeller(np.zeros((20, 30), np.int32), "YX", num_classes=4)


# -- segment() -------------------------------------------------------------------------------------------------
class ClassOracle(UNet):
    """A valid three-class U-Net that reads the class of each pixel from its (unnormalised) input: 0, 1 or 2."""

    def forward(self, x):
        h, w = self.output_shape(x.shape[-2:])
        centre = x[:, :1, self.halo : self.halo + h, self.halo : self.halo + w]
        return torch.cat([-30 * (centre - k).abs() for k in range(3)], dim=1)


def class_oracle() -> UNet:
    names = ["background", "interior", "border"]
    model = ClassOracle(1, 3, 2, 2, task="instances", normalization={"mode": "none"}, class_names=names)
    return model.eval()


@pytest.mark.parametrize("options", [{}, {"min_size": 30, "method": "watershed", "link_planes": True}])
def test_segment_of_a_three_class_model_gives_back_touching_discs(options, device):
    truths = [touching_discs((128, 128), n_objects=14, radius=(8, 14), seed=s)[1] for s in (1, 2)]
    image = np.stack([interior_border_classes(t) for t in truths]).astype(np.float32)
    model = class_oracle()
    probabilities = predict(model, image, tile_shape=(60, 60), device=device)
    expected = instances_from_probabilities(probabilities, **options)
    result = segment(model, image, tile_shape=(60, 60), device=device, **options)  # tiles of 20 x 20 pixels
    np.testing.assert_array_equal(result, expected)
    if not options:
        for plane, truth in zip(result, truths):
            assert_same_partition(plane, truth)


def test_segment_of_a_three_class_model_block_by_block(monkeypatch, tmp_path, device):
    monkeypatch.setattr(instances, "BLOCKWISE_PIXELS", 1000)
    monkeypatch.setattr(instances, "BLOCK", 16)
    _, truth = touching_discs((64, 80), n_objects=10, radius=(6, 10), seed=2)
    image = interior_border_classes(truth).astype(np.float32)
    model = class_oracle()
    out = zarr.open_array(str(tmp_path / "l.zarr"), mode="w", shape=truth.shape, chunks=(16, 16), dtype="i4")
    with pytest.warns(UserWarning, match="objects are their interiors"):
        segment(model, image, out=out, tile_shape=(60, 60), device=device, min_size=3)
    interiors = label_three_classes(image == 1, image == 2, restore_borders=False, fill_holes=False, min_size=3)
    assert_same_partition(out[:], interiors)
    assert interiors.max() >= 8
