"""Instance labels of a whole image or stack from an instance model's class probabilities.

:func:`instances_from_probabilities` turns :func:`~napari_seamless_unet.predict`'s output for an instance
model into labels, so that the threshold, the sizes and the method can be tuned on a saved probability map
without running the network again; :func:`~napari_seamless_unet.segment` does the same plane by plane while
it predicts (through :class:`ForegroundSink`), with the same result. Each plane is labelled by
:func:`~napari_seamless_unet.core.postprocess.label_plane`; ids are unique across a stack and, with
``link_planes``, an object keeps its id from plane to plane. Numpy and scipy only (no torch).

An instance model has two classes (background, foreground: the paper's) or three (background, interior,
border: ``TrainConfig(instance_classes=3)``); :data:`INSTANCE_CLASS_NAMES` names them. Everything here takes
both; a file's class count says which it is, so two-class model files work as they always did.
"""

from __future__ import annotations

import warnings

import numpy as np

from . import axes as ax
from .errors import UNetInputError
from .linking import match_objects
from .postprocess import (
    BLOCKWISE_PIXELS,
    DEFAULT_THRESHOLD,
    METHODS,
    _PlaneView,
    label_foreground_blockwise,
    label_plane,
)

#: side of the blocks in which planes larger than BLOCKWISE_PIXELS are labelled
BLOCK = 4096
#: the classes of an instance model, by their number: the paper's two, or three with a border class
INSTANCE_CLASS_NAMES = {2: ("background", "foreground"), 3: ("background", "interior", "border")}


def check_instance_classes(num_classes: int) -> None:
    """Refuse a class count that no instance model has (2: background/foreground; 3: background/interior/border)."""
    if num_classes not in INSTANCE_CLASS_NAMES:
        raise UNetInputError(
            f"an instance model has 2 classes (background, foreground) or 3 (background, interior, border), "
            f"not {num_classes}."
        )


def object_classes(num_classes: int) -> int | slice:
    """The index, on the class axis, of what labelling reads: the foreground (class 1) of a two-class model, the
    interior and border (classes 1 and 2) of a three-class one."""
    return 1 if num_classes == 2 else slice(1, None)


def holds_instance_ids(dtype) -> bool:
    """Whether an array of ``dtype`` can take instance ids: the number of objects is unknown before labelling,
    so only an integer type of 32 bits or more is safe."""
    dtype = np.dtype(dtype)
    return dtype.kind in "iu" and dtype.itemsize >= 4


#: what :func:`~napari_seamless_unet.segment` does with a 3D instance model unless told otherwise. Objects that
#: touch across a surface in 3D stay joined wherever one voxel of that surface is foreground, and a short CPU
#: training predicts their outlines a voxel too small, so the objects are grown from their confident cores
#: (``method="seeds"``: probability > 0.9, ``core.seeded``) over the foreground above 0.3, and fragments below 30
#: voxels go. On two tuning volumes of touching anisotropic nuclei (seeds 200 and 201, not the benchmark's test
#: volume) a default 300 s CPU training scored AP@0.5 0.930 and 0.950 this way, against 0.668 and 0.739 with the
#: previous default (a watershed of the foreground above 0.5); benchmarks/README.md, "3D".
DEFAULTS_3D = {"threshold": 0.3, "method": "seeds", "min_size": 30}


def default_options(ndim: int) -> dict:
    """The default ``threshold``, ``method`` and ``min_size`` of a model with ``ndim`` spatial dimensions."""
    if int(ndim) == 3:
        return dict(DEFAULTS_3D)
    return {"threshold": DEFAULT_THRESHOLD, "method": "components", "min_size": 0}


def check_instance_options(threshold: float, min_size: int, method: str) -> None:
    """Refuse a threshold outside [0, 1), a negative ``min_size`` or an unknown method, before any work."""
    if not 0 <= threshold < 1:
        raise UNetInputError(f"threshold must be at least 0 and below 1 (a probability), got {threshold}")
    if int(min_size) != min_size or min_size < 0:
        raise UNetInputError(f"min_size must be a whole number of pixels >= 0, got {min_size}")
    if method not in METHODS:
        raise UNetInputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")


