"""The Train widget: a short run writes a model the Segment widget can use; stop keeps it; user errors."""

from __future__ import annotations

import numpy as np
import pytest

from napari_seamless_unet import load_model
from napari_seamless_unet.plugin._predict_widget import PredictWidget
from napari_seamless_unet.plugin._train_widget import PRESETS, TrainWidget

pytest.importorskip("napari_seamless_unet.core.train")

TIMEOUT = 120_000
TINY = PRESETS["tiny (8 channels, depth 2)"]


def _widget(viewer, tmp_path, steps=6, preview_every=3):
    widget = TrainWidget(viewer)
    widget.preset.value = TINY
    widget.steps.value = steps
    widget.device.value = "cpu"
    widget.save_path.value = str(tmp_path / "trained.unet.pt")
    widget.preview_every.value = preview_every
    return widget


def _run(qtbot, widget):
    worker = widget.start()
    assert worker is not None, "the widget refused to start"
    # Not waitSignal(worker.finished): a quick worker can finish before a late connection would see it.
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    return worker


def test_pairs_are_guessed_from_the_layers(viewer, tmp_path):
    widget = _widget(viewer, tmp_path)
    assert widget.pairs == [(viewer.layers["cells"], viewer.layers["cells labels"])]


def test_training_writes_a_model_that_segments(qtbot, viewer, tmp_path, notes, device):
    widget = _widget(viewer, tmp_path)
    widget.device.value = device
    predict = PredictWidget(viewer)
    _run(qtbot, widget)
    assert not notes["error"], notes["error"]
    path = tmp_path / "trained.unet.pt"
    assert path.exists() and widget.last_path == path
    model = load_model(path)
    assert (model.base_channels, model.depth) == (8, 2) and model.task == "instances"  # the tiny preset
    assert widget.last_history["step"] == list(range(1, 7))
    assert widget.last_model is not None
    # The live plot got every loss and at least one validation point; the preview layer appeared.
    assert [x for x, _ in widget.plot.series["loss"]] == [1, 2, 3, 4, 5, 6]
    assert widget.plot.series["val loss"]
    preview = viewer.layers["cells — U-Net preview (training)"]
    assert preview.metadata["napari-seamless-unet"]["role"] == "preview"
    assert preview.data.shape == viewer.layers["cells"].data.shape
    np.testing.assert_allclose(preview.scale, viewer.layers["cells"].scale)
    assert widget.progress_bar.value() == widget.progress_bar.maximum()
    assert any(m.startswith("Finished: 6 steps.") for m in notes["info"])
    # The new model is offered (and chosen) in the Segment widget, and segments the image.
    assert len(widget.registry) == 1 and predict.model.value == widget.registry.names()[0]
    assert predict.registry is widget.registry
    predict.image.value = viewer.layers["cells"]
    predict.device.value = device
    _run(qtbot, predict)
    assert not notes["error"], notes["error"]
    labels = predict.last_layer
    assert labels.data.shape == viewer.layers["cells"].data.shape and labels.data.dtype == np.int32
    np.testing.assert_allclose(labels.scale, viewer.layers["cells"].scale)
    np.testing.assert_allclose(labels.translate, viewer.layers["cells"].translate)
    assert predict.last_model is widget.last_model


def test_three_instance_classes_train_a_model_that_segments(qtbot, viewer, tmp_path, notes):
    widget = _widget(viewer, tmp_path, steps=2)
    assert widget.make_config().instance_classes == 2  # the paper's, by default
    widget.instance_output.value = 3
    assert widget.make_config().instance_classes == 3
    _run(qtbot, widget)
    assert not notes["error"], notes["error"]
    model = load_model(tmp_path / "trained.unet.pt")
    assert (model.task, model.num_classes, model.class_names[2]) == ("instances", 3, "border")
    widget.task.value = "semantic"  # the choice applies to instances only
    assert widget.make_config().instance_classes == 2


def test_members_set_in_the_widget_train_an_ensemble(qtbot, viewer, tmp_path, notes):
    widget = _widget(viewer, tmp_path, steps=2)
    assert widget.make_config().members is None  # automatic
    widget.members.value = 2
    assert widget.make_config().members == 2
    _run(qtbot, widget)
    assert not notes["error"], notes["error"]
    assert load_model(tmp_path / "trained.unet.pt").members == 2


