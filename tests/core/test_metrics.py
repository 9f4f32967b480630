"""Validation metrics on hand-made cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_seamless_unet.core.metrics import average_precision, instance_iou_matrix, iou_per_class


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
