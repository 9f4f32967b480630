"""3D in the docks: the Train dock's 2D/3D choice (volumes only, voxel size from the layer's scale), the Segment
dock and its job with a 3D model (volume by volume, no per-plane scope, a clear message for planes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_dock import segment_dock

from napari_seamless_unet import UNet, save_model, segment
from napari_seamless_unet.core.errors import UNetInputError
from napari_seamless_unet.core.progress import run
from napari_seamless_unet.core.synthetic import touching_discs
from napari_seamless_unet.plugin import _layers
from napari_seamless_unet.plugin._jobs import settings_text
from napari_seamless_unet.plugin._predict_job import PredictionJob
from napari_seamless_unet.plugin._train_widget import TrainWidget

TIMEOUT = 60_000


def _volume(t=None):
    """A (12, 48, 48) volume (or t of them) of discs repeated along z, and its labels."""
    planes = [touching_discs((48, 48), n_objects=4, radius=(6, 9), seed=s) for s in range(3)]
    image = np.repeat(np.stack([p[0] for p in planes]), 4, axis=0).astype(np.float32)
    labels = np.repeat(np.stack([p[1] for p in planes]), 4, axis=0).astype(np.int32)
    if t:
        image, labels = np.stack([image] * t), np.stack([labels] * t)
    return image, labels


@pytest.fixture
def vol_viewer(viewer):
    """The 2D "cells" viewer plus a volume "vol" (voxels 3 x 0.5 x 0.5) and its Labels layer "vol labels"."""
    image, labels = _volume()
    viewer.add_image(image, name="vol", scale=(3.0, 0.5, 0.5))
    viewer.add_labels(labels, name="vol labels", scale=(3.0, 0.5, 0.5))
    return viewer


def _model_3d(tmp_path, task="semantic", num_classes=3):
    torch.manual_seed(0)
    model = UNet(num_classes=num_classes, base_channels=2, depth=1, task=task, ndim=3, voxel_size=(3, 1, 1))
    return save_model(model, tmp_path / f"{task}3d.unet.pt")


def _run(qtbot, widget):
    worker = widget.start()
    assert worker is not None, f"the widget refused to start: {widget.status.value}"
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)


# -- Train dock ----------------------------------------------------------------------------------------------------
def test_dimensions_choice_only_for_volumes_and_voxel_size_from_the_scale(vol_viewer, tmp_path):
    widget = TrainWidget(vol_viewer)
    widget.set_pairs([(vol_viewer.layers["cells"], vol_viewer.layers["cells labels"])])
    assert widget.dimensions.value == 2 and not widget.dimensions.enabled  # a plane: 2D only
    widget.set_pairs([(vol_viewer.layers["vol"], vol_viewer.layers["vol labels"])])
    assert widget.dimensions.enabled and widget.dimensions.value == 2  # default: 2D, as before
    assert widget.make_job().config.ndim == 2 and widget.make_job().plan.ndim == 2
    widget.dimensions.value = 3
    widget.save_path.value = str(tmp_path / "m.unet.pt")
    job = widget.make_job()
    assert job.config.ndim == 3 and job.config.voxel_size == (3.0, 0.5, 0.5)
    assert job.plan.ndim == 3 and job.plan.axes == "ZYX" and job.preview_every == 0
    # choosing a plane again goes back to 2D
    widget._pair_rows[0].image.value = vol_viewer.layers["cells"]
    assert widget.dimensions.value == 2 and not widget.dimensions.enabled


def test_3d_settings_text_names_the_dimensions():
    from napari_seamless_unet.core.train import TrainConfig

    settings = {"base_channels": 4, "depth": 1, "tile_size": [8, 44, 44], "batch_size": 1, "learning_rate": 1e-3}
    text = settings_text(settings, TrainConfig(ndim=3, voxel_size=(3, 1, 1)))
    assert text.startswith(" Network: 3D, voxels 3 x 1 x 1, 4 channels, depth 1, tiles of 8 x 44 x 44 px")
    assert settings_text({**settings, "tile_size": 44}, TrainConfig()).startswith(" Network: 4 channels")


def test_training_plan_of_volumes(make_napari_viewer):
    viewer = make_napari_viewer()
    image, labels = _volume(t=3)
    labels[1] = 0  # the second time point is not annotated
    pair = (viewer.add_image(image, name="tl"), viewer.add_labels(labels, name="tl labels"))
    data = _layers.plan_training([pair], ndim=3).load()
    assert data.axes == "ZYX" and [i.shape for i in data.images] == [(12, 48, 48)] * 2
    assert [lab.shape for lab in data.labels] == [(12, 48, 48)] * 2 and data.summary == "2 annotated volume(s) of 3"
    plane = (viewer.add_image(image[0, 0], name="p"), viewer.add_labels(labels[0, 0], name="p labels"))
    with pytest.raises(UNetInputError, match="no Z axis"):
        _layers.plan_training([plane], ndim=3)


def test_tiny_3d_training_from_the_dock(vol_viewer, tmp_path):
    widget = TrainWidget(vol_viewer)
    widget.set_pairs([(vol_viewer.layers["vol"], vol_viewer.layers["vol labels"])])
    widget.dimensions.value = 3
    widget.device.value = "cpu"
    job = widget.make_job(base_channels=2, depth=1, steps=2, save_path=str(tmp_path / "v.unet.pt"))
    model, _history = run(job.run())
    assert model.ndim == 3 and model.voxel_size == (3.0, 0.5, 0.5)


# -- Segment dock --------------------------------------------------------------------------------------------------
def test_a_3d_model_segments_each_volume_of_a_time_lapse(tmp_path):
    path = _model_3d(tmp_path)
    from napari_seamless_unet import load_model

    model = load_model(path)
    image, _ = _volume(t=2)
    job = PredictionJob(model, image, "TZYX", plane={"T": 1, "Z": 5}, device="cpu")
    assert job.plane is None and job.planes == [{"T": 0}, {"T": 1}]  # volumes; the plane is ignored
    events = []
    gen = job.run()
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            result = stop.value
            break
    assert events[-1].info["unit"] == "volume" and events[-1].info["planes"] == 2
    assert result.labels.shape == image.shape
    np.testing.assert_array_equal(result.labels, segment(model, image, axes="TZYX", device="cpu"))
    with pytest.raises(UNetInputError, match="no Z axis"):
        PredictionJob(model, image[0, 0], "YX")


def test_segment_dock_with_a_3d_model(qtbot, vol_viewer, tmp_path, notes):
    path = _model_3d(tmp_path)
    widget = segment_dock(vol_viewer, "vol", path)
    widget.scope.value = "plane"  # not offered for a 3D model: the whole volume is segmented
    _run(qtbot, widget)
    assert not notes["error"], notes["error"]
    layer = widget.last_layer
    assert layer.data.shape == (12, 48, 48)
    np.testing.assert_allclose(layer.scale, (3.0, 0.5, 0.5))
    assert not widget.scope.enabled  # the model is known now
    # the status said the scope does not apply while it ran; now it tells the result
    assert "Segmented 'vol'" in widget.status.value


def test_segment_dock_says_a_3d_model_needs_a_volume(qtbot, vol_viewer, tmp_path, notes):
    widget = segment_dock(vol_viewer, "cells", _model_3d(tmp_path))
    n_layers = len(vol_viewer.layers)
    assert widget.start() is None
    assert "3D network" in widget.status.value and "no Z axis" in widget.status.value
    assert "Traceback" not in widget.status.value and len(vol_viewer.layers) == n_layers


def test_segment_dock_status_for_the_plane_scope_with_a_3d_model(qtbot, vol_viewer, tmp_path):
    widget = segment_dock(vol_viewer, "vol", _model_3d(tmp_path))
    widget.scope.value = "plane"
    assert widget.start() is not None
    assert "whole volumes" in widget.status.value
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)


def test_instances_of_a_3d_model_from_the_dock(qtbot, vol_viewer, tmp_path, notes):
    widget = segment_dock(vol_viewer, "vol", _model_3d(tmp_path, "instances", 2))
    _run(qtbot, widget)
    assert not notes["error"], notes["error"]
    assert widget.last_layer.data.shape == (12, 48, 48) and widget.kept is not None
    assert widget.kept.foreground.shape == (12, 48, 48)
    # once the dock knows the model is 3D, its options show the 3D defaults (instances.default_options)
    options = widget.instance_options.values()
    assert (options["threshold"], options["method"], options["min_size"]) == (0.3, "seeds", 30)
