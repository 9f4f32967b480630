"""Validation metrics on hand-made cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_seamless_unet.core.metrics import average_precision, instance_iou_matrix, iou_per_class, match_instances


def test_iou_per_class():
    target = np.array([[0, 0, 1, 1]])
    pred = np.array([[0, 1, 1, 1]])
    iou = iou_per_class(pred, target, 3)
    assert iou[0] == pytest.approx(1 / 2)
    assert iou[1] == pytest.approx(2 / 3)
    assert math.isnan(iou[2])
    valid = np.array([[True, False, True, True]])
    np.testing.assert_allclose(iou_per_class(pred, target, 2, valid), [1.0, 1.0])


def test_average_precision_matching():
    target = np.zeros((10, 10), int)
    target[0:4, 0:4] = 1  # 16 px
    target[6:10, 6:10] = 2  # 16 px
    pred = np.zeros((10, 10), int)
    pred[0:4, 0:3] = 5  # IoU 12/16 with object 1: a match
    pred[6:10, 6:7] = 9  # IoU 4/16 with object 2: no match
    pred[0:2, 8:10] = 3  # false positive
    iou = instance_iou_matrix(pred, target)
    assert iou.shape == (2, 3)
    assert iou.max() == pytest.approx(12 / 16)
    # TP = 1, FP = 2, FN = 1
    assert average_precision(pred, target) == pytest.approx(1 / 4)
    assert average_precision(target, target) == 1.0
    assert average_precision(np.zeros_like(target), target) == 0.0
    assert average_precision(np.zeros_like(target), np.zeros_like(target)) == 1.0


def test_match_instances_counts():
    truth = np.zeros((20, 20), int)
    truth[2:8, 2:8], truth[10:18, 10:18] = 1, 2
    pred = np.zeros_like(truth)
    pred[2:8, 2:7], pred[0:2, 15:20] = 5, 7
    score = match_instances(pred, truth)
    assert score["matched"] == 1 and score["true"] == 2 and score["predicted"] == 2
    assert score["f1"] == pytest.approx(0.5)
    assert score["foreground_iou"] == pytest.approx(30 / (36 + 64 + 10))
    assert match_instances(truth, truth)["f1"] == 1.0
    empty = np.zeros_like(truth)
    assert match_instances(empty, empty) == {"foreground_iou": 1.0, "matched": 0, "predicted": 0, "true": 0, "f1": 1.0}
    assert match_instances(empty, truth)["f1"] == 0.0 and match_instances(empty, truth)["foreground_iou"] == 0.0


def test_rand_error_is_the_isbi_definition():
    """Hand-counted pairs: the truth's label 0 is not scored, a predicted label-0 pixel joins no pair."""
    from napari_seamless_unet.core.metrics import rand_error

    truth = np.array([[1, 1, 1, 2, 2, 2, 0]])
    assert rand_error(truth, truth)["error"] == 0.0
    assert rand_error(truth, np.array([[5, 5, 5, 6, 6, 6, 5]]))["error"] == 0.0  # truth's 0 not scored
    # one pixel of cell 1 predicted as membrane: 4 of 6 true pairs kept, nothing merged
    split = rand_error(truth, np.array([[5, 5, 0, 6, 6, 6, 0]]))
    assert split == pytest.approx({"error": 0.2, "precision": 1.0, "recall": 4 / 6})
    # the two cells merged: 4 of 10 predicted pairs true
    merged = rand_error(truth, np.array([[5, 5, 0, 5, 5, 5, 0]]))
    assert merged == pytest.approx({"error": 0.5, "precision": 0.4, "recall": 4 / 6})
    # predicted membrane across the border of the two cells: it merges them in skimage's count, not here
    from skimage.metrics import adapted_rand_error

    thick = np.array([[5, 0, 0, 0, 6, 6, 0]])
    assert rand_error(truth, thick) == pytest.approx({"error": 1 - 2 / 7, "precision": 1.0, "recall": 1 / 6})
    assert adapted_rand_error(truth, thick, ignore_labels=(0,))[1] < 1.0  # skimage: precision lost, a merge
    with pytest.raises(ValueError, match="differ in size"):
        rand_error(truth, truth[:, :3])
