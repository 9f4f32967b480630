"""The Segment dock's lazy (dask) job: the graph of the core's ``segment_dask`` built on a worker thread,
and (``compute=True``, an instance model's) computed there block by block into a numpy array (when it fits in a
quarter of the RAM) or a temporary zarr store, with progress counted in dask tasks and a cancel that stops at the
next task, keeping the blocks finished.

Qt-free: :class:`DaskSegmentJob` is a generator job like :class:`~._predict_job.PredictionJob` (it yields
:class:`~napari_seamless_unet.core.progress.Progress` and returns a :class:`DaskSegmentResult`).
"""

from __future__ import annotations

import atexit
import math
import shutil
import tempfile
import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass

import numpy as np

from ..core.progress import Progress

#: The keywords of ``segment_dask`` the Segment dock's instance options give (it links no planes).
SEGMENT_OPTIONS = ("threshold", "min_size", "fill_holes", "method", "restore_borders")
#: ``Progress.stage`` of the events of this job: preparing the graph, then tasks done of all.
STAGES = ("graph", "blocks")
REPORT_EVERY = 0.1  # seconds between two progress events


def segment_dask(*args, **kwargs):
    """The core's ``segment_dask`` (the package's public name), imported when first used (dask and torch)."""
    import napari_seamless_unet

    return napari_seamless_unet.segment_dask(*args, **kwargs)


def predict_dask(*args, **kwargs):
    """The core's ``predict_dask``, imported when first used."""
    import napari_seamless_unet

    return napari_seamless_unet.predict_dask(*args, **kwargs)


def host_memory() -> int:
    """The machine's RAM in bytes."""
    import psutil

    return int(psutil.virtual_memory().total)


@dataclass
class DaskSegmentResult:
    """The labels of the blocks finished (the others 0); ``cancelled`` when the run stopped early.

    ``labels`` is a numpy array, a zarr array in the temporary folder ``store`` (deleted when Python exits), or,
    when ``lazy``, the dask array itself (nothing computed). ``probabilities``: the lazy class probabilities
    (``predict_dask``), when asked for.
    """

    labels: object
    blocks_done: int
    blocks_total: int
    cancelled: bool = False
    objects: int = 0  # the distinct ids other than 0 written (an instance model's ids need not be consecutive)
    store: str | None = None
    lazy: bool = False
    probabilities: object = None


class _Stopped(Exception):
    """Raised in the task callback once the job is cancelled: dask stops scheduling."""


class _BlockWriter:
    """The ``store`` target: writes whole blocks into ``out`` one at a time, counts them and their ids, and takes
    no more once closed (tasks still running when a cancel stopped dask finish in its pool)."""

    def __init__(self, out):
        self.out, self.shape, self.dtype = out, out.shape, out.dtype
        self.blocks, self.closed = 0, False
        self._ids: list[np.ndarray] = []
        self._lock = threading.Lock()

    def __setitem__(self, index, values) -> None:
        values = np.asarray(values)
        with self._lock:
            if self.closed:
                return
            self.out[index] = values
            self.blocks += 1
            self._ids.append(np.unique(values))

    @property
    def objects(self) -> int:
        """The distinct ids other than 0 written: an object cut by block borders counts once."""
        ids = np.unique(np.concatenate(self._ids)) if self._ids else np.zeros(0)
        return int(np.count_nonzero(ids))

    def close(self) -> None:
        with self._lock:
            self.closed = True


def _task_counter(cancelled: threading.Event):
    """A dask ``Callback`` counting finished tasks (of all tasks of the graph), raising once ``cancelled``."""
    from dask.callbacks import Callback

    class TaskCounter(Callback):
        done = total = 0

        def _start_state(self, dsk, state):  # the tasks to run (the graph's data are not)
            self.total = sum(len(state[k]) for k in ("ready", "waiting", "running", "finished"))

        def _posttask(self, key, result, dsk, state, worker_id):
            self.done += 1
            if cancelled.is_set():
                raise _Stopped()

    return TaskCounter()