class StackLabeller:
    """Writes the instance labels of a stack into ``out`` plane by plane, in any order of arrival.

    Ids are unique across the stack: each plane's objects get the ids after the largest id given so far. With
    ``link_planes``, an object of a plane takes the id of the object of the previous plane it matches
    (:func:`~napari_seamless_unet.core.linking.match_objects`); only planes next to each other along the last
    stack axis (Z of TZYX, the only one of ZYX or TYX) are linked.

    Planes larger than :data:`BLOCKWISE_PIXELS` are labelled block by block in ``out`` itself, in bounded
    memory: threshold, ``min_size`` and unique ids only. There, ``method="watershed"`` and ``link_planes``
    are refused and ``fill_holes`` and ``restore_borders`` are skipped with a warning (a three-class model's
    objects are then their interiors, without the border).

    ``num_classes`` is the model's: 2 (:meth:`add` takes foreground probabilities) or 3 (interior and border).
    ``ndim=3`` (a 3D model): the unit labelled at once is a whole ZYX volume, objects connect across z, and
    "planes" are the volumes of a time-lapse (linked along T with ``link_planes``), and ``spacing`` (the
    model's voxel size) makes the distances of the post-processing physical (``postprocess.label_plane``).
    Volumes are labelled in memory, whatever their size.
    """

    def __init__(
        self,
        out,
        axes: str,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        min_size: int = 0,
        fill_holes: bool = True,
        method: str = "components",
        restore_borders: bool = True,
        link_planes: bool = False,
        num_classes: int = 2,
        ndim: int = 2,
        spacing=None,
    ):
        check_instance_options(threshold, min_size, method)
        self.ndim, self.unit = int(ndim), ax.unit_axes(ndim)
        self.spacing = tuple(spacing) if spacing is not None and ndim == 3 else None
        check_instance_classes(num_classes)
        self.num_classes = int(num_classes)
        self.out, self.axes = out, axes
        self.threshold, self.link_planes = float(threshold), bool(link_planes)
        self.options = {
            "threshold": self.threshold,
            "min_size": int(min_size),
            "fill_holes": bool(fill_holes),
            "method": method,
            "restore_borders": bool(restore_borders),
        }
        self.y_axis, self.x_axis = axes.index("Y"), axes.index("X")
        self.unit_positions = [axes.index(a) for a in self.unit]
        self.plane_shape = tuple(int(out.shape[i]) for i in self.unit_positions)  # (Y, X), or (Z, Y, X)
        self.blockwise = self.ndim == 2 and self.plane_shape[0] * self.plane_shape[1] > BLOCKWISE_PIXELS
        self.count = 0  # the largest id given so far
        self._previous: tuple[dict, np.ndarray] | None = None
        if self.blockwise:
            size = "x".join(map(str, self.plane_shape))
            if method != "components" or link_planes:
                what = f"method={method!r}" if method != "components" else "link_planes"
                raise UNetInputError(
                    f"planes of {size} pixels are labelled block by block, which cannot do {what}; use "
                    f"method='components' and link_planes=False, or crop the image into smaller planes."
                )
            skipped = [name for name in ("fill_holes", "restore_borders") if self.options[name]]
            if skipped:
                interiors = "; objects are their interiors" if self.num_classes == 3 and restore_borders else ""
                warnings.warn(
                    f"planes of {size} pixels are labelled block by block: {' and '.join(skipped)} skipped "
                    f"(only threshold and min_size apply there{interiors}).",
                    stacklevel=3,
                )

    def _index(self, plane: dict, y=slice(None), x=slice(None)) -> tuple:
        return ax.image_index(self.axes, plane, y, x)

    def add(self, plane: dict, probability: np.ndarray) -> None:
        """Label one in-memory plane and write it to ``out``: ``probability`` is the foreground probability
        ``(H, W)`` of a two-class model, or the interior and border probabilities ``(2, H, W)`` of a three-class
        one (:func:`~napari_seamless_unet.core.postprocess.label_plane`)."""
        labels = label_plane(probability, **self.options, ndim=self.ndim, spacing=self.spacing)
        n = int(labels.max(initial=0))
        lut = np.zeros(n + 1, dtype=np.int64)
        lut[1:] = np.arange(self.count + 1, self.count + n + 1)
        if self.link_planes and self._follows_previous(plane):
            matched_p, matched_c = match_objects(self._previous[1], labels)
            fresh = np.ones(n + 1, dtype=bool)
            fresh[0] = False
            fresh[matched_c] = False
            lut[1:] = 0
            lut[matched_c] = matched_p
            lut[fresh] = np.arange(self.count + 1, self.count + int(fresh.sum()) + 1)
        labels = lut[labels].astype(np.int32)
        self.count = max(self.count, int(lut.max(initial=0)))
        self.out[self._index(plane)] = labels
        self._previous = (dict(plane), labels) if self.link_planes else None

    def _follows_previous(self, plane: dict) -> bool:
        if self._previous is None or not plane:
            return False
        last = list(plane)[-1]
        before = self._previous[0]
        return all(before[a] == plane[a] for a in plane if a != last) and before[last] + 1 == plane[last]

    def add_block(self, plane: dict, y: slice, x: slice, probability: np.ndarray) -> None:
        """Block-wise planes: write a block's foreground (``probability > threshold``) as class ids to ``out``;
        for a three-class model ``probability`` is the interior's."""
        self.out[self._index(plane, y, x)] = (np.asarray(probability) > self.threshold).astype(self.out.dtype)

    def finish_blockwise(self, plane: dict) -> None:
        """Block-wise planes: label the classes that :meth:`add_block` wrote, in place and block by block."""
        view = _PlaneView(self.out, self._index(plane, None, None), self.y_axis, self.x_axis)
        self.count += label_foreground_blockwise(
            view, min_size=self.options["min_size"], block=BLOCK, offset=self.count
        )


