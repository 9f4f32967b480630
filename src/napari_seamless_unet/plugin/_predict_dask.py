"""The Segment dock's lazy (dask) mode, for dask, zarr and multiscale layers too large to segment in memory.

:class:`LazySegmenting` (mixed into the dock) owns the *lazy (dask)* checkbox: enabled for a layer whose data is a
dask or zarr array (or a multiscale layer: its highest resolution), ticked by itself when a plane has more than
:data:`LARGE_PLANE` pixels. A lazy run is a :class:`~._dask_job.DaskSegmentJob` in a thread worker: a semantic
model's labels come back as a lazy labels layer (napari computes the blocks it shows as the user browses); an
instance model's are computed block by block (its objects are merged across blocks), with progress in the dock and
in napari's activity panel, and a cancel that keeps the blocks finished.
"""

from __future__ import annotations

from magicgui.widgets import CheckBox

from ..core.errors import UNetInputError
from . import _layers
from ._common import notify_info
from ._dask_job import DaskSegmentJob, DaskSegmentResult

#: Pixels of a plane above which a dask or zarr layer is segmented lazily by default (4096 x 4096).
LARGE_PLANE = 4096 * 4096


def lazy_capable(layer) -> bool:
    """Whether ``layer`` can be segmented lazily: multiscale, or its data a dask or zarr array (not read)."""
    if layer is None:
        return False
    if getattr(layer, "multiscale", False):
        return True
    return type(_layers.layer_data(layer)).__module__.split(".")[0] in ("dask", "zarr")


def plane_pixels(layer) -> int:
    """Pixels of one Y, X plane of the layer's data (level 0), from its shape only (0 if its axes are unknown)."""
    try:
        axes = _layers.image_axes(layer)
    except UNetInputError:
        return 0
    shape = _layers.layer_data(layer).shape
    return int(shape[axes.index("Y")]) * int(shape[axes.index("X")])


class LazySegmenting:
    """Mixin of the Segment dock: the *lazy (dask)* option and its runs (see the module's docstring)."""

    lazy: CheckBox
    _progress = None  # napari's progress bar of a lazy run that computes

    def _make_lazy_option(self) -> CheckBox:
        self.lazy = CheckBox(
            text="lazy (dask)",
            value=False,
            enabled=False,
            tooltip="dask, zarr or multiscale images: segment block by block (on by itself above 4096 x 4096 pixels "
            "a plane); a semantic model's labels are computed as napari shows them, an instance model's in the "
            "background (a temporary zarr store when larger than a quarter of the memory)",
        )
        self.image.changed.connect(self._on_image_for_lazy)
        return self.lazy

    def _on_image_for_lazy(self, *_) -> None:
        layer = self.image.value
        self.lazy.enabled = lazy_capable(layer)
        self.lazy.value = self.lazy.enabled and plane_pixels(layer) > LARGE_PLANE

    @property
    def lazy_mode(self) -> bool:
        """Whether Segment runs lazily (the option ticked, for a layer that allows it)."""
        return bool(self.lazy.value) and bool(self.lazy.enabled)

    def make_dask_job(self, layer, model, data, axes, options, tile_shape, device) -> DaskSegmentJob:
        """The lazy job: computed in the worker for an instance model (its objects span blocks) and for planes of
        more than :data:`LARGE_PLANE` pixels (napari reads a whole plane to show it, on the GUI thread: it would
        compute every block there); otherwise the graph only, each plane computed as napari shows it."""
        return DaskSegmentJob(
            model,
            data,
            axes,
            tile_shape=tile_shape,
            device=device,
            options=options,
            name=layer.name,
            tta=bool(self.tta.value),
            compute=model.task == "instances" or plane_pixels(layer) > LARGE_PLANE,
            probabilities=bool(self.probabilities.value),
        )

    def _lazy_started(self, job: DaskSegmentJob, layer) -> None:
        if not job.compute:
            self.status.value = f"Preparing lazy labels of {layer.name!r}…"
            return
        from napari.utils import progress

        self._progress = progress(total=0, desc=f"Segmenting {layer.name}")
        self.status.value = f"Segmenting {layer.name!r} block by block…"

    def _on_lazy_yielded(self, event) -> None:
        if event.stage != "blocks":  # building the graph
            self.progress_bar.setRange(0, 0)
            return
        self.progress_bar.setRange(0, int(event.total))
        self.progress_bar.setValue(int(event.done))
        info = event.info or {}
        self.status.value = f"{info.get('blocks', 0)} of {info.get('blocks_total', '?')} blocks segmented"
        bar = self._progress
        if bar is not None:
            if bar.total != event.total:
                bar.total = event.total
            bar.update(int(event.done) - bar.n)

    def _on_lazy_returned(self, result: DaskSegmentResult) -> None:
        layer, axes, _, model, model_name = self._target
        self._target, self.last_model = None, model
        name, transform, mark = _layers.labels_output(layer, axes, model, model_name)
        self.last_layer = self.viewer.add_labels(result.labels, name=name, **transform)
        _layers.mark_output(self.last_layer, "prediction", **mark, **({"lazy": True} if result.lazy else {}))
        self.last_labels, self.last_probabilities = result.labels, result.probabilities
        if result.probabilities is not None:
            self._add_probabilities(layer, model, model_name, result.probabilities, transform)
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(1000 if not result.cancelled else 0)
        where = f" (a temporary zarr store: {result.store})" if result.store else ""
        if result.lazy:
            message = f"Added {name!r}: lazy labels of {result.blocks_total} blocks, segmented as napari shows them."
        elif result.cancelled:
            message = (
                f"Cancelled: {result.blocks_done} of {result.blocks_total} blocks segmented and kept in {name!r}"
                f"{where}; the others are 0."
            )
        else:
            message = f"Segmented {layer.name!r}: {result.objects} objects in {name!r}{where}."
        self.status.value = message
        notify_info(message)
        self.drop_kept()  # nothing to label again from: change the options and Segment again
        self._enable_options()
        if not (result.lazy or result.cancelled):
            self.measure_layer(self.last_layer, layer, axes, model)  # its features, in a worker

    def _on_finished(self) -> None:
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        super()._on_finished()
