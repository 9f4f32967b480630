"""The widgets never read layer data on the GUI thread: a big dask or zarr image must not freeze the viewer."""

from __future__ import annotations

import threading

import dask
import dask.array as da
import numpy as np
import pytest

from napari_seamless_unet.plugin._predict_widget import PredictWidget
from napari_seamless_unet.plugin._train_widget import PRESETS, TrainWidget

TIMEOUT = 120_000


@pytest.fixture
def reads():
    """Threads that read layer data; dask computes in the calling thread, so a read is seen where it happens."""
    with dask.config.set(scheduler="synchronous"):
        yield []


def recording_dask(array: np.ndarray, reads: list) -> da.Array:
    """A dask array of ``array`` (one chunk a plane) that notes the thread computing each chunk."""

    def read(block):
        reads.append(threading.current_thread())
        return block

    chunks = (1,) * (array.ndim - 2) + array.shape[-2:]
    return da.from_array(array, chunks=chunks).map_blocks(read, dtype=array.dtype)


class EagerArray:
    """An array that reads when sliced, like a zarr array, noting the thread that reads."""

    def __init__(self, data: np.ndarray, reads: list):
        self._data, self._reads = data, reads
        self.shape, self.dtype, self.ndim, self.size = data.shape, data.dtype, data.ndim, data.size

    def __len__(self):
        return len(self._data)

    def __getitem__(self, index):
        self._reads.append(threading.current_thread())
        return np.array(self._data[index])

    def __array__(self, dtype=None, copy=None):
        self._reads.append(threading.current_thread())
        return np.array(self._data, dtype=dtype)


def _start_and_check(qtbot, widget, reads):
    """Call the widget's handler; no read on the GUI thread while it runs; then wait for the worker."""
    qtbot.wait(50)  # napari draws the layers first (that reads them, on the GUI thread: not ours)
    reads.clear()
    worker = widget.start()
    on_gui_thread = [t for t in reads if t is threading.main_thread()]
    assert worker is not None, widget.status.value
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    assert not on_gui_thread, f"{len(on_gui_thread)} read(s) of layer data on the GUI thread"
    return worker


@pytest.fixture
def stack(discs):
    image, labels = discs
    images = np.stack([image, image[::-1], image[:, ::-1]])
    annotation = np.zeros(images.shape, np.int32)
    annotation[0], annotation[2] = labels, labels[:, ::-1]
    return images, annotation


def test_train_reads_dask_layers_in_the_worker(qtbot, make_napari_viewer, stack, tmp_path, notes, reads):
    viewer = make_napari_viewer()
    images, annotation = stack
    viewer.add_image(recording_dask(images, reads), name="lazy", contrast_limits=(0.0, 1.0))
    viewer.add_labels(recording_dask(annotation, reads), name="lazy labels")
    widget = TrainWidget(viewer)
    widget.preset.value = PRESETS["tiny (8 channels, depth 2)"]
    widget.steps.value = 2
    widget.preview_every.value = 1  # the preview plane is read in the worker too
    widget.device.value = "cpu"
    widget.save_path.value = str(tmp_path / "lazy.unet.pt")
    assert widget.pairs == [(viewer.layers["lazy"], viewer.layers["lazy labels"])]
    _start_and_check(qtbot, widget, reads)
    assert not notes["error"], notes["error"]
    assert widget.last_model is not None and widget.job.summary == "2 annotated plane(s) of 3"
    assert any(t is not threading.main_thread() for t in reads)  # read, in the worker


@pytest.mark.parametrize("scope", ["all", "plane"])
@pytest.mark.parametrize("kind", ["dask", "zarr-like"])
def test_segment_reads_the_image_in_the_worker(
    qtbot, make_napari_viewer, stack, foreground_model_path, notes, reads, scope, kind
):
    viewer = make_napari_viewer()
    images = stack[0]
    data = recording_dask(images, reads) if kind == "dask" else EagerArray(images, reads)
    viewer.add_image(data, name="lazy", contrast_limits=(0.0, 1.0))
    viewer.dims.set_point(0, 1)
    widget = PredictWidget(viewer)
    widget.image.value = viewer.layers["lazy"]
    widget.device.value = "cpu"
    widget.scope.value = scope
    widget.model_file.value = str(foreground_model_path)
    _start_and_check(qtbot, widget, reads)
    assert not notes["error"], notes["error"]
    assert widget.last_labels.shape == images.shape
    done = [z for z in range(3) if widget.last_labels[z].any()]
    assert done == ([0, 1, 2] if scope == "all" else [1])
    assert any(t is not threading.main_thread() for t in reads)


def test_labels_without_annotation_are_found_by_the_worker(qtbot, viewer, tmp_path, notes, unchanged):
    viewer.add_labels(np.zeros((80, 96), np.int32), name="empty")
    check = unchanged(viewer)
    widget = TrainWidget(viewer)
    widget.set_pairs([(viewer.layers["cells"], viewer.layers["empty"])])
    widget.preview_every.value = 0
    widget.save_path.value = str(tmp_path / "never.unet.pt")
    assert widget.start() is not None
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    assert len(notes["error"]) == 1 and "have no annotation" in notes["error"][0]
    assert widget.status.value == notes["error"][0]
    assert widget.last_model is None and len(widget.registry) == 0
    check()