class ForegroundSink:
    """The ``out`` that :func:`~napari_seamless_unet.core.predict.iter_predict` writes probabilities to in
    :func:`~napari_seamless_unet.segment`: it keeps the foreground probability of the current plane only (the
    interior and border probabilities for a three-class model; for block-wise planes, not even that: each
    tile's classes go straight to the labels) and hands each plane to the :class:`StackLabeller` as soon as all
    its tiles are written, so memory holds one plane, not the stack.
    """

    def __init__(self, labeller: StackLabeller, num_classes: int):
        self.labeller = labeller
        self.shape = (num_classes, *labeller.out.shape)
        self.dtype = np.dtype(np.float32)
        self._objects = object_classes(labeller.num_classes)
        buffer_shape = labeller.plane_shape if labeller.num_classes == 2 else (2, *labeller.plane_shape)
        self._buffer = None if labeller.blockwise else np.zeros(buffer_shape, dtype=np.float32)
        self._written = 0

    def __setitem__(self, index: tuple, values: np.ndarray) -> None:
        spatial = index[1:]
        lab = self.labeller
        where = tuple(spatial[i] for i in lab.unit_positions)  # (Y, X) or (Z, Y, X) slices of the tile
        plane = {a: spatial[i] for i, a in enumerate(lab.axes) if a not in lab.unit}
        if all(s.start == 0 for s in where):  # the first tile of a plane, or of a retry after running out of memory
            self._written = 0
        if self._buffer is None:
            probability = np.asarray(values[1], dtype=np.float32)  # the foreground, or the interior
            lab.add_block(plane, *where, probability)
        else:
            probability = np.asarray(values[self._objects], dtype=np.float32)
            self._buffer[(Ellipsis, *where)] = probability
        self._written += int(np.prod(probability.shape[-lab.ndim :]))
        if self._written == int(np.prod(lab.plane_shape)):
            if self._buffer is None:
                lab.finish_blockwise(plane)
            else:
                lab.add(plane, self._buffer)
            self._written = 0


