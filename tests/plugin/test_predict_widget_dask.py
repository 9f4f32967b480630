"""The Segment dock's lazy (dask) mode: dask, zarr and multiscale layers segmented without blocking the viewer."""

from __future__ import annotations

import threading

import dask.array as da
import numpy as np
import pytest
import torch
import zarr
from segment_dock import segment_dock

from napari_seamless_unet import UNet, load_model, predict, save_model, segment
from napari_seamless_unet.core.synthetic import touching_discs
from napari_seamless_unet.plugin import _dask_job
from napari_seamless_unet.plugin._layers import METADATA_KEY
from napari_seamless_unet.plugin._predict_dask import LARGE_PLANE

TIMEOUT = 120_000


@pytest.fixture
def semantic_model_path(tmp_path):
    torch.manual_seed(0)
    model = UNet(in_channels=1, num_classes=2, depth=2, base_channels=4, task="semantic")
    return save_model(model, tmp_path / "semantic.unet.pt")


@pytest.fixture
def stack():
    """Three (64, 72) planes of touching discs."""
    return np.stack([touching_discs((64, 72), n_objects=5, radius=(6, 10), seed=s)[0] for s in (1, 2, 3)])


def recording_dask(array: np.ndarray, reads: list) -> da.Array:
    """A dask array of ``array`` (one chunk a plane) that notes the thread computing each chunk."""

    def read(block):
        reads.append(threading.current_thread())
        return block

    return da.from_array(array, chunks=(1, *array.shape[1:])).map_blocks(read, dtype=array.dtype)


def _run(qtbot, widget):
    worker = widget.start()
    assert worker is not None, widget.status.value
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    return worker


def test_the_lazy_option_follows_the_layer(make_napari_viewer, stack, model_path):
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="numpy")
    viewer.add_image(da.from_array(stack), name="dask")
    viewer.add_image(zarr.array(stack), name="zarr")
    viewer.add_image([stack, stack[:, ::2, ::2]], name="pyramid", multiscale=True)
    big = da.zeros((4100, 4100), dtype=np.uint8, chunks=2048)
    assert LARGE_PLANE < 4100 * 4100
    viewer.add_image(big, name="big", contrast_limits=(0, 1))
    widget = segment_dock(viewer, "numpy", model_path)
    assert not widget.lazy.enabled and not widget.lazy_mode  # a numpy layer: as before
    for name in ("dask", "zarr", "pyramid"):
        widget.image.value = viewer.layers[name]
        assert widget.lazy.enabled and not widget.lazy.value, name  # offered, not ticked for small planes
    widget.lazy.value = True
    assert widget.lazy_mode and not widget.scope.enabled  # a lazy run segments the whole image
    widget.image.value = viewer.layers["big"]
    assert widget.lazy.enabled and widget.lazy.value  # ticked by itself above 4096 x 4096 pixels a plane
    widget.image.value = viewer.layers["numpy"]
    assert not widget.lazy_mode and widget.scope.enabled


def test_a_semantic_model_gives_a_lazy_labels_layer(qtbot, make_napari_viewer, stack, semantic_model_path, notes):
    viewer = make_napari_viewer()
    viewer.add_image(da.from_array(stack, chunks=(1, 64, 72)), name="lazy", scale=(3.0, 0.5, 0.25), translate=(1, 2, 3))
    widget = segment_dock(viewer, "lazy", semantic_model_path)
    widget.lazy.value = True
    widget.probabilities.value = True
    _run(qtbot, widget)
    assert not notes["error"], notes["error"]
    layer = viewer.layers["lazy — U-Net classes (semantic.unet.pt)"]
    assert isinstance(layer.data, da.Array)  # napari computes the blocks it shows
    assert layer.data.shape == stack.shape and layer.data.dtype == np.uint8
    np.testing.assert_allclose(layer.scale, (3.0, 0.5, 0.25))
    np.testing.assert_allclose(layer.translate, (1, 2, 3))
    assert layer.metadata[METADATA_KEY] == {
        "role": "prediction",
        "source": "lazy",
        "model": "semantic.unet.pt",
        "lazy": True,
    }
    model = load_model(semantic_model_path)
    np.testing.assert_array_equal(layer.data.compute(), segment(model, stack, device="cpu"))
    probs = viewer.layers["lazy — U-Net probabilities (semantic.unet.pt)"]
    assert isinstance(probs.data, da.Array) and probs.data.shape == stack.shape
    np.testing.assert_allclose(probs.data.compute(), predict(model, stack, device="cpu")[1], atol=1e-5)
    assert "lazy labels" in widget.status.value and widget.last_layer is layer


