"""Models belong to a viewer's session: one registry per viewer, freed when its widgets or the viewer close."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from qtpy.QtCore import QCoreApplication, QEvent

from napari_seamless_unet import UNet, load_model
from napari_seamless_unet.plugin import add_model, current_model, model_names
from napari_seamless_unet.plugin._predict_widget import PredictWidget
from napari_seamless_unet.plugin._registry import registry_for
from napari_seamless_unet.plugin._train_widget import PRESETS, TrainWidget

TIMEOUT = 120_000
PLUGIN = "napari-seamless-unet"


def _collect(qtbot):
    """Let Qt delete what was scheduled for deletion, then collect Python garbage."""
    for _ in range(3):
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        QCoreApplication.processEvents()
        qtbot.wait(10)
    gc.collect()


def _tiny():
    torch.manual_seed(0)
    return UNet(base_channels=4, depth=2, dropout=0.0)


def _run(qtbot, widget):
    assert widget.start() is not None
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)


def _segment(qtbot, widget, image_layer):
    widget.image.value = image_layer
    widget.device.value = "cpu"
    _run(qtbot, widget)


def test_a_trained_model_is_freed_when_the_viewer_closes(qtbot, viewer, tmp_path, notes):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Train U-Net")
    widget.preset.value = PRESETS["tiny (8 channels, depth 2)"]
    widget.steps.value = 2
    widget.preview_every.value = 0
    widget.device.value = "cpu"
    widget.save_path.value = str(tmp_path / "freed.unet.pt")
    _run(qtbot, widget)
    assert not notes["error"], notes["error"]
    model = weakref.ref(widget.last_model)
    assert model() is not None
    del widget
    viewer.close()
    _collect(qtbot)
    assert model() is None


def test_closing_the_last_widget_empties_the_registry(qtbot, viewer, model_path):
    train_dock, train = viewer.window.add_plugin_dock_widget(PLUGIN, "Train U-Net")
    predict_dock, predict = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment with U-Net")
    registry = registry_for(viewer)
    assert train.registry is registry and predict.registry is registry and registry.users == 2
    predict.model_file.value = str(model_path)
    _segment(qtbot, predict, viewer.layers["cells"])
    model = weakref.ref(predict.last_model)
    assert registry.names() == [model_path.name]
    # Closing one widget (napari's dock close button) keeps the session's models for the other.
    viewer.window.remove_dock_widget(train_dock)
    _collect(qtbot)
    assert registry.names() == [model_path.name] and registry.users == 1
    # Closing the last one drops them.
    viewer.window.remove_dock_widget(predict_dock)
    _collect(qtbot)
    assert len(registry) == 0 and registry.users == 0
    assert predict.last_model is None and predict.registry is None
    assert model() is None
    # The viewer gets a fresh registry when a widget opens again.
    assert registry_for(viewer) is not registry


def test_a_replaced_model_is_freed(qtbot, viewer, tmp_path, monkeypatch):
    emptied = []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    widget = PredictWidget(viewer)
    path = str(tmp_path / "cells.unet.pt")
    first = _tiny()
    name = widget.registry.add(first, "cells.unet.pt", path)
    _segment(qtbot, widget, viewer.layers["cells"])
    assert widget.last_model is first
    old = weakref.ref(first)
    del first
    # The same file trained again: the new model replaces the old one, which nothing keeps alive.
    second = _tiny()
    assert widget.registry.add(second, "cells.unet.pt", path) == name
    gc.collect()
    assert old() is None
    assert emptied, "torch.cuda.empty_cache() was not called"
    assert widget.registry.names() == [name] and widget.model.value == name
    assert widget.registry.get(name).model is second


def test_clearing_empties_the_cuda_cache_only_where_cuda_is_in_use(viewer, monkeypatch):
    emptied = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    registry = registry_for(viewer)
    registry.add(_tiny(), "a")
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    registry.clear()
    assert not emptied
    registry.add(_tiny(), "a")
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    registry.clear()
    assert emptied == [True]


def test_two_viewers_have_separate_registries(make_napari_viewer, model_path):
    first, second = make_napari_viewer(), make_napari_viewer()
    seg_first, seg_second = PredictWidget(first), PredictWidget(second)
    assert seg_first.registry is not seg_second.registry
    model = load_model(model_path)
    add_model(model, "only in the first", viewer=first)
    assert seg_first.model.value == "only in the first"
    assert "only in the first" not in seg_second.model.choices
    assert model_names(second) == []
    with pytest.raises(LookupError, match="no model yet"):
        current_model(second)


def test_console_functions(make_napari_viewer, model_path):
    viewer = make_napari_viewer()
    widget = PredictWidget(viewer)
    model = load_model(model_path)
    # The widget gets a proxy of the viewer from napari; the console has the viewer itself: same registry.
    assert add_model(model, "from the console", viewer=viewer) == "from the console"
    assert widget.model.value == "from the console"
    assert current_model(viewer) is model
    assert current_model(viewer, "from the console") is model
    assert model_names(viewer) == ["from the console"]
    # Without a viewer: napari's current viewer.
    other = load_model(model_path)
    add_model(other, path=model_path)
    assert current_model() is other and model_names() == [model_path.name, "from the console"]
    with pytest.raises(LookupError, match="no model named 'nope'"):
        current_model(viewer, "nope")


def test_docked_widgets_share_the_registry_of_their_viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    _, train = viewer.window.add_plugin_dock_widget(PLUGIN, "Train U-Net")  # napari passes a proxy of the viewer
    assert isinstance(train, TrainWidget)
    assert train.registry is registry_for(viewer)