def probability_axes(shape, axes: str | None = None) -> str:
    """Axes of a probability map, with C the class axis: ``axes`` checked, or ``C`` + YX/ZYX/TZYX by default.

    Axes without C (the image's) get C in front, where :func:`~napari_seamless_unet.predict` puts it.
    """
    ndim = len(shape)
    if axes is None:
        if not 3 <= ndim <= 5:
            raise UNetInputError(
                f"probabilities of shape {tuple(shape)}: expected 3 to 5 dimensions, classes first (CYX ... CTZYX)."
            )
        axes = "C" + "TZYX"[5 - ndim :]
    axes = str(axes).upper().replace("S", "C")
    if "C" not in axes and len(axes) == ndim - 1:
        axes = "C" + axes
    valid = len(axes) == ndim == len(set(axes)) and set(axes) <= set("TZCYX") and set("CYX") <= set(axes)
    if not valid:
        raise UNetInputError(
            f"axes {axes!r} do not fit probabilities of shape {tuple(shape)}: give one letter per dimension among "
            f"T, Z, C, Y, X with C the classes, e.g. {'C' + 'TZYX'[5 - min(max(ndim, 3), 5) :]!r}."
        )
    classes = shape[axes.index("C")]
    if classes not in INSTANCE_CLASS_NAMES:
        raise UNetInputError(
            f"probabilities have {classes} classes on axis C, but instances need 2 (background, foreground) or 3 "
            f"(background, interior, border): the output of predict() for an instance model."
        )
    return axes