def test_stop_keeps_the_model_trained_so_far(qtbot, viewer, tmp_path, notes):
    widget = _widget(viewer, tmp_path, steps=100_000, preview_every=0)
    forward = widget._on_yielded

    def stop_at_once(event):
        forward(event)
        if getattr(event, "stage", None) == "train":  # after the first step (the "read" event comes before)
            widget.stop()

    widget._on_yielded = stop_at_once
    _run(qtbot, widget)
    assert not notes["error"], notes["error"]
    assert widget.last_history["stopped"] is True
    assert 1 <= widget.last_history["step"][-1] < 100_000
    assert (tmp_path / "trained.unet.pt").exists()
    assert load_model(tmp_path / "trained.unet.pt").depth == 2
    assert any(m.startswith("Stopped by you at step") for m in notes["info"])
    assert widget.train_button.enabled and not widget.stop_button.enabled


def test_a_stack_with_a_few_annotated_planes(qtbot, make_napari_viewer, discs, tmp_path, notes):
    viewer = make_napari_viewer()
    image, labels = discs
    stack = np.stack([image, image[::-1], image[:, ::-1]])
    stack_labels = np.zeros(stack.shape, np.int32)
    stack_labels[0], stack_labels[2] = labels, labels[:, ::-1]
    viewer.add_image(stack, name="stack")
    viewer.add_labels(stack_labels, name="stack labels")
    widget = _widget(viewer, tmp_path, steps=3, preview_every=0)
    _run(qtbot, widget)
    assert not notes["error"], notes["error"]
    assert widget.job.summary == "2 annotated plane(s) of 3"
    assert (tmp_path / "trained.unet.pt").exists()


# -- user errors: a message, the layers untouched, no model ----------------------------------------------------------
def test_no_labels_layer(make_napari_viewer, discs, tmp_path, notes, unchanged):
    viewer = make_napari_viewer()
    viewer.add_image(discs[0], name="cells")
    check = unchanged(viewer)
    widget = _widget(viewer, tmp_path)
    assert widget.start() is None
    assert "no Labels layer for 'cells'" in notes["error"][0]
    check()
    assert len(widget.registry) == 0 and not (tmp_path / "trained.unet.pt").exists()


def test_labels_of_another_shape(viewer, tmp_path, notes, unchanged):
    viewer.add_labels(np.ones((40, 40), np.int32), name="other labels")
    check = unchanged(viewer)
    widget = _widget(viewer, tmp_path)
    widget.set_pairs([(viewer.layers["cells"], viewer.layers["other labels"])])
    assert widget.start() is None
    assert "must cover the same pixels" in notes["error"][0] and "'other labels'" in notes["error"][0]
    check()


def test_errors_found_by_the_trainer_are_shown(qtbot, viewer, tmp_path, notes, unchanged):
    # Every pixel one object: no background to learn from; the trainer says so from the worker thread.
    viewer.add_labels(np.ones((80, 96), np.int32), name="all object")
    check = unchanged(viewer)
    widget = _widget(viewer, tmp_path)
    widget.set_pairs([(viewer.layers["cells"], viewer.layers["all object"])])
    _run(qtbot, widget)
    assert len(notes["error"]) == 1 and "background" in notes["error"][0]
    assert widget.status.value == notes["error"][0]
    assert widget.last_model is None and len(widget.registry) == 0
    assert widget.train_button.enabled
    check()


def test_several_pairs_train_one_model(qtbot, make_napari_viewer, discs, tmp_path, notes):
    from napari_seamless_unet.core.synthetic import touching_discs

    viewer = make_napari_viewer()
    second = touching_discs((72, 72), n_objects=6, seed=5)
    viewer.add_image(discs[0], name="a")
    viewer.add_labels(discs[1], name="a labels")
    viewer.add_image(second[0], name="b")
    viewer.add_labels(second[1], name="b labels")
    widget = _widget(viewer, tmp_path, steps=3, preview_every=0)
    widget.add_pair(viewer.layers["b"])
    assert widget.pairs == [
        (viewer.layers["a"], viewer.layers["a labels"]),
        (viewer.layers["b"], viewer.layers["b labels"]),
    ]
    _run(qtbot, widget)
    assert not notes["error"], notes["error"]
    assert widget.job.summary == "2 annotated plane(s)"


def test_a_home_relative_file_name(viewer, tmp_path):
    from pathlib import Path

    widget = _widget(viewer, tmp_path)
    widget.save_path.line_edit.value = "~/unet-models/cells.unet.pt"
    assert widget.make_config().save_path == str(Path.home() / "unet-models" / "cells.unet.pt")
