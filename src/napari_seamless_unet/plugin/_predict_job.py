"""The Segment dock's job: an image segmented plane by plane on a worker thread, finished planes kept on cancel;
an instance model's foreground probabilities kept so that the labels can be made again without the network."""

from __future__ import annotations

import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..core import axes as ax
from ..core.errors import UNetInputError
from ..core.foreground import instances_from_foreground
from ..core.instances import object_classes
from ..core.predict import allocate_output, iter_predict, iter_segment
from ..core.progress import Progress
from ..core.rescale import labelling_spacing
from ._relabel import largest_id_outside


@dataclass
class PredictionResult:
    """Labels (and probabilities) of the planes finished; ``cancelled`` when the run stopped early.

    For an instance model, ``foreground`` holds the float32 foreground probabilities of what was segmented (a
    view of ``probabilities`` when those were asked for), so that the labels can be made again with other
    ``options`` without the network (:class:`._relabel.RelabelJob`); ``offset`` is the largest id of the stack outside
    the plane segmented, after which the plane's ids start.
    """

    labels: np.ndarray
    probabilities: np.ndarray | None
    planes_done: list = field(default_factory=list)
    planes_total: int = 0
    cancelled: bool = False
    max_label: int = 0  # the largest label (the number of objects of an instance model), found on the worker
    foreground: np.ndarray | None = None
    options: dict = field(default_factory=dict)
    offset: int = 0
    classes: int = 2  # the model's classes: ``foreground`` has a class axis (interior, border) when there are 3
    ndim: int = 2  # the model's: 3 labels whole volumes
    spacing: tuple | None = None  # a 3D model's voxel size: physical distances in the post-processing

    @property
    def objects(self) -> int:
        """The number of objects of an instance model's labels (ids ``offset + 1 .. max_label``)."""
        return max(0, self.max_label - self.offset)


class _ForegroundOut:
    """The ``out`` of ``iter_predict`` for one plane (``out_index`` of ``foreground``) that keeps only the classes
    after the background: class 1 (``foreground`` without a class axis), or classes 1.. (with one)."""

    def __init__(self, foreground: np.ndarray, out_index: tuple, num_classes: int, ndim: int = 2):
        self.plane = foreground[(..., *out_index)]  # a view (a volume's, for a 3D network)
        self.shape, self.dtype = (num_classes, *self.plane.shape[-ndim:]), foreground.dtype
        self.classes = object_classes(num_classes)

    def __setitem__(self, index: tuple, values: np.ndarray) -> None:
        self.plane[(..., *index[1:])] = values[self.classes]