def instances_from_probabilities(
    probabilities,
    *,
    axes: str | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    min_size: int = 0,
    fill_holes: bool = True,
    method: str = "components",
    restore_borders: bool = True,
    link_planes: bool = False,
    out=None,
    ndim: int = 2,
    spacing=None,
) -> np.ndarray:
    """Instance labels from an instance model's class probabilities, plane by plane (volume by volume).

    Parameters
    ----------
    probabilities : array-like
        What :func:`~napari_seamless_unet.predict` returns for an instance model: float probabilities of
        shape ``(2, *spatial)`` (background, foreground), or ``(3, *spatial)`` (background, interior, border)
        for a three-class model; numpy, zarr or dask, read one plane at a time.
    axes : str, optional
        Its axes, C the classes (e.g. ``"CYX"``, ``"CZYX"``, ``"ZCYX"`` as an ImageJ TIFF stores them); axes
        without C are those of ``spatial``. Default: ``C`` followed by YX, ZYX or TZYX.
    threshold : float
        Foreground is ``probability > threshold`` (default 0.7, ``postprocess.DEFAULT_THRESHOLD``; 0.5 would be
        the class the network finds more likely). Three
        classes: the seeds are ``interior > threshold``, the foreground ``interior + border > threshold``.
    min_size : int
        Objects of fewer foreground pixels are removed (before borders and holes are given back; three
        classes: after the border is given back, so the whole object counts).
    fill_holes : bool
        Fill each object's holes.
    method : {"components", "watershed", "seeds"}
        Objects are the connected components (4-connectivity) of the foreground, or the regions of a seeded
        watershed on its distance transform, which also splits objects joined by a neck
        (:func:`~napari_seamless_unet.core.postprocess.watershed_instances`), or (``"seeds"``, the default of
        3D models) the confident cores (probability > 0.9) grown over the foreground to the nearest core, at
        most 6 pixels (:func:`~napari_seamless_unet.core.seeded.seeded_instances`). Three classes: the same, of
        the interior, giving the seeds.
    restore_borders : bool
        Give the background between touching objects (channels at most 2 pixels wide, the gap the training
        target cuts between them) back to the nearer object, so that objects come back whole
        (:func:`~napari_seamless_unet.core.postprocess.restore_borders`). Objects never grow elsewhere. Three
        classes: each seed takes back its border, the foreground pixels nearest to it (within 3 pixels;
        :func:`~napari_seamless_unet.core.postprocess.label_three_classes`); without it objects are their
        interiors.
    link_planes : bool
        Give an object one id through a stack: each object takes the id of the object of the previous plane
        (along the last stack axis: Z of TZYX) that it overlaps with IoU >= 0.3, one to one (see
        :func:`~napari_seamless_unet.core.linking.match_objects`); the others get new ids. Without it, every
        plane's objects get new ids.
    out : array-like, optional
        Where to write the labels (e.g. a zarr array): shape ``spatial``, an integer dtype of 32 bits or more.
    ndim : {2, 3}
        The model's: 2 labels every YX plane on its own; 3 (a 3D model's probabilities) labels every ZYX
        volume at once, objects connected across z (see :class:`StackLabeller`).
    spacing : (float, float, float), optional
        With ``ndim=3``: the voxel size (``model.voxel_size``), so that the watershed's distances and the gaps
        given back are physical.

    Returns
    -------
    numpy.ndarray (or ``out``)
        int32 labels of shape ``spatial`` (0 background), unique across the whole stack.

    Notes
    -----
    Planes larger than ``BLOCKWISE_PIXELS`` (4096 x 4096) are labelled block by block in bounded memory,
    where only ``threshold``, ``min_size`` and unique ids apply: ``method="watershed"`` and ``link_planes``
    raise :class:`~napari_seamless_unet.UNetInputError` there, ``fill_holes`` and ``restore_borders`` are
    skipped with a warning (three classes: the objects are the interior's components, without their border).
    Smaller planes are read and labelled whole, one at a time, whatever ``out`` is.
    """
    if not (hasattr(probabilities, "shape") and hasattr(probabilities, "dtype")):
        probabilities = np.asarray(probabilities)
    if np.dtype(probabilities.dtype).kind != "f":
        raise UNetInputError(
            f"probabilities have dtype {probabilities.dtype}; expected floats between 0 and 1 (predict's output)."
        )
    axes = probability_axes(probabilities.shape, axes)
    spatial_axes = ax.spatial_axes(axes)
    shape = tuple(int(n) for n, a in zip(probabilities.shape, axes) if a != "C")
    if out is None:
        out = np.zeros(shape, dtype=np.int32)
    elif tuple(out.shape) != shape or not holds_instance_ids(out.dtype):
        raise UNetInputError(
            f"out has shape {tuple(out.shape)} and dtype {out.dtype}; expected shape {shape} and an integer dtype "
            f"of 32 bits or more (e.g. int32) for instance ids."
        )
    labeller = StackLabeller(
        out,
        spatial_axes,
        threshold=threshold,
        min_size=min_size,
        fill_holes=fill_holes,
        method=method,
        restore_borders=restore_borders,
        link_planes=link_planes,
        num_classes=probabilities.shape[axes.index("C")],
        ndim=ndim,
        spacing=spacing,
    )
    if ndim == 3 and "Z" not in axes:
        raise UNetInputError(f"probabilities with axes {axes!r} have no Z axis; a 3D model's (ndim=3) need one.")
    c_axis = axes.index("C")
    kept = [a for a in axes if a == "C" or a in labeller.unit]  # the axes of one plane, in their order

    def foreground(plane: dict, y, x, classes=1) -> np.ndarray:
        """Class 1 of a plane (foreground, or interior); ``classes=slice(1, None)``: interior and border first."""
        index = list(ax.image_index(axes, plane, y, x))
        index[c_axis] = classes
        values = np.asarray(probabilities[tuple(index)])
        return values if isinstance(classes, int) else np.moveaxis(values, kept.index("C"), 0)

    h, w = labeller.plane_shape[-2:]
    for plane in ax.iter_planes(shape, spatial_axes, labeller.unit):
        if labeller.blockwise:
            for y in range(0, h, BLOCK):
                for x in range(0, w, BLOCK):
                    rows, cols = slice(y, min(y + BLOCK, h)), slice(x, min(x + BLOCK, w))
                    labeller.add_block(plane, rows, cols, foreground(plane, rows, cols))
            labeller.finish_blockwise(plane)
        else:
            labeller.add(plane, foreground(plane, slice(None), slice(None), object_classes(labeller.num_classes)))
    return out
