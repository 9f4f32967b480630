"""The docks and napari's conventions: the layer's scale as the pixel size (recorded by Train, rescaled to the model's
by Segment), napari's own progress bars beside the docks', and layer choices that follow the layer list."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import torch
from segment_dock import segment_dock

from napari_seamless_unet import UNet, load_model, save_model, segment
from napari_seamless_unet.plugin._jobs import dimensions_text
from napari_seamless_unet.plugin._predict_widget import PredictWidget
from napari_seamless_unet.plugin._train_widget import PRESETS, TrainWidget

TIMEOUT = 120_000


@pytest.fixture
def model_at_1um(tmp_path):
    """An untrained tiny instance model that records a pixel size of 1 x 1."""
    torch.manual_seed(0)
    return save_model(
        UNet(base_channels=4, depth=2, dropout=0.0, task="instances", voxel_size=(1.0, 1.0)), tmp_path / "at1.unet.pt"
    )


def _run(qtbot, widget):
    worker = widget.start()
    assert worker is not None, widget.status.value
    assert widget.busy and widget.activity is not None  # napari's progress bar, beside the dock's
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    assert widget.activity is None  # closed when the run ends
    return worker


def test_segment_rescales_a_layer_of_another_scale_to_the_models_pixel_size(qtbot, viewer, model_at_1um, notes):
    image = viewer.layers["cells"]  # scale (0.5, 0.25)
    widget = segment_dock(viewer, "cells", model_at_1um)
    assert widget.rescale.value  # on by default
    _run(qtbot, widget)
    assert not notes["error"], notes["error"]
    model = load_model(model_at_1um)
    expected = segment(model, image.data, device="cpu", voxel_size=(0.5, 0.25))
    assert not np.array_equal(expected, segment(model, image.data, device="cpu"))
    np.testing.assert_array_equal(widget.last_layer.data, expected)
    np.testing.assert_allclose(widget.last_layer.scale, image.scale)  # on the image's grid
    widget.rescale.value = False
    widget.start()
    assert "resampled" not in widget.status.value
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    np.testing.assert_array_equal(widget.last_layer.data, segment(model, image.data, device="cpu"))


def test_a_scale_of_ones_is_unknown_and_says_so(qtbot, viewer, model_at_1um, discs, tmp_path, notes):
    viewer.add_image(discs[0], name="unscaled")
    torch.manual_seed(0)
    at_half = save_model(
        UNet(base_channels=4, depth=2, task="instances", voxel_size=(0.5, 0.5)), tmp_path / "h.unet.pt"
    )
    widget = segment_dock(viewer, "unscaled", at_half)
    widget.start()
    assert "scale is 1 (unknown): segmented at its own pixel size, not the model's 0.5 x 0.5" in widget.status.value
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    np.testing.assert_array_equal(widget.last_layer.data, segment(load_model(at_half), discs[0], device="cpu"))
    widget = segment_dock(viewer, "unscaled", model_at_1um)  # a scale of 1 is the model's: nothing to say
    widget.start()
    assert "resampled" not in widget.status.value and "unknown" not in widget.status.value
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)


def test_a_lazy_run_refuses_a_layer_it_would_have_to_resample(make_napari_viewer, model_at_1um, discs, notes):
    viewer = make_napari_viewer()
    viewer.add_image(da.from_array(discs[0], chunks=40), name="lazy", scale=(0.5, 0.5))
    widget = segment_dock(viewer, "lazy", model_at_1um)
    widget.lazy.value = True
    assert widget.lazy_mode
    assert widget.start() is None
    assert "'lazy (dask)' does not resample" in widget.status.value and notes["error"]


def test_train_records_the_layers_scale_as_the_pixel_size(viewer, discs, tmp_path):
    widget = TrainWidget(viewer)
    widget.preset.value = PRESETS["tiny (8 channels, depth 2)"]
    widget.save_path.value = str(tmp_path / "m.unet.pt")
    config = widget.make_job().config
    assert config.voxel_size == (0.5, 0.25)  # "cells" has scale (0.5, 0.25)
    assert dimensions_text(config) == "2D network, pixels 0.5 x 0.25"
    viewer.layers["cells"].scale = (1.0, 1.0)  # napari's default: nothing recorded
    assert widget.make_job().config.voxel_size is None


def test_training_shows_napari_progress(qtbot, viewer, tmp_path, notes):
    widget = TrainWidget(viewer)
    widget.preset.value = PRESETS["tiny (8 channels, depth 2)"]
    widget.steps.value = 3
    widget.device.value = "cpu"
    widget.preview_every.value = 0
    widget.save_path.value = str(tmp_path / "m.unet.pt")
    seen, move = [], widget._move_activity

    def recording():
        move()
        if widget.activity is not None:
            seen.append((widget.activity.n, widget.activity.total))

    widget._move_activity = recording
    _run(qtbot, widget)
    assert not notes["error"], notes["error"]
    assert seen and all(total == 3 and 1 <= n <= 3 for n, total in seen)  # napari's bar counted the steps
    assert [n for n, _ in seen] == sorted(n for n, _ in seen)
    assert load_model(tmp_path / "m.unet.pt").voxel_size == (0.5, 0.25)


def _names(combo) -> list[str]:
    """The names a layer combo box shows (not its empty choice)."""
    native = combo.native
    return [native.itemText(i) for i in range(native.count()) if native.itemData(i) is not None]


def test_layer_choices_follow_insertions_removals_and_renames(viewer, discs):
    segment, train_dock = PredictWidget(viewer), TrainWidget(viewer)
    image_combos = [segment.image, train_dock._pair_rows[0].image]
    labels_combo = train_dock._pair_rows[0].labels
    for combo in image_combos:
        assert _names(combo) == ["cells"]
    viewer.add_image(discs[0], name="second")
    viewer.add_labels(discs[1], name="second labels")
    for combo in image_combos:
        assert _names(combo) == ["cells", "second"]
    assert _names(labels_combo) == ["cells labels", "second labels"]
    viewer.layers["second"].name = "renamed"
    for combo in image_combos:
        assert _names(combo) == ["cells", "renamed"]
    viewer.layers.remove("cells")
    for combo in image_combos:
        assert _names(combo) == ["renamed"] and combo.value is viewer.layers["renamed"]
    viewer.layers.remove("second labels")
    assert _names(labels_combo) == ["cells labels"]
