"""The Segment widget: labels layers of the right shape, scale and dtype; stacks plane by plane; cancel; errors."""

from __future__ import annotations

import numpy as np
import pytest

from napari_seamless_unet import load_model, predict, segment
from napari_seamless_unet.plugin._layers import METADATA_KEY
from napari_seamless_unet.plugin._predict_widget import FROM_FILE, PredictWidget

TIMEOUT = 60_000


def _widget(viewer, image_name, model_path=None):
    widget = PredictWidget(viewer)
    widget.image.value = viewer.layers[image_name]
    widget.device.value = "cpu"
    if model_path is not None:
        widget.model_file.value = str(model_path)
    return widget


def _run(qtbot, widget):
    worker = widget.start()
    assert worker is not None, "the widget refused to start"
    # Not waitSignal(worker.finished): a quick worker can finish before a late connection would see it.
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    return worker


def test_segment_adds_a_labels_layer_like_the_image(qtbot, viewer, model_path, notes):
    widget = _widget(viewer, "cells", model_path)
    assert widget.model.value == FROM_FILE
    _run(qtbot, widget)
    assert not notes["error"]
    layer = viewer.layers[-1]
    image = viewer.layers["cells"]
    assert type(layer).__name__ == "Labels"
    # Named after the image, what it is and the model: never confused with the annotation "cells labels".
    assert layer.name == "cells — U-Net instances (tiny.unet.pt)"
    assert layer.data.shape == image.data.shape
    assert layer.data.dtype == np.int32  # instance labels
    np.testing.assert_allclose(layer.scale, image.scale)
    np.testing.assert_allclose(layer.translate, image.translate)
    assert layer.metadata[METADATA_KEY] == {"role": "prediction", "source": "cells", "model": "tiny.unet.pt"}
    # The same result as the scripting API, and exposed on the widget for the console.
    model = load_model(model_path)
    np.testing.assert_array_equal(layer.data, segment(model, image.data, device="cpu"))
    assert widget.last_labels is layer.data and widget.last_layer is layer
    assert widget.last_model is not None and widget.last_model.depth == 2
    # A loaded file is offered again as a model of this session.
    assert model_path.name in widget.registry.names()
    assert widget.progress_bar.value() == 1000


def test_probability_map_is_added_with_the_labels(qtbot, viewer, model_path, notes):
    widget = _widget(viewer, "cells", model_path)
    widget.probabilities.value = True
    _run(qtbot, widget)
    assert not notes["error"]
    probs = viewer.layers["cells — U-Net probabilities (tiny.unet.pt)"]
    assert probs.metadata[METADATA_KEY]["role"] == "probabilities"
    assert probs.data.shape == viewer.layers["cells"].data.shape
    assert probs.data.dtype == np.float32
    assert widget.last_probabilities.shape == (2, *probs.data.shape)
    np.testing.assert_allclose(widget.last_probabilities.sum(axis=0), 1.0, atol=1e-5)
    # Labels derived from the probabilities agree with a plain segmentation.
    model = load_model(model_path)
    np.testing.assert_array_equal(widget.last_labels, segment(model, viewer.layers["cells"].data, device="cpu"))


def test_test_time_augmentation_option(qtbot, viewer, model_path, notes):
    widget = _widget(viewer, "cells", model_path)
    widget.tta.value = True
    widget.probabilities.value = True
    _run(qtbot, widget)
    assert not notes["error"]
    model, image = load_model(model_path), viewer.layers["cells"].data
    np.testing.assert_allclose(widget.last_probabilities, predict(model, image, device="cpu", tta=True), atol=1e-5)
    np.testing.assert_array_equal(widget.last_labels, segment(model, image, device="cpu", tta=True))


def test_a_stack_is_segmented_plane_by_plane(qtbot, make_napari_viewer, discs, model_path, notes):
    from napari_seamless_unet.core.synthetic import touching_discs

    viewer = make_napari_viewer()
    stack = np.stack([discs[0], touching_discs((80, 96), n_objects=5, seed=7)[0], discs[0][::-1] * 3])
    viewer.add_image(stack, name="stack", scale=(2.0, 1.0, 1.0))
    widget = _widget(viewer, "stack", model_path)
    planes = []
    forward = widget._on_yielded

    def record(event):
        planes.append(event.info["plane"])
        forward(event)

    widget._on_yielded = record  # wrapped before start, so no event is missed
    _run(qtbot, widget)
    assert not notes["error"]
    result = viewer.layers["stack — U-Net instances (tiny.unet.pt)"]
    assert result.data.shape == stack.shape
    np.testing.assert_allclose(result.scale, (2.0, 1.0, 1.0))
    model = load_model(model_path)
    # What segment() gives for the whole stack: ids unique across the stack, not 1.. in every plane.
    np.testing.assert_array_equal(result.data, segment(model, stack, device="cpu"))
    assert result.data[2].max() > result.data[1].max() > result.data[0].max() > 0
    assert sorted(set(planes)) == [0, 1, 2] and planes == sorted(planes)  # one plane after the other


