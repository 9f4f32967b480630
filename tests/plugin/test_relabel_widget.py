"""The Segment widget's post-processing options: a change labels again from the kept probabilities, exactly as
instances_from_probabilities would, without running the network; another image, model or scope drops them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_seamless_unet import UNet, instances_from_probabilities, predict, segment
from napari_seamless_unet.core import inference
from napari_seamless_unet.core.postprocess import DEFAULT_THRESHOLD
from napari_seamless_unet.core.synthetic import touching_discs
from napari_seamless_unet.plugin import _predict_job
from napari_seamless_unet.plugin._predict_widget import PredictWidget

TIMEOUT = 60_000
DEFAULTS = {
    "threshold": DEFAULT_THRESHOLD,
    "min_size": 0,
    "fill_holes": True,
    "method": "components",
    "restore_borders": True,
    "link_planes": False,
}


class ProbabilityOracle(UNet):
    """A valid U-Net whose foreground probability is a smooth function of its (normalised) centre input, so that
    thresholds from 0.3 to 0.7 give different objects."""

    def forward(self, x):
        h, w = self.output_shape(x.shape[-2:])
        centre = x[:, :1, self.halo : self.halo + h, self.halo : self.halo + w]
        return torch.cat([torch.zeros_like(centre), 8 * (centre - 0.45)], dim=1)


def oracle() -> UNet:
    return ProbabilityOracle(in_channels=1, num_classes=2, base_channels=2, depth=2, task="instances").eval()


@pytest.fixture
def stack_viewer(make_napari_viewer):
    """A viewer with a stack "stack" of three planes of touching discs and a single plane "disc"."""
    viewer = make_napari_viewer()
    stack = np.stack([touching_discs((90, 100), n_objects=12, radius=(6, 12), seed=s)[0] for s in range(3)])
    viewer.add_image(stack, name="stack", scale=(2.0, 1.0, 1.0))
    viewer.add_image(stack[0].copy(), name="disc")
    return viewer


def _widget(viewer, model, image="stack", name="oracle"):
    widget = PredictWidget(viewer)
    widget.registry.add(model, name)
    widget.image.value = viewer.layers[image]
    widget.device.value = "cpu"
    return widget


def _segment(qtbot, widget):
    assert widget.start() is not None, "the widget refused to start"
    qtbot.waitUntil(lambda: not widget.busy and widget.relabel_worker is None, timeout=TIMEOUT)


def _set(qtbot, widget, **options):
    """Set options as a user would, one widget after the other, and wait until every re-labelling is done."""
    for name, value in options.items():
        getattr(widget, name).value = value
    qtbot.waitUntil(lambda: widget.relabel_worker is None, timeout=TIMEOUT)


@pytest.fixture
def no_network(monkeypatch):
    """``no_network()``: from then on, running the network (or any prediction of the widget's job) fails the test."""

    def forbid():
        def fail(*args, **kwargs):
            raise AssertionError("the network ran again")

        monkeypatch.setattr(inference.TileRunner, "__call__", fail)
        monkeypatch.setattr(_predict_job, "iter_predict", fail)
        monkeypatch.setattr(_predict_job, "iter_segment", fail)

    return forbid


def test_the_options_label_again_from_the_kept_probabilities_without_the_network(
    qtbot, stack_viewer, notes, no_network
):
    viewer, model = stack_viewer, oracle()
    stack = viewer.layers["stack"].data
    probabilities = predict(model, stack, device="cpu")
    widget = _widget(viewer, model)
    widget.min_size.value = 5  # set before the run: the first labels use it
    _segment(qtbot, widget)
    layer = viewer.layers["stack — U-Net instances (oracle)"]
    first = np.array(layer.data)
    np.testing.assert_array_equal(first, segment(model, stack, device="cpu", min_size=5))
    # What is kept: the foreground probabilities only, float32, exactly those of predict().
    assert widget.kept.foreground.dtype == np.float32 and widget.kept.foreground.shape == stack.shape
    np.testing.assert_array_equal(widget.kept.foreground, probabilities[1])

    no_network()
    viewer.add_points(np.zeros((1, 3)))  # other layers come and go: what was kept stays
    options = {**DEFAULTS, "min_size": 5}
    previous = first
    for change in [
        {"threshold": 0.3},
        {"min_size": 40},
        {"method": "watershed"},
        {"fill_holes": False, "restore_borders": False},
        {"link_planes": True},
        {"threshold": 0.5, "min_size": 0},  # two changes in a row: the second waits for the first
    ]:
        _set(qtbot, widget, **change)
        options.update(change)
        expected = instances_from_probabilities(probabilities, **options)
        np.testing.assert_array_equal(layer.data, expected)
        assert not np.array_equal(layer.data, previous), f"{change} changed nothing"
        assert widget.last_labels is layer.data and widget.kept.options == options
        n = int(expected.max())
        assert widget.status.value.startswith(f"Re-labelled from the kept probabilities: {n} objects in ")
        previous = np.array(layer.data)
    # Back to the options of the run: its labels again.
    _set(qtbot, widget, **{**DEFAULTS, "min_size": 5})
    np.testing.assert_array_equal(layer.data, first)
    assert [ly.name for ly in viewer.layers] == ["stack", "disc", "stack — U-Net instances (oracle)", "Points"]
    assert not notes["error"]


def test_options_changed_while_segmenting_are_applied_when_it_ends(qtbot, stack_viewer, notes):
    viewer, model = stack_viewer, oracle()
    widget = _widget(viewer, model)
    assert widget.start() is not None
    widget.threshold.value = 0.35  # the run started with 0.5; the result comes back on this (GUI) thread later
    assert widget.relabel_worker is None
    qtbot.waitUntil(lambda: not widget.busy and widget.kept is not None, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: widget.kept.options["threshold"] == 0.35, timeout=TIMEOUT)
    stack = viewer.layers["stack"].data
    expected = segment(model, stack, device="cpu", threshold=0.35)
    np.testing.assert_array_equal(viewer.layers["stack — U-Net instances (oracle)"].data, expected)
    assert "Re-labelled" in widget.status.value and not notes["error"]


def test_the_plane_scope_labels_its_plane_again_with_ids_unique_across_the_stack(
    qtbot, stack_viewer, notes, no_network
):
    viewer, model = stack_viewer, oracle()
    stack = viewer.layers["stack"].data
    widget = _widget(viewer, model)
    widget.scope.value = "plane"
    viewer.dims.set_point(0, 2 * 0)
    _segment(qtbot, widget)
    viewer.dims.set_point(0, 2 * 2)  # scale 2 along z: plane 2
    _segment(qtbot, widget)
    layer = viewer.layers["stack — U-Net instances (oracle)"]
    before = np.array(layer.data)
    n0 = int(before[0].max())
    assert n0 > 0 and not before[1].any()
    np.testing.assert_array_equal(before[2], segment(model, stack[2], device="cpu") + n0 * (before[2] > 0))
    assert widget.kept.plane == {"Z": 2} and widget.kept.foreground.shape == stack.shape[1:]

    probabilities = predict(model, stack[2], device="cpu")
    no_network()
    viewer.dims.set_point(0, 2 * 1)  # the plane shown does not matter: the plane segmented is labelled again
    _set(qtbot, widget, threshold=0.3, min_size=30)
    plane = instances_from_probabilities(probabilities, threshold=0.3, min_size=30)
    np.testing.assert_array_equal(layer.data[2], np.where(plane > 0, plane + n0, 0))
    assert not np.array_equal(layer.data[2], before[2])
    np.testing.assert_array_equal(layer.data[:2], before[:2])  # the other planes are left as they were
    assert not set(np.unique(layer.data[2])) & set(np.unique(layer.data[0])) - {0}
    assert f"{int(plane.max())} objects of plane {{'Z': 2}}" in widget.status.value
    assert not widget.link_planes.enabled  # one plane: nothing to link
    assert not notes["error"]


@pytest.mark.parametrize("change", ["image", "model", "scope"])
def test_another_image_model_or_scope_drops_the_kept_probabilities(qtbot, stack_viewer, notes, monkeypatch, change):
    viewer, model = stack_viewer, oracle()
    widget = _widget(viewer, model)
    _segment(qtbot, widget)
    assert widget.kept is not None
    runs = []
    call = inference.TileRunner.__call__
    monkeypatch.setattr(inference.TileRunner, "__call__", lambda self, *a: runs.append(1) or call(self, *a))
    if change == "image":
        widget.image.value = viewer.layers["disc"]
    elif change == "model":
        widget.registry.add(oracle(), "another oracle")  # a new model of the session becomes the choice
        assert widget.model.value == "another oracle"
    else:
        widget.scope.value = "plane"
    assert widget.kept is None
    labels = [np.array(layer.data) for layer in viewer.layers]
    widget.threshold.value = 0.3
    assert widget.relabel_worker is None and not runs
    for layer, data in zip(viewer.layers, labels):
        np.testing.assert_array_equal(layer.data, data)  # nothing labelled again: the options wait for Segment
    _segment(qtbot, widget)  # which runs the network
    assert runs and widget.kept is not None and widget.kept.options["threshold"] == 0.3
    assert not notes["error"]


def test_a_removed_labels_layer_or_new_image_data_drops_what_was_kept(qtbot, stack_viewer, notes):
    viewer, model = stack_viewer, oracle()
    widget = _widget(viewer, model)
    _segment(qtbot, widget)
    viewer.layers.remove("stack — U-Net instances (oracle)")
    widget.threshold.value = 0.3
    assert widget.kept is None and "labels layer or image was removed" in widget.status.value
    _segment(qtbot, widget)
    viewer.layers["stack"].data = viewer.layers["stack"].data[:, ::-1].copy()
    widget.threshold.value = 0.4
    assert widget.kept is None and "image changed" in widget.status.value
    assert not notes["error"]


def test_semantic_models_are_unaffected(qtbot, stack_viewer, notes):
    viewer = stack_viewer
    torch.manual_seed(0)
    model = UNet(base_channels=4, depth=2, dropout=0.0, num_classes=3, task="semantic")
    widget = _widget(viewer, model, image="disc", name="semantic")
    assert not widget.threshold.enabled and not widget.min_size.enabled and not widget.method.enabled
    _segment(qtbot, widget)
    layer = viewer.layers["disc — U-Net classes (semantic)"]
    expected = segment(model, viewer.layers["disc"].data, device="cpu")
    np.testing.assert_array_equal(layer.data, expected)
    assert widget.kept is None
    widget.threshold.value = 0.2
    widget.min_size.value = 50
    assert widget.relabel_worker is None
    np.testing.assert_array_equal(layer.data, expected)
    assert not notes["error"]
    # an instance model of the session enables them again
    widget.registry.add(oracle(), "oracle")
    assert widget.threshold.enabled and widget.link_planes.enabled