def test_a_semantic_model_on_a_large_plane_is_computed_in_a_worker(
    qtbot, make_napari_viewer, stack, semantic_model_path, notes, monkeypatch
):
    """napari reads a whole plane to show it, on the GUI thread: a lazy layer of a huge plane would compute every
    block there. Above LARGE_PLANE a semantic model's labels are computed in the worker, as an instance model's."""
    from napari_seamless_unet.plugin import _predict_dask

    monkeypatch.setattr(_predict_dask, "LARGE_PLANE", stack.shape[1] * stack.shape[2] - 1)
    viewer = make_napari_viewer()
    viewer.add_image(da.from_array(stack, chunks=(1, 64, 72)), name="lazy")
    widget = segment_dock(viewer, "lazy", semantic_model_path)
    widget.lazy.value = True
    _run(qtbot, widget)
    assert not notes["error"], notes["error"]
    layer = viewer.layers["lazy — U-Net classes (semantic.unet.pt)"]
    assert not isinstance(layer.data, da.Array)  # computed in the background, not as napari shows it
    np.testing.assert_array_equal(np.asarray(layer.data), segment(load_model(semantic_model_path), stack, device="cpu"))


def test_an_instance_model_is_computed_in_a_worker(qtbot, make_napari_viewer, stack, model_path, notes, same_objects):
    viewer = make_napari_viewer()
    reads: list = []
    viewer.add_image(recording_dask(stack, reads), name="lazy", scale=(2.0, 1.0, 1.0), contrast_limits=(0, 1))
    widget = segment_dock(viewer, "lazy", model_path)
    widget.lazy.value = True
    events = []
    forward = widget._on_yielded

    def record(event):
        events.append(event)
        forward(event)

    widget._on_yielded = record
    qtbot.wait(50)  # napari draws the layer first (that reads it, on the GUI thread: not ours)
    reads.clear()
    worker = widget.start()
    assert worker is not None, widget.status.value
    on_gui_thread = [t for t in reads if t is threading.main_thread()]
    assert widget.busy and widget._progress is not None  # returned at once; napari's progress bar shown
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    assert not on_gui_thread, f"{len(on_gui_thread)} read(s) of layer data on the GUI thread"
    assert any(t is not threading.main_thread() for t in reads)  # read, in the worker's threads
    assert not notes["error"], notes["error"]
    layer = viewer.layers["lazy — U-Net instances (tiny.unet.pt)"]
    assert isinstance(layer.data, np.ndarray) and layer.data.dtype == np.int32
    np.testing.assert_allclose(layer.scale, (2.0, 1.0, 1.0))
    expected = segment(load_model(model_path), stack, device="cpu")
    assert same_objects(layer.data, expected)  # the objects of core segment (block-wise ids may differ)
    blocks = [e for e in events if e.stage == "blocks"]
    assert blocks and blocks[-1].done == blocks[-1].total and blocks[-1].info["blocks"] == 3
    assert widget.progress_bar.value() == 1000 and widget._progress is None  # closed when done
    assert widget.status.value.startswith(f"Segmented 'lazy': {len(np.unique(expected)) - 1} objects")
    assert widget.kept is None


def test_cancel_keeps_the_finished_blocks(qtbot, make_napari_viewer, foreground_model_path, notes):
    viewer = make_napari_viewer()
    movie = np.random.default_rng(1).random((4, 48, 48)).astype(np.float32)
    viewer.add_image(da.from_array(movie, chunks=(1, 48, 48)), name="movie")
    widget = segment_dock(viewer, "movie", foreground_model_path)
    widget.lazy.value = True
    make_job, computed = widget.make_job, []

    def make_job_cancelled_in_block_2():
        job = make_job()
        job.num_workers = 1  # one block after the other
        lazy_labels = job.lazy_labels

        def block(values):
            computed.append(1)
            if len(computed) == 2:
                job.cancel()  # as the Cancel button would, while the second block is computed
            return values

        job.lazy_labels = lambda: lazy_labels().map_blocks(block, dtype=np.int32)
        return job

    widget.make_job = make_job_cancelled_in_block_2
    _run(qtbot, widget)
    assert not notes["error"], notes["error"]
    labels = viewer.layers["movie — U-Net instances (foreground.unet.pt)"].data
    done = [t for t in range(4) if labels[t].any()]
    assert len(done) in (1, 2) and len(computed) == 2  # no block started after the cancel
    for t in done:
        assert np.all(labels[t] > 0)  # a finished block whole (every pixel is foreground for this model)
    assert widget.status.value.startswith(f"Cancelled: {len(done)} of 4 blocks")
    assert any(m.startswith("Cancelled") for m in notes["info"])


def test_a_result_larger_than_memory_goes_to_a_zarr_store(
    qtbot, make_napari_viewer, stack, model_path, notes, same_objects, monkeypatch
):
    monkeypatch.setattr(_dask_job, "host_memory", lambda: 0)
    viewer = make_napari_viewer()
    viewer.add_image(zarr.array(stack, chunks=(1, 64, 72)), name="z")
    widget = segment_dock(viewer, "z", model_path)
    widget.lazy.value = True
    _run(qtbot, widget)
    assert not notes["error"], notes["error"]
    layer = viewer.layers["z — U-Net instances (tiny.unet.pt)"]
    assert isinstance(layer.data, zarr.Array) and "temporary zarr store" in widget.status.value
    assert same_objects(layer.data[:], segment(load_model(model_path), stack, device="cpu"))
