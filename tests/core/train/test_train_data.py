"""What labels mean: instances, sparse strokes, semantic classes; stacks and RGB images as planes."""

from __future__ import annotations

import numpy as np
import pytest

from napari_seamless_unet.core.errors import UNetInputError
from napari_seamless_unet.core.synthetic import touching_discs
from napari_seamless_unet.core.train import train


def test_semantic_class_count_checked(tiny):
    img, lab = touching_discs((64, 64), n_objects=6, seed=0)
    with pytest.raises(UNetInputError, match="num_classes=3"):
        train([img], [np.clip(lab, 0, 2)], config=tiny(task="semantic", num_classes=2))


def test_sparse_strokes_train(discs, tiny):
    img, lab = discs[0][0], discs[1][0]
    strokes = np.zeros_like(lab)
    strokes[lab == 0] = 1  # background strokes = 1
    strokes[lab > 0] = lab[lab > 0] + 1  # objects = 2, 3, ...
    strokes[:, 32:] = 0  # right half unannotated
    model, history = train([img], [strokes], config=tiny(unlabelled="ignore", steps=3))
    assert model.task == "instances" and model.num_classes == 2
    assert len(history["loss"]) == 3 and all(np.isfinite(history["loss"]))


def test_semantic_task_and_stacks(discs, tiny):
    img, lab = discs[0][0], discs[1][0]
    classes = np.where(lab > 0, 1 + lab % 2, 0)
    stack = np.stack([img, img[::-1]])
    model, history = train(stack, np.stack([classes, classes[::-1]]), config=tiny(task="semantic", steps=2))
    assert model.task == "semantic" and model.num_classes == 3
    assert history["train_planes"] == history["val_planes"] == 2  # a strip of each plane validates
    rgb = np.stack([img, img, img], -1)
    model, _ = train([rgb], [classes], config=tiny(task="semantic", steps=2))
    assert model.in_channels == 3
