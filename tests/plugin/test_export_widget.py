"""The Segment dock's *Export for bioimage.io* button: the chosen model as a package, in a worker; the package
opens again in the dock as a model file."""

from __future__ import annotations

import numpy as np
import pytest

from napari_seamless_unet import load_model, segment
from napari_seamless_unet.plugin import _export
from napari_seamless_unet.plugin._export import package_name
from napari_seamless_unet.plugin._predict_widget import FROM_FILE, PredictWidget

pytest.importorskip("bioimageio.core")

TIMEOUT = 120_000
DETAILS = {"name": "Tiny discs U-Net", "description": "Discs.", "authors": "Ann Author, Bo Author", "license": "MIT"}


@pytest.fixture
def dialogs(monkeypatch, tmp_path):
    """The details dialog and the file dialog answer by themselves; ``dialogs["asked"]`` records the questions."""
    asked = {}

    def details(default_name):
        asked["name"] = default_name
        return dict(DETAILS)

    def save_file(parent, caption, default, filter_):
        asked["file"] = (caption, default, filter_)
        return str(tmp_path / "exported"), filter_  # no suffix: the button adds .zip

    monkeypatch.setattr(_export, "ask_details", details)
    monkeypatch.setattr(_export.QFileDialog, "getSaveFileName", staticmethod(save_file))
    return asked


def test_export_button_writes_a_package_that_segments_the_same(qtbot, viewer, model_path, notes, dialogs, tmp_path):
    from bioimageio.spec import load_description
    from bioimageio.spec.model import v0_5

    widget = PredictWidget(viewer)
    qtbot.addWidget(widget)
    widget.image.value = viewer.layers["cells"]
    widget.device.value = "cpu"
    widget.model_file.value = str(model_path)
    assert widget.export.button.text.startswith("Export for bioimage.io")
    worker = widget.export.start()
    assert worker is not None
    qtbot.waitUntil(lambda: widget.export.button.enabled, timeout=TIMEOUT)
    assert not notes["error"], notes["error"]
    assert dialogs["name"] == "U-Net tiny"  # from the name the model is listed under (tiny.unet.pt)
    path = tmp_path / "exported.zip"
    assert widget.export.last_path == path and path.exists()
    assert "Exported a bioimage.io package" in widget.status.value and notes["info"]
    descr = load_description(path)
    assert isinstance(descr, v0_5.ModelDescr), descr.validation_summary.format()
    assert [a.name for a in descr.authors] == ["Ann Author", "Bo Author"] and str(descr.license) == "MIT"
    # the image layer chosen in the dock is the test image
    (x,) = descr.get_input_test_arrays()
    np.testing.assert_array_equal(x[0, 0], viewer.layers["cells"].data[: x.shape[2], : x.shape[3]])

    # the package opens again in the dock, as a model file, and segments as the original does
    widget.model_file.value = str(path)
    assert widget.model.value == FROM_FILE
    widget.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    assert not notes["error"], notes["error"]
    image = viewer.layers["cells"].data
    np.testing.assert_array_equal(widget.last_labels, segment(load_model(model_path), image, device="cpu"))


def test_export_without_a_model_says_so(qtbot, viewer, notes, dialogs):
    widget = PredictWidget(viewer)
    qtbot.addWidget(widget)
    assert widget.export.start() is None
    assert notes["error"] and "choose a model" in widget.status.value
    assert "name" not in dialogs  # nothing was asked


def test_package_names_are_what_bioimage_io_accepts():
    assert package_name("cells.unet.pt") == "cells"
    assert package_name("tiny.unet.pt") == "U-Net tiny"  # at least 5 characters
    assert package_name("nuclei 2024-05-01 (v2).unet.pt") == "nuclei 2024-05-01 (v2)"
    assert package_name("my/model:3") == "my model 3"