class DaskSegmentJob:
    """Segment an image through ``segment_dask`` and compute it block by block (``dask.array.store``).

    Parameters
    ----------
    model : UNet
        The network.
    image : array-like
        numpy, dask or zarr array with axes ``axes``; read only in :meth:`run` (on the worker thread).
    options : dict, optional
        An instance model's post-processing (``SEGMENT_OPTIONS``; others, e.g. ``link_planes``, are ignored).
    chunks : sequence of int, optional
        Output block size per Y, X (Z, Y, X for a 3D model); default ``segment_dask``'s.
    memory_limit : int, optional
        Bytes the labels may take in memory (default a quarter of the RAM); larger labels go to a temporary zarr
        store.
    num_workers : int, optional
        Threads of dask's scheduler (default dask's).
    compute : bool
        Compute the labels (default); else return the lazy labels, for napari to compute the blocks it shows (a
        semantic model's blocks are each computed on their own).
    probabilities : bool
        Also return the lazy class probabilities (never computed here).
    """

    def __init__(
        self,
        model,
        image,
        axes: str,
        *,
        tile_shape: Sequence[int] | None = None,
        device: str | None = None,
        options: dict | None = None,
        name: str = "image",
        tta: bool = False,
        chunks: Sequence[int] | None = None,
        memory_limit: int | None = None,
        num_workers: int | None = None,
        compute: bool = True,
        probabilities: bool = False,
    ):
        self.model, self.image, self.axes, self.name = model, image, axes, name
        self.tile_shape, self.device, self.tta, self.chunks = tile_shape, device, bool(tta), chunks
        self.options = {k: v for k, v in (options or {}).items() if k in SEGMENT_OPTIONS}
        self.memory_limit = memory_limit
        self.num_workers = num_workers
        self.compute, self.probabilities = bool(compute), bool(probabilities)
        self._cancel = threading.Event()

    def cancel(self) -> None:
        """Stop at the next dask task; the blocks finished are kept."""
        self._cancel.set()

    def _kwargs(self) -> dict:
        kwargs = {"axes": self.axes, "tile_shape": self.tile_shape, "device": self.device, "tta": self.tta}
        if self.chunks is not None:
            kwargs["chunks"] = tuple(self.chunks)
        return {**kwargs, "name": self.name}

    def lazy_labels(self):
        """The dask array of the labels (``segment_dask``): builds the graph, computes nothing."""
        options = self.options if self.model.task == "instances" else {}
        return segment_dask(self.model, self.image, **self._kwargs(), **options)

    def _allocate(self, lazy) -> tuple[object, str | None]:
        """A zero-filled output for ``lazy``: numpy when it fits in the memory limit, else a temporary zarr array
        chunked like ``lazy``'s blocks."""
        limit = self.memory_limit if self.memory_limit is not None else host_memory() // 4
        nbytes = math.prod(lazy.shape) * np.dtype(lazy.dtype).itemsize
        if nbytes <= limit:
            return np.zeros(lazy.shape, lazy.dtype), None
        import zarr

        folder = tempfile.mkdtemp(prefix="seamless-unet-labels-")
        atexit.register(shutil.rmtree, folder, True)
        path = f"{folder}/labels.zarr"
        out = zarr.open_array(path, mode="w", shape=lazy.shape, dtype=lazy.dtype, chunks=lazy.chunksize, fill_value=0)
        return out, path

    def run(self) -> Generator[Progress, None, DaskSegmentResult]:
        yield Progress(0, 1, "graph", {"blocks": 0, "blocks_total": 0})
        lazy = self.lazy_labels()
        probs = predict_dask(self.model, self.image, **self._kwargs()) if self.probabilities else None
        total = math.prod(lazy.numblocks)
        if not self.compute:
            return DaskSegmentResult(lazy, 0, total, lazy=True, probabilities=probs)
        out, store = self._allocate(lazy)
        writer = _BlockWriter(out)
        counter = _task_counter(self._cancel)
        failure: list[BaseException] = []

        def compute():
            import dask.array as da
            from dask.callbacks import normalize_callback

            try:  # callbacks given here, not registered: computations of other threads (the viewer's) never see it
                kwargs = {} if self.num_workers is None else {"num_workers": self.num_workers}
                da.store(
                    lazy, writer, lock=False, scheduler="threads", callbacks=[normalize_callback(counter)], **kwargs
                )
            except BaseException as err:  # handed to the job's thread
                failure.append(err)
            finally:
                writer.close()

        thread = threading.Thread(target=compute, name="seamless-unet dask store", daemon=True)
        thread.start()
        last = None
        try:
            while thread.is_alive():
                thread.join(REPORT_EVERY)  # at most 10 events a second, however many tasks the graph has
                now = (counter.done, counter.total, writer.blocks)
                if now != last and counter.total:
                    last = now
                    info = {"blocks": writer.blocks, "blocks_total": total}
                    yield Progress(counter.done, counter.total, "blocks", info)
        finally:  # also when the generator is closed (napari quits its worker): dask stops at its next task
            if thread.is_alive():
                self._cancel.set()
        thread.join()
        if failure and not isinstance(failure[0], _Stopped):
            raise failure[0]
        done = writer.blocks
        yield Progress(max(counter.done, 1), max(counter.total, 1), "blocks", {"blocks": done, "blocks_total": total})
        return DaskSegmentResult(out, done, total, done < total, writer.objects, store, probabilities=probs)
