"""The Segment dock's measurements: the table of the objects becomes the labels layer's features (equal to
``measure`` on the labels, in the units of the image's scale), follows a re-labelling, and is saved as CSV."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from napari_seamless_unet import measure
from napari_seamless_unet.plugin import _measure
from napari_seamless_unet.plugin._predict_widget import PredictWidget

TIMEOUT = 60_000


def _segment(qtbot, viewer, model_path, image="cells"):
    widget = PredictWidget(viewer)
    widget.image.value = viewer.layers[image]
    widget.device.value = "cpu"
    widget.model_file.value = str(model_path)
    assert widget.start() is not None
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: widget.measure_worker is None and widget.table is not None, timeout=TIMEOUT)
    return widget


def test_the_objects_become_the_layers_features(qtbot, viewer, intensity_model_path, notes):
    widget = _segment(qtbot, viewer, intensity_model_path)
    assert not notes["error"]
    layer, image = widget.last_layer, viewer.layers["cells"]
    assert layer.data.max() > 2  # objects to measure
    expected = measure(layer.data, image.data, spacing=(0.5, 0.25))  # the layer's scale
    features = layer.features
    assert list(features.columns) == ["index", *expected]
    np.testing.assert_array_equal(features["index"], expected["label"])
    for name, values in expected.items():
        np.testing.assert_allclose(features[name].to_numpy(), values, err_msg=name)
    # napari shows an object's measurements under the cursor
    label = int(expected["label"][0])
    assert layer._label_index[label] == 0
    assert widget.save_table_button.enabled
    assert f"Measured {len(expected['label'])} objects" in widget.measure_status.value


def test_relabelling_measures_again(qtbot, viewer, intensity_model_path, notes):
    widget = _segment(qtbot, viewer, intensity_model_path)
    before = len(widget.last_layer.features)
    widget.min_size.value = 10_000  # no object is this large: none left
    qtbot.waitUntil(lambda: widget.relabel_worker is None, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: widget.measure_worker is None and len(widget.last_layer.features) == 0, timeout=TIMEOUT)
    assert before > 0 and not notes["error"]
    assert widget.last_layer.data.max() == 0


def test_save_measurements_as_csv(qtbot, viewer, intensity_model_path, tmp_path, monkeypatch):
    widget = _segment(qtbot, viewer, intensity_model_path)
    path = tmp_path / "cells.csv"
    asked = []

    def dialog(parent, title, default, filters):
        asked.append(default)
        return str(path), filters

    monkeypatch.setattr(_measure.QFileDialog, "getSaveFileName", dialog)
    widget.save_table_button.clicked.emit()
    assert asked == [f"{widget.last_layer.name}.csv"]
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    assert [int(r["label"]) for r in rows] == widget.table["label"].tolist()
    assert float(rows[0]["area"]) == pytest.approx(widget.table["area"][0])
    monkeypatch.setattr(_measure.QFileDialog, "getSaveFileName", lambda *a: ("", ""))  # cancelled
    assert widget.save_measurements() is None


def test_unticked_nothing_is_measured(qtbot, viewer, intensity_model_path):
    widget = PredictWidget(viewer)
    widget.image.value = viewer.layers["cells"]
    widget.device.value = "cpu"
    widget.model_file.value = str(intensity_model_path)
    widget.measure_objects.value = False
    widget.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    assert widget.measure_worker is None and widget.table is None
    assert len(widget.last_layer.features) == 0 and not widget.save_table_button.enabled
