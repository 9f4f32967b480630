"""The layers the plugin adds: names that cannot be confused, and never guessed as training labels or images."""

from __future__ import annotations

import numpy as np
import torch

from napari_seamless_unet import UNet, save_model
from napari_seamless_unet.plugin import _layers
from napari_seamless_unet.plugin._predict_widget import PredictWidget
from napari_seamless_unet.plugin._train_widget import PRESETS, TrainWidget

TIMEOUT = 120_000


def _run(qtbot, widget):
    assert widget.start() is not None, widget.status.value
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)


def _segment(qtbot, viewer, image_name, model_path, probabilities=False):
    widget = PredictWidget(viewer)
    widget.image.value = viewer.layers[image_name]
    widget.device.value = "cpu"
    widget.model_file.value = str(model_path)
    widget.probabilities.value = probabilities
    _run(qtbot, widget)
    return widget


def test_a_segmentation_is_never_guessed_as_training_labels(qtbot, make_napari_viewer, discs, model_path, notes):
    viewer = make_napari_viewer()
    viewer.add_image(discs[0], name="cells")
    predict = _segment(qtbot, viewer, "cells", model_path)
    output = predict.last_layer
    assert not notes["error"], notes["error"]
    # Same shape as the image and a name starting with the image's: the old guess took it as the annotation.
    train = TrainWidget(viewer)
    assert train.pairs == [(viewer.layers["cells"], None)]
    assert output in train._pair_rows[0].labels.choices  # still offered, for a user who picks it on purpose
    # The user's annotation, added later, is guessed; the segmentation never.
    annotation = viewer.add_labels(discs[1], name="cells labels")
    viewer.layers.move(viewer.layers.index(annotation), 0)
    assert train.pairs == [(viewer.layers["cells"], annotation)]
    assert train.add_pair(viewer.layers["cells"]).labels.value is annotation
    # Chosen explicitly (e.g. a corrected segmentation), it is used.
    train.set_pairs([(viewer.layers["cells"], output)])
    assert train.pairs == [(viewer.layers["cells"], output)]


def test_the_training_preview_is_never_guessed(qtbot, viewer, tmp_path, notes):
    train = TrainWidget(viewer)
    train.preset.value = PRESETS["tiny (8 channels, depth 2)"]
    train.steps.value = 2
    train.preview_every.value = 1
    train.device.value = "cpu"
    train.save_path.value = str(tmp_path / "cells.unet.pt")
    _run(qtbot, train)
    assert not notes["error"], notes["error"]
    preview = train.preview_layer
    assert preview is not None and _layers.output_info(preview)["role"] == "preview"
    # The preview has the image's name as prefix; an unmarked copy of it would be guessed (it comes first).
    viewer.layers.move(viewer.layers.index(preview), 0)
    assert _layers.guess_labels_layer(viewer.layers["cells"], [preview]) is None
    assert train.add_pair(viewer.layers["cells"]).labels.value is viewer.layers["cells labels"]
    viewer.layers.remove("cells labels")
    assert train.add_pair(viewer.layers["cells"]).labels.value is None


def test_a_probability_map_is_not_the_default_image(qtbot, make_napari_viewer, discs, model_path, notes):
    viewer = make_napari_viewer()
    viewer.add_image(discs[0], name="cells")
    _segment(qtbot, viewer, "cells", model_path, probabilities=True)
    probs = viewer.layers["cells — U-Net probabilities (tiny.unet.pt)"]
    viewer.layers.move(viewer.layers.index(probs), 0)
    viewer.layers.selection.active = probs
    assert PredictWidget(viewer).image.value is viewer.layers["cells"]
    assert TrainWidget(viewer).pairs[0][0] is viewer.layers["cells"]


def test_names_say_image_kind_and_model(qtbot, make_napari_viewer, discs, tmp_path, notes):
    viewer = make_napari_viewer()
    viewer.add_image(discs[0], name="touching discs")
    viewer.add_labels(discs[1], name="touching discs labels")
    torch.manual_seed(0)
    semantic = save_model(UNet(base_channels=4, depth=2, num_classes=3, task="semantic"), tmp_path / "cells.unet.pt")
    _segment(qtbot, viewer, "touching discs", semantic, probabilities=True)
    assert not notes["error"], notes["error"]
    names = [layer.name for layer in viewer.layers]
    assert names[:2] == ["touching discs", "touching discs labels"]
    assert names[2] == "touching discs — U-Net classes (cells.unet.pt)"
    # Three classes: one probability layer per class, named after it.
    assert names[3:] == [f"touching discs — U-Net probabilities of class {k} (cells.unet.pt)" for k in range(3)]
    assert all(_layers.is_output(layer) for layer in viewer.layers[2:])
    assert not any(_layers.is_output(layer) for layer in viewer.layers[:2])


def test_a_model_trained_without_a_file_is_named_after_the_image(qtbot, viewer, notes):
    train = TrainWidget(viewer)
    train.preset.value = PRESETS["tiny (8 channels, depth 2)"]
    train.steps.value = 1
    train.preview_every.value = 0
    train.device.value = "cpu"
    train.save_path.line_edit.value = ""
    _run(qtbot, train)
    assert not notes["error"], notes["error"]
    (name,) = train.registry.names()
    assert name.startswith("cells model (")
    assert np.isfinite(train.last_history["loss"][-1])
