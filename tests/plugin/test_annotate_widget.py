"""The Annotate next dock: the uncertainty layer and the rectangles to annotate, best first."""

from __future__ import annotations

import numpy as np
import torch

from napari_seamless_unet import UNet
from napari_seamless_unet.plugin._annotate_job import AnnotateJob
from napari_seamless_unet.plugin._annotate_widget import AnnotateWidget

TIMEOUT = 120_000


def _tiny():
    torch.manual_seed(0)
    return UNet(1, 2, 4, 2)


def _propose(qtbot, widget):
    assert widget.start() is not None, widget.status.value
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)


def test_proposed_rectangles_are_ranked_by_the_uncertainty_layer(qtbot, viewer, notes):
    widget = AnnotateWidget(viewer)
    widget.registry.add(_tiny(), "tiny")
    widget.size.value, widget.count.value, widget.device.value = 24, 3, "cpu"
    assert widget.model.value == "tiny" and widget.image.value is viewer.layers["cells"]
    _propose(qtbot, widget)
    assert not notes["error"], notes["error"]
    image = viewer.layers["cells"]
    heat = viewer.layers["cells uncertainty"]
    shapes = viewer.layers["cells annotate next"]
    assert heat.data.shape == image.data.shape and heat.data.min() >= 0 and heat.data.max() <= 1
    np.testing.assert_allclose(heat.scale, image.scale)
    np.testing.assert_allclose(shapes.translate, image.translate)
    assert len(shapes.data) == 3 and set(shapes.shape_type) == {"rectangle"}
    assert list(shapes.features["rank"]) == [1, 2, 3]
    means = []
    h, w = image.data.shape
    for corners in shapes.data:
        (y0, x0), (y1, x1) = corners.min(axis=0).astype(int), corners.max(axis=0).astype(int)
        assert 0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w and (y1 - y0, x1 - x0) == (24, 24)
        means.append(heat.data[y0:y1, x0:x1].mean())
    assert means == sorted(means, reverse=True)
    np.testing.assert_allclose(means, shapes.features["score"], rtol=1e-5)
    # A second run updates the same two layers.
    _propose(qtbot, widget)
    assert [layer.name for layer in viewer.layers].count("cells annotate next") == 1
    assert widget.uncertainty_layer is heat


def test_a_stack_proposes_on_the_plane_shown_and_skips_annotated_pixels(qtbot, make_napari_viewer, discs, notes):
    viewer = make_napari_viewer()
    stack = np.stack([discs[0], discs[0][::-1]])
    viewer.add_image(stack, name="stack")
    annotated = np.zeros(stack.shape, np.int32)
    annotated[1, :40, :] = 1
    viewer.add_labels(annotated, name="done")
    viewer.dims.set_point(0, 1)
    widget = AnnotateWidget(viewer)
    widget.registry.add(_tiny(), "tiny")
    widget.size.value, widget.count.value, widget.device.value = 20, 2, "cpu"
    widget.image.value, widget.exclude.value = viewer.layers["stack"], viewer.layers["done"]
    _propose(qtbot, widget)
    assert not notes["error"], notes["error"]
    shapes = viewer.layers["stack annotate next"]
    heat = viewer.layers["stack uncertainty"].data
    assert heat[0].max() == 0 and heat[1].max() > 0  # only the plane shown
    for corners in shapes.data:
        assert set(corners[:, 0]) == {1.0} and corners[:, 1].min() >= 40


def test_no_model_is_a_clear_message(viewer, notes):
    widget = AnnotateWidget(viewer)
    assert widget.start() is None
    assert "no model" in notes["error"][-1]


def test_the_job_can_be_cancelled(discs):
    job = AnnotateJob(_tiny(), discs[0].astype(np.float32), axes="YX", size=16, count=2, device="cpu")
    gen = job.run()
    next(gen)
    job.cancel()
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        assert stop.value is None


def test_the_choose_setting_reaches_propose_regions(viewer, monkeypatch):
    from napari_seamless_unet.plugin import _annotate_job

    calls, original = [], _annotate_job.propose_regions

    def spy(values, **options):
        calls.append(options)
        return original(values, **options)

    widget = AnnotateWidget(viewer)
    widget.registry.add(_tiny(), "tiny")
    widget.size.value, widget.count.value, widget.device.value = 16, 2, "cpu"
    assert widget.choose.value == "top"
    widget.choose.value = "power"
    job = widget.make_job()
    monkeypatch.setattr(_annotate_job, "propose_regions", spy)
    gen = job.run()
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        proposal = stop.value
    assert calls and calls[0]["sampling"] == "power" and calls[0]["count"] == 2
    assert len(proposal.regions) == 2 and [r.rank for r in proposal.regions] == [1, 2]


def test_the_uncertainty_setting_reaches_the_map(viewer, monkeypatch):
    from napari_seamless_unet.core import uncertainty as core_uncertainty

    calls, original = [], core_uncertainty.iter_uncertainty

    def spy(*args, **options):
        calls.append(options)
        return original(*args, **options)

    widget = AnnotateWidget(viewer)
    widget.registry.add(_tiny(), "tiny")
    widget.size.value, widget.count.value, widget.device.value = 16, 2, "cpu"
    assert widget.measure.value == "disagreement"  # the measured default
    widget.measure.value = "entropy"
    monkeypatch.setattr(core_uncertainty, "iter_uncertainty", spy)
    gen = widget.make_job().run()
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        proposal = stop.value
    assert calls and calls[0]["measure"] == "entropy"
    assert proposal.uncertainty.min() >= 0.0 and len(proposal.regions) == 2
