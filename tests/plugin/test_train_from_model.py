"""The Train dock's human in the loop: start from a model, retrain the model just trained, corrected regions in
one click, a corrected segmentation guessed as its image's labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_seamless_unet import UNet
from napari_seamless_unet.core.errors import ModelFileError
from napari_seamless_unet.core.regions import IGNORE
from napari_seamless_unet.plugin import _start_from
from napari_seamless_unet.plugin._predict_widget import PredictWidget
from napari_seamless_unet.plugin._train_widget import PRESETS, TrainWidget

pytest.importorskip("napari_seamless_unet.core.train")

TIMEOUT = 120_000


def _parent():
    torch.manual_seed(0)
    return UNet(1, 2, 4, 2, task="instances")


def _widget(viewer, tmp_path, steps=3):
    widget = TrainWidget(viewer)
    widget.preset.value = PRESETS["tiny (8 channels, depth 2)"]
    widget.steps.value = steps
    widget.device.value = "cpu"
    widget.preview_on.value = False
    widget.save_path.value = str(tmp_path / "child.unet.pt")
    return widget


def _run(qtbot, widget):
    assert widget.start() is not None, widget.status.value
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)


def test_training_starts_from_a_session_model_then_continues_from_the_model_just_trained(
    qtbot, viewer, tmp_path, notes
):
    widget = _widget(viewer, tmp_path)
    parent = _parent()
    widget.registry.add(parent, "parent")
    widget.reset_choices()
    assert widget.start_from.choice.value == "random"
    keys = [key for _, key in widget.start_from.choices()]
    assert "session:parent" in keys and "starter:nuclei" in keys and keys[-1] == "file"
    widget.start_from.choice.value = "session:parent"
    before = {k: v.clone() for k, v in parent.state_dict().items()}
    _run(qtbot, widget)
    assert not notes["error"], notes["error"]
    child = widget.last_model
    assert (child.base_channels, child.depth) == (4, 2)  # the parent's architecture, not the tiny preset's 8
    assert child.metadata["lineage"][-1]["model"] == "session model 'parent'"
    assert any(not torch.equal(before[k], v.cpu()) for k, v in child.state_dict().items())
    assert all(torch.equal(before[k], v) for k, v in parent.state_dict().items())  # the parent is untouched
    assert "Started from 'parent'." in widget.status.value
    # Train again: from the model just trained (its file), which becomes the grandparent's child.
    assert widget.start_from.choice.value == "just-trained"
    _run(qtbot, widget)
    assert not notes["error"], notes["error"]
    lineage = widget.last_model.metadata["lineage"]
    assert [entry["model"] for entry in lineage] == ["session model 'parent'", str(tmp_path / "child.unet.pt")]
    assert "Started from the model just trained (child.unet.pt)." in widget.status.value


def test_a_model_file_or_a_missing_starter_is_checked_before_training(viewer, tmp_path, notes, monkeypatch):
    widget = _widget(viewer, tmp_path)
    widget.start_from.choice.value = "file"
    assert not widget.start_from.file.native.isHidden()
    assert widget.start() is None and "choose the model file" in notes["error"][-1]
    widget.start_from.file.value = str(tmp_path / "missing.unet.pt")
    assert widget.start() is None and "does not exist" in notes["error"][-1]

    def missing(name):
        raise ModelFileError(f"the starter model {name!r} is missing from this installation")

    monkeypatch.setattr(_start_from, "starter_path", missing)
    widget.start_from.choice.value = "starter:nuclei"
    assert widget.start() is None and "is missing from this installation" in notes["error"][-1]


def test_a_corrected_region_is_a_pair_ignored_outside_its_rectangle(qtbot, viewer, tmp_path, notes):
    widget = _widget(viewer, tmp_path)
    image, labels = viewer.layers["cells"], viewer.layers["cells labels"]
    # The selected rectangle of a Shapes layer of the same transform: rows 10..50, columns 20..60 of the image.
    box = np.array([[10, 20], [10, 60], [50, 60], [50, 20]], dtype=float)
    shapes = viewer.add_shapes([box], shape_type="rectangle", scale=image.scale, translate=image.translate)
    shapes.selected_data = {0}
    assert widget.add_corrected_region() == 1
    region_image, region_labels = widget.regions.pairs[0]
    context = 6 * 2**2 - 4  # the halo of the tiny preset's depth 2
    top, left = max(0, 10 - context), max(0, 20 - context)
    assert region_image.shape == region_labels.shape == (min(80, 50 + context) - top, min(96, 60 + context) - left)
    inside = np.zeros(region_labels.shape, bool)
    inside[10 - top : 50 - top, 20 - left : 60 - left] = True
    assert (region_labels[~inside] == IGNORE).all()
    np.testing.assert_array_equal(region_labels[inside].reshape(40, 40), labels.data[10:50, 20:60])
    np.testing.assert_array_equal(
        region_image, image.data[top : top + region_image.shape[0], left : left + region_image.shape[1]]
    )
    # Without a selected rectangle: the whole plane shown.
    shapes.selected_data = set()
    assert widget.add_corrected_region() == 2
    assert widget.regions.pairs[1][1].shape == labels.data.shape and widget.regions.count.value == "2 corrected regions"
    widget.regions.only.value = True
    job = widget.make_job()
    assert job.config.ignore_label == IGNORE and job.plan is None and len(job.regions) == 2
    _run(qtbot, widget)
    assert not notes["error"], notes["error"]
    assert widget.last_history["step"][-1] == 3
    assert widget.job.names == ["corrected region 1", "corrected region 2"]
    widget.regions.clear()
    assert widget.regions.count.value == "" and widget.make_job().config.ignore_label is None


def test_a_region_without_labels_is_refused(viewer, tmp_path, notes):
    widget = _widget(viewer, tmp_path)
    viewer.layers["cells labels"].data[:] = 0
    assert widget.add_corrected_region() is None and "has no labels" in notes["error"][-1]


def test_a_corrected_segmentation_is_guessed_as_its_images_labels(qtbot, make_napari_viewer, discs, model_path, notes):
    viewer = make_napari_viewer()
    viewer.add_image(discs[0], name="cells")
    predict = PredictWidget(viewer)
    predict.image.value = viewer.layers["cells"]
    predict.device.value = "cpu"
    predict.model_file.value = str(model_path)
    _run(qtbot, predict)
    output = predict.last_layer
    assert TrainWidget(viewer).pairs == [(viewer.layers["cells"], None)]  # not corrected yet: not guessed
    output.paint((10, 10), 3)  # the user corrects it
    assert TrainWidget(viewer).pairs == [(viewer.layers["cells"], output)]
