"""Training a three-class instance model (background, interior, border): config, targets, validation, model file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_seamless_unet import UNet, load_model, save_model, segment
from napari_seamless_unet.core.errors import UNetInputError
from napari_seamless_unet.core.normalization import Normalization
from napari_seamless_unet.core.synthetic import touching_discs
from napari_seamless_unet.core.train import TrainConfig, train
from napari_seamless_unet.core.train.config import check_config
from napari_seamless_unet.core.train.data import make_planes, weight_map
from napari_seamless_unet.core.train.validate import validate
from napari_seamless_unet.core.weights import interior_border_classes


def test_a_tiny_three_class_run_gives_a_model_file_that_segments(discs, tiny, tmp_path):
    images, labels = discs
    model, history = train(images, labels, config=tiny(instance_classes=3, steps=3))
    assert (model.task, model.num_classes) == ("instances", 3)
    assert model.class_names == ["background", "interior", "border"]
    assert len(history["val_ap50"]) == 1 and 0 <= history["val_ap50"][0] <= 1  # validated at the end
    assert len(history["val_iou_per_class"][0]) == 3
    path = tmp_path / "three.unet.pt"
    save_model(model, path)
    loaded = load_model(path)
    assert (loaded.task, loaded.num_classes) == ("instances", 3)
    assert loaded.metadata["train_config"]["instance_classes"] == 3
    result = segment(loaded, images[0], device="cpu")
    assert result.shape == images[0].shape and result.dtype == np.int32


def test_the_planes_get_the_three_class_target_and_no_weight_where_unannotated():
    _, lab = touching_discs((64, 64), n_objects=6, radius=(6, 10), seed=0)
    strokes = np.where(lab > 0, lab + 1, 1)  # unlabelled="ignore": 1 = background, objects 2, 3, ...
    strokes[:, 40:] = 0  # not annotated
    config = TrainConfig(instance_classes=3, unlabelled="ignore")
    (plane,) = make_planes([(lab.astype(np.float32), strokes, "YX")], config, Normalization(), "training")
    weight = weight_map(plane, config, 3)
    valid = np.ones(lab.shape, bool)
    valid[:, 40:] = False
    np.testing.assert_array_equal(plane.valid, valid)
    np.testing.assert_array_equal(plane.target, interior_border_classes(np.where(valid, lab, 0), valid))
    assert set(np.unique(plane.target[valid])) == {0, 1, 2}
    assert (weight[~valid] == 0).all() and (weight[valid] > 0).all()
    # Along the unannotated region an object has no border: what lies beyond is unknown. So the object pixels of
    # column 39 whose annotated neighbours (left, up, down) are of the same object are interior, also where the
    # (unannotated) truth beyond them is background or another object.
    same = lab[:, 39] > 0
    for neighbour in (lab[:, 38], np.roll(lab[:, 39], 1), np.roll(lab[:, 39], -1)):
        same &= neighbour == lab[:, 39]
    assert (plane.target[:, 39][same] == 1).all()
    assert (same & (lab[:, 40] != lab[:, 39])).any()  # there are such pixels, which full annotation makes border


def test_sparse_strokes_train_three_classes(discs, tiny):
    img, lab = discs[0][0], discs[1][0]
    strokes = np.where(lab > 0, lab + 1, 1)
    strokes[:, 32:] = 0
    model, history = train([img], [strokes], config=tiny(unlabelled="ignore", instance_classes=3, steps=3))
    assert model.num_classes == 3 and all(np.isfinite(history["loss"]))


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"instance_classes": 4}, "instance_classes must be 2"),
        ({"instance_classes": True}, "instance_classes must be 2"),
        ({"instance_classes": 3, "task": "semantic"}, "task='instances' only"),
    ],
)
def test_bad_instance_classes_are_refused(settings, message):
    with pytest.raises(UNetInputError, match=message):
        check_config(TrainConfig(**settings))


def test_resuming_needs_the_same_instance_classes(discs, tiny, tmp_path):
    path = tmp_path / "two.unet.pt"
    train(*discs, config=tiny(steps=1, save_path=str(path)))
    with pytest.raises(UNetInputError, match="instance_classes=2"):
        train(*discs, config=tiny(steps=1, instance_classes=3, resume_from=str(path)))


class ClassOracle(UNet):
    """A valid three-class U-Net that reads the class of each pixel from its (unnormalised) input: 0, 1 or 2."""

    def forward(self, x):
        h, w = self.output_shape(x.shape[-2:])
        centre = x[:, :1, self.halo : self.halo + h, self.halo : self.halo + w]
        return torch.cat([-30 * (centre - k).abs() for k in range(3)], dim=1)


def validation_plane(lab: np.ndarray, raw: np.ndarray | None = None):
    """A validation plane of instance labels ``lab`` whose image is its three-class target (or ``raw``)."""
    config = TrainConfig(instance_classes=3)
    classes = interior_border_classes(lab).astype(np.float32)
    (plane,) = make_planes([(classes if raw is None else raw, lab, "YX")], config, Normalization("none"), "v")
    plane.weight = weight_map(plane, config, 3)
    return plane


def oracle() -> UNet:
    return ClassOracle(1, 3, 2, 2, task="instances", normalization={"mode": "none"})


def test_validation_scores_a_perfect_three_class_model_fully():
    _, lab = touching_discs((128, 128), n_objects=14, radius=(8, 14), seed=1)
    result = validate(oracle(), [validation_plane(lab)], torch.device("cpu"))
    assert result["ap50"] == 1.0 and result["iou"] == 1.0
    assert result["iou_per_class"] == [1.0, 1.0, 1.0] and result["loss"] < 1e-6
    blind = (interior_border_classes(lab) > 0).astype(np.float32)  # a border-blind model: touching discs merge
    worse = validate(oracle(), [validation_plane(lab, raw=blind)], torch.device("cpu"))
    assert worse["ap50"] < 0.8 and worse["iou"] == 1.0  # the same foreground (iou), fewer objects found
    assert worse["iou_per_class"][1] < 0.9  # (not the interior's IoU)


def test_validation_gives_small_objects_their_border_back():
    lab = np.zeros((64, 64), np.int32)
    for k in range(12):  # 4 x 4 squares, touching in pairs: their 2 x 2 interiors alone would match none
        y, x = 6 + 10 * (k // 4), 4 + 20 * (k % 4 // 2) + 4 * (k % 2)
        lab[y : y + 4, x : x + 4] = k + 1
    left, right = lab[:, :-1], lab[:, 1:]
    assert ((left > 0) & (right > 0) & (left != right)).sum() == 6 * 4  # six pairs touch along 4 pixels
    assert validate(oracle(), [validation_plane(lab)], torch.device("cpu"))["ap50"] == 1.0