def test_current_plane_only_fills_the_plane_shown(qtbot, make_napari_viewer, foreground_model_path, notes):
    viewer = make_napari_viewer()
    stack = np.random.default_rng(0).random((4, 48, 48)).astype(np.float32)
    viewer.add_image(stack, name="stack")
    widget = _widget(viewer, "stack", foreground_model_path)
    widget.scope.value = "plane"
    viewer.dims.set_point(0, 2)
    _run(qtbot, widget)
    layer = viewer.layers["stack — U-Net instances (foreground.unet.pt)"]
    assert layer.data.shape == stack.shape
    assert np.all(layer.data[2] == 1)  # one object filling the plane
    assert not layer.data[[0, 1, 3]].any()
    # A second plane goes into the same layer, not into a new one.
    viewer.dims.set_point(0, 0)
    widget.model.value = widget.registry.names()[0]
    _run(qtbot, widget)
    assert [ly.name for ly in viewer.layers] == ["stack", "stack — U-Net instances (foreground.unet.pt)"]
    # Ids stay unique across the stack: plane 0's object comes after the one of plane 2.
    assert np.all(layer.data[0] == 2) and np.all(layer.data[2] == 1) and not layer.data[[1, 3]].any()
    # Segmenting a plane again gives it the ids after those of the other planes.
    viewer.dims.set_point(0, 2)
    _run(qtbot, widget)
    assert np.all(layer.data[0] == 2) and np.all(layer.data[2] == 3) and not layer.data[[1, 3]].any()
    assert not notes["error"]


def test_cancel_keeps_the_finished_planes(qtbot, make_napari_viewer, foreground_model_path, notes):
    viewer = make_napari_viewer()
    stack = np.random.default_rng(1).random((12, 64, 64)).astype(np.float32)
    viewer.add_image(stack, name="movie")
    widget = _widget(viewer, "movie", foreground_model_path)
    widget.tile_size.value = 44  # several tiles a plane, so that the cancel lands inside a plane

    make_job = widget.make_job

    def make_job_cancelled_in_plane_1():
        # Cancel from the worker thread at a known point, as the Cancel button would between two batches.
        job = make_job()
        run = job.run

        def run_and_cancel():
            gen = run()
            try:
                while True:
                    event = next(gen)
                    if event.info["plane"] == 1:
                        job.cancel()
                    yield event
            except StopIteration as stop:
                return stop.value

        job.run = run_and_cancel
        return job

    widget.make_job = make_job_cancelled_in_plane_1
    _run(qtbot, widget)
    labels = viewer.layers["movie — U-Net instances (foreground.unet.pt)"].data
    done = [z for z in range(12) if labels[z].any()]
    assert done == [0]  # plane 0 finished; plane 1 was interrupted and cleared; no later plane started
    assert np.all(labels[0] == 1)
    assert widget.job is not None and "Cancelled" in widget.status.value
    assert any("Cancelled" in m for m in notes["info"])


def test_a_model_of_the_session_can_be_chosen(qtbot, viewer, model_path, notes):
    widget = _widget(viewer, "cells")
    model = load_model(model_path)
    name = widget.registry.add(model, "my model")
    assert widget.model.value == name  # the newest session model becomes the default
    _run(qtbot, widget)
    assert widget.last_model is model
    assert not notes["error"]


def test_rgb_image_with_a_three_channel_model(qtbot, make_napari_viewer, rgb_model_path, notes):
    viewer = make_napari_viewer()
    rgb = np.random.default_rng(2).integers(0, 255, (48, 56, 3), dtype=np.uint8)
    viewer.add_image(rgb, name="rgb", rgb=True)
    widget = _widget(viewer, "rgb", rgb_model_path)
    _run(qtbot, widget)
    assert not notes["error"]
    assert viewer.layers["rgb — U-Net instances (rgb.unet.pt)"].data.shape == (48, 56)


# -- user errors: a message, and every layer left as it was --------------------------------------------------------
def test_corrupt_model_file(qtbot, viewer, tmp_path, notes, unchanged):
    bad = tmp_path / "broken.unet.pt"
    bad.write_bytes(b"this is not a model" * 10)
    check = unchanged(viewer)
    widget = _widget(viewer, "cells", bad)
    assert widget.start() is None
    assert len(notes["error"]) == 1 and "not a napari-seamless-unet model file" in notes["error"][0]
    assert widget.status.value == notes["error"][0]
    check()


def test_missing_model(qtbot, viewer, notes, unchanged):
    check = unchanged(viewer)
    widget = _widget(viewer, "cells")
    assert widget.start() is None
    assert "choose a model" in notes["error"][0]
    check()


def test_no_image_layer(qtbot, make_napari_viewer, model_path, notes):
    viewer = make_napari_viewer()
    widget = PredictWidget(viewer)
    widget.model_file.value = str(model_path)
    assert widget.image.value is None
    assert widget.start() is None
    assert "choose an image layer" in notes["error"][0]
    assert len(viewer.layers) == 0


@pytest.mark.parametrize("rgb", [True, False])
def test_wrong_number_of_channels(qtbot, make_napari_viewer, model_path, rgb_model_path, notes, unchanged, rgb):
    viewer = make_napari_viewer()
    if rgb:  # an RGB image given to a grey-level model
        viewer.add_image(np.zeros((40, 40, 3), np.uint8), name="img", rgb=True)
        path, expects = model_path, "expects 1 channel(s)"
    else:  # a grey image given to an RGB model
        viewer.add_image(np.zeros((40, 40), np.float32), name="img")
        path, expects = rgb_model_path, "expects 3 channel(s)"
    check = unchanged(viewer)
    widget = _widget(viewer, "img", path)
    assert widget.start() is None
    assert expects in notes["error"][0] and "'img'" in notes["error"][0]
    check()


def test_errors_in_the_worker_are_shown(qtbot, make_napari_viewer, model_path, notes, unchanged):
    viewer = make_napari_viewer()
    image = np.zeros((48, 48), np.float32)
    image[5, 5] = np.nan
    viewer.add_image(image, name="nan")
    check = unchanged(viewer)
    widget = _widget(viewer, "nan", model_path)
    _run(qtbot, widget)
    assert len(notes["error"]) == 1 and "NaN" in notes["error"][0]
    assert widget.run_button.enabled and not widget.cancel_button.enabled
    check()
