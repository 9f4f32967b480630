"""Fixtures for the napari widget tests: small sample layers, tiny model files, captured notifications."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_seamless_unet import UNet, save_model
from napari_seamless_unet.core.synthetic import touching_discs


@pytest.fixture
def notes(monkeypatch):
    """Messages the widgets show: ``notes["error"]`` and ``notes["info"]`` lists."""
    from napari_seamless_unet.plugin import _common

    shown = {"error": [], "info": []}
    monkeypatch.setattr(_common, "show_error", shown["error"].append)
    monkeypatch.setattr(_common, "show_info", shown["info"].append)
    return shown


@pytest.fixture
def discs():
    """A small (80, 96) touching-discs image and its instance labels."""
    return touching_discs((80, 96), n_objects=8, radius=(7, 12), seed=1)


@pytest.fixture
def viewer(make_napari_viewer, discs):
    """A viewer with the image "cells" (scaled and shifted) and its Labels layer "cells labels"."""
    viewer = make_napari_viewer()
    image, labels = discs
    viewer.add_image(image, name="cells", scale=(0.5, 0.25), translate=(3.0, -2.0))
    viewer.add_labels(labels, name="cells labels", scale=(0.5, 0.25), translate=(3.0, -2.0))
    return viewer


def _tiny(task="instances", **kwargs) -> UNet:
    torch.manual_seed(0)
    return UNet(base_channels=4, depth=2, dropout=0.0, task=task, **kwargs)


@pytest.fixture
def model_path(tmp_path):
    """An untrained tiny instance model (depth 2) saved to a file."""
    return save_model(_tiny(), tmp_path / "tiny.unet.pt")


@pytest.fixture
def foreground_model_path(tmp_path):
    """A tiny instance model whose head says "foreground" everywhere: every segmented plane is one object."""
    model = _tiny()
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([-5.0, 5.0]))
    return save_model(model, tmp_path / "foreground.unet.pt")


@pytest.fixture
def rgb_model_path(tmp_path):
    return save_model(_tiny(in_channels=3), tmp_path / "rgb.unet.pt")


def _snapshot(viewer):
    return [(layer.name, type(layer).__name__, np.array(layer.data, copy=True)) for layer in viewer.layers]


@pytest.fixture
def unchanged():
    """``check = unchanged(viewer)`` records all layers; ``check()`` asserts that none was added, removed or edited."""

    def record(viewer):
        before = _snapshot(viewer)

        def check():
            now = _snapshot(viewer)
            assert [(n, t) for n, t, _ in now] == [(n, t) for n, t, _ in before]
            for (_, _, a), (_, _, b) in zip(now, before):
                np.testing.assert_array_equal(a, b)

        return check

    return record


def _same_objects(a, b) -> bool:
    """Whether two label images hold the same objects (the same pixels, 0 the same), whatever their ids."""
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    if a.shape != b.shape or not np.array_equal(a == 0, b == 0):
        return False
    pairs = np.unique(np.stack([a, b]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


@pytest.fixture
def same_objects():
    """``same_objects(a, b)``: the same objects whatever their ids (``segment_dask``'s ids may differ from
    ``segment``'s)."""
    return _same_objects