class PredictionJob:
    """Segment an image plane by plane, so that a cancelled run keeps every finished plane.

    A 3D network (``model.ndim == 3``) segments volume by volume instead (iterating only over T): the image needs a
    Z axis, and ``plane`` is ignored (a volume is the smallest unit).

    Parameters
    ----------
    model : UNet
        The network.
    image : array-like
        numpy, dask or zarr array with axes ``axes``; read lazily.
    planes : list of dict, optional
        Planes to segment (``{axis: index}``); default all. Outputs always have the whole image's shape.
    plane : dict, optional
        Segment only this plane (``{axis: index}`` of every axis but C, Y, X) of ``image``; the outputs have the
        plane's shape. The plane is taken from ``image`` in :meth:`run`, on the worker thread (slicing a zarr
        array reads it).
    options : dict, optional
        Post-processing of an instance model: keywords of
        :func:`~napari_seamless_unet.core.instances.instances_from_probabilities` (``threshold``, ``min_size``,
        ``fill_holes``, ``method``, ``restore_borders``, ``link_planes``); ignored by semantic models. The
        foreground probability of every plane is kept, and the labels are made from it once all planes are
        done (or the run is cancelled), with ids unique across the stack as ``segment`` gives them.
    stack_labels : array-like, optional
        With ``plane``: the label stack the plane will be written into (read on the worker thread); the plane's
        ids start after the largest id of its other planes.
    probabilities : bool
        Also return the class probabilities (``(num_classes, *spatial)`` float32).
    tta : bool
        Test-time augmentation (``predict``'s ``tta``): the mean of the 8 flips and quarter turns of every tile.
    voxel_size, rescale
        ``predict``'s: the image's pixel (voxel) size, resampled to the model's where they differ (``rescale``).
    """

    def __init__(
        self,
        model,
        image,
        axes: str,
        *,
        planes: Sequence[dict] | None = None,
        plane: dict | None = None,
        tile_shape: Sequence[int] | None = None,
        device: str | None = None,
        options: dict | None = None,
        stack_labels=None,
        probabilities: bool = False,
        name: str = "image",
        tta: bool = False,
        voxel_size=None,
        rescale: bool = True,
    ):
        self.model = model
        self.tta = bool(tta)
        self.voxel_size, self.rescale = voxel_size, bool(rescale)
        self.image = image
        full_axes = ax.resolve_axes(image.shape, axes, model.in_channels, name)
        self.unit = ax.unit_axes(model.ndim)  # what one network input covers: a plane (YX) or a volume (ZYX)
        if model.ndim == 3:
            if "Z" not in full_axes:
                raise UNetInputError(
                    f"the model is a 3D network, but {name} (shape {tuple(image.shape)}, axes {full_axes!r}) has no "
                    f"Z axis: choose a volume (a stack with Z), or a 2D model for planes."
                )
            plane = None
        self.plane, self.plane_index, self.stack_axes = plane, None, ax.spatial_axes(full_axes)
        if plane is not None:
            self.plane_index = ax.image_index(full_axes, plane, slice(None), slice(None))
            self.axes = "".join(a for a in full_axes if a in "CYX")
            shape = tuple(n for n, a in zip(image.shape, full_axes) if a in "CYX")
        else:
            self.axes, shape = full_axes, tuple(image.shape)
        self.planes = list(planes) if planes is not None else list(ax.iter_planes(shape, self.axes, self.unit))
        self.tile_shape = tile_shape
        self.device = device
        self.options = dict(options or {})
        self.stack_labels = stack_labels
        self.probabilities = bool(probabilities)
        self.name = name
        self._cancel = threading.Event()

    def cancel(self) -> None:
        """Stop after the current batch of tiles; finished planes are kept."""
        self._cancel.set()

    def run(self) -> Generator[Progress, None, PredictionResult]:
        # A local reference: the widget may drop ``self.model`` (its registry was emptied) while this runs.
        model = self.model
        instances = model.task == "instances"
        image = self.image if self.plane_index is None else self.image[self.plane_index]
        labels = allocate_output(model, image, axes=self.axes, output="labels")
        probs = allocate_output(model, image, axes=self.axes, output="probabilities") if self.probabilities else None
        foreground = None
        if instances:  # the classes after the background: the foreground, or a three-class model's interior, border
            if probs is not None:
                foreground = probs[object_classes(model.num_classes)]
            else:
                extra = () if model.num_classes == 2 else (model.num_classes - 1,)
                foreground = np.zeros((*extra, *labels.shape), np.float32)
        kept = "".join(a for a in self.axes if a == "C" or a in self.unit)
        result = PredictionResult(
            labels,
            probs,
            [],
            len(self.planes),
            foreground=foreground,
            options=self.options,
            classes=model.num_classes,
            ndim=model.ndim,
            spacing=labelling_spacing(model, self.voxel_size, self.rescale) if model.ndim == 3 else None,
        )
        n = len(self.planes)
        for i, plane in enumerate(self.planes):
            image_plane = image[ax.image_index(self.axes, plane, slice(None), slice(None))]
            out_index = ax.output_index(self.axes, plane, slice(None), slice(None))
            name = f"{self.name} ({'volume' if model.ndim == 3 else 'plane'} {plane})" if plane else self.name
            kwargs = {
                "axes": kept,
                "tile_shape": self.tile_shape,
                "device": self.device,
                "name": name,
                "tta": self.tta,
                "voxel_size": self.voxel_size,
                "rescale": self.rescale,
            }
            if probs is not None:
                gen = iter_predict(model, image_plane, out=probs[(slice(None), *out_index)], **kwargs)
            elif instances:
                gen = iter_predict(
                    model,
                    image_plane,
                    out=_ForegroundOut(foreground, out_index, model.num_classes, model.ndim),
                    **kwargs,
                )
            else:
                gen = iter_segment(model, image_plane, out=labels[out_index], **kwargs)
            for event in gen:
                fraction = event.done / max(1, event.total) if event.stage == "predict" else 1.0
                info = {"plane": i, "planes": n, "unit": "volume" if model.ndim == 3 else "plane"}
                yield Progress(int(1000 * (i + fraction) / n), 1000, "predict", info)
                if self._cancel.is_set():
                    gen.close()
                    # The unfinished plane holds some tiles only: clear it.
                    labels[out_index] = 0
                    if probs is not None:
                        probs[(slice(None), *out_index)] = 0
                    if foreground is not None:
                        foreground[(..., *out_index)] = 0
                    result.cancelled = True
                    break
            if result.cancelled:
                break
            if probs is not None and not instances:
                labels[out_index] = probs[(slice(None), *out_index)].argmax(axis=0)
            result.planes_done.append(plane)
        if instances:
            yield Progress(1000, 1000, "label", {"plane": n - 1, "planes": n})
            if self.plane is not None and self.stack_labels is not None:
                result.offset = largest_id_outside(self.stack_labels, self.stack_axes, self.plane)
            spatial = ax.spatial_axes(self.axes)
            instances_from_foreground(
                foreground,
                axes=spatial,
                offset=result.offset,
                out=labels,
                num_classes=model.num_classes,
                ndim=model.ndim,
                spacing=result.spacing,
                **self.options,
            )
        result.max_label = int(labels.max()) if labels.size else 0
        return result
