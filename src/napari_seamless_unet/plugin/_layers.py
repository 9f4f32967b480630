"""From napari layers to the arrays and axis strings the compute core takes, and back to layer transforms.

Nothing here copies image data: dask and zarr backed layers stay lazy (the core reads them tile by tile), and
multiscale layers are read at level 0. Only training planes are materialised, because training reads random
crops of them many times, and only by :meth:`TrainingPlan.load`, which the widgets call on the worker thread:
what runs on the GUI thread looks at shapes, names and metadata only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..core import axes as ax
from ..core.errors import InvalidShapeError, UNetInputError

_AXIS_NAMES = {"t": "T", "time": "T", "z": "Z", "c": "C", "channel": "C", "y": "Y", "x": "X"}

#: ``layer.metadata[METADATA_KEY] = {"role": ..., "source": <image layer name>, "model": <model name>}`` marks the
#: layers the plugin made (roles in ``OUTPUT_ROLES``), so they are never guessed as training labels or images.
METADATA_KEY = "napari-seamless-unet"
OUTPUT_ROLES = ("prediction", "probabilities", "preview")


def mark_output(layer, role: str, **info) -> None:
    """Mark ``layer`` as made by the plugin (``role`` in ``OUTPUT_ROLES``; ``info`` e.g. source=, model=)."""
    if role not in OUTPUT_ROLES:
        raise ValueError(f"unknown role {role!r}; one of {OUTPUT_ROLES}")
    layer.metadata[METADATA_KEY] = {"role": role, **info}
    paint = getattr(getattr(layer, "events", None), "paint", None)
    if role == "prediction" and paint is not None:
        paint.connect(_mark_corrected)  # the same function once per layer: napari does not connect it twice


def _mark_corrected(event) -> None:
    """A user painted on a segmentation: it is now a correction, to train on (:func:`guess_labels_layer`)."""
    info = output_info(event.source)
    if info.get("role") == "prediction":
        info["corrected"] = True


def output_info(layer) -> dict:
    """What :func:`mark_output` stored on ``layer`` (empty for a layer the plugin did not make)."""
    info = getattr(layer, "metadata", {}).get(METADATA_KEY)
    return info if isinstance(info, dict) else {}


def is_output(layer) -> bool:
    """Whether the plugin made ``layer`` (a segmentation, probability map or training preview)."""
    return output_info(layer).get("role") in OUTPUT_ROLES


def output_name(image_name: str, what: str, model_name: str) -> str:
    """Name of a layer the plugin adds, e.g. ``"cells — U-Net instances (cells.unet.pt)"``."""
    return f"{image_name} — U-Net {what} ({model_name})"


def labels_output(layer, axes: str, model, model_name: str) -> tuple[str, dict, dict]:
    """The name, ``scale``/``translate`` and marks (:func:`mark_output`'s ``info``) of the Labels layer that a
    Segment run of ``model`` adds for the image ``layer``."""
    what = "instances" if model.task == "instances" else "classes"
    mark = {"source": layer.name, "model": model_name}
    return output_name(layer.name, what, model_name), spatial_transform(layer, axes), mark


def layer_data(layer):
    """The layer's data without copying it; level 0 of a multiscale layer."""
    data = layer.data
    if getattr(layer, "multiscale", False):
        data = data[0]
    return data


def _axes_from_labels(layer, ndim: int) -> str | None:
    """Axes from user-set ``layer.axis_labels`` (e.g. ("t", "z", "y", "x")), or None for napari's defaults."""
    labels = tuple(getattr(layer, "axis_labels", ()) or ())
    if len(labels) != ndim:
        return None
    letters = "".join(_AXIS_NAMES.get(str(label).strip().lower(), "?") for label in labels)
    if "?" in letters or len(set(letters)) != len(letters) or not letters.endswith("YX"):
        return None
    return letters


def image_axes(layer, in_channels: int | None = None) -> str:
    """Axes string of an image layer's data (level 0), e.g. ``"YX"``, ``"ZYX"``, ``"TZYX"``, ``"YXC"`` for RGB.

    Parameters
    ----------
    layer : napari.layers.Image
        The layer.
    in_channels : int, optional
        Channels the model expects; with more than one channel a leading axis of that length is read as channels.
    """
    shape = tuple(layer_data(layer).shape)
    if getattr(layer, "rgb", False):
        spatial = len(shape) - 1
        if not 2 <= spatial <= 4:
            raise InvalidShapeError(f"RGB layer {layer.name!r} of shape {shape} has {spatial} spatial dimensions")
        return "TZYX"[-spatial:] + "C"
    named = _axes_from_labels(layer, len(shape))
    if named is not None:
        return named
    return ax.default_axes(shape, in_channels or 1)


def layer_channels(layer) -> int:
    """Number of channels an image layer carries (3 or 4 for RGB(A), else 1 unless its axis labels name C)."""
    axes = image_axes(layer)
    return int(layer_data(layer).shape[axes.index("C")]) if "C" in axes else 1


def _layer_dims_axes(layer, axes: str) -> str:
    """The axes of the layer's dims (RGB layers have no dim for their colour axis)."""
    return axes.replace("C", "") if getattr(layer, "rgb", False) else axes


def spatial_transform(layer, axes: str) -> dict:
    """``scale`` and ``translate`` of the layer restricted to the output axes (the image axes without C)."""
    dims = _layer_dims_axes(layer, axes)
    keep = [i for i, a in enumerate(dims) if a != "C"]
    scale = np.asarray(layer.scale, dtype=float)
    translate = np.asarray(layer.translate, dtype=float)
    return {"scale": tuple(scale[keep]), "translate": tuple(translate[keep])}


def has_z(layer) -> bool:
    """Whether an image layer is a volume (its axes per :func:`image_axes` have a Z): a 3D network can train on it."""
    try:
        return layer is not None and "Z" in image_axes(layer)
    except UNetInputError:
        return False


def voxel_size(layer, axes: str | None = None) -> tuple[float, ...]:
    """The layer's ``scale`` along Z, Y, X (Y, X for a layer without Z): the voxel size a 3D network is shaped for."""
    axes = axes or image_axes(layer)
    spatial = ax.spatial_axes(axes)
    scale = spatial_transform(layer, axes)["scale"]
    return tuple(float(scale[spatial.index(a)]) for a in "ZYX" if a in spatial)


def current_plane(layer, viewer, axes: str) -> dict[str, int]:
    """``{axis: index}`` of the plane the viewer shows for every axis other than C, Y, X.

    The viewer's position is mapped through the layer's transform, so layers with a scale or an offset (or with
    fewer dimensions than the viewer) get the right plane.
    """
    dims = _layer_dims_axes(layer, axes)
    data_point = np.asarray(layer.world_to_data(viewer.dims.point), dtype=float)
    shape = layer_data(layer).shape
    plane = {}
    for i, a in enumerate(dims):
        if a in "CYX":
            continue
        n = shape[axes.index(a)]
        plane[a] = int(np.clip(np.round(data_point[i]), 0, n - 1))
    return plane


def plane_index(axes: str, plane: dict[str, int]) -> tuple:
    """Index into the image selecting one plane (C, Y, X kept whole)."""
    return ax.image_index(axes, plane, slice(None), slice(None))


def in_plane_axes(axes: str) -> str:
    """The axes left after selecting one plane (among C, Y, X), e.g. ``"TZCYX"`` -> ``"CYX"``."""
    return "".join(a for a in axes if a in "CYX")


@dataclass
class TrainingData:
    """Annotated 2D planes (or 3D volumes) ready for :func:`~napari_seamless_unet.core.train.iter_train`."""

    images: list[np.ndarray]
    labels: list[np.ndarray]
    axes: str  # "YX" or "CYX"; "ZYX" or "CZYX" for a 3D network
    channels: int
    summary: str
    names: list[str]  # "<layer>" or "<layer> plane {...}", for the trainer's error messages


def _any(array) -> bool:
    value = array.any()
    return bool(value.compute() if hasattr(value, "compute") else value)


@dataclass
class _Source:
    """One (image, labels) pair as arrays (not read), with the image's axes and the layer names."""

    image: object
    labels: object
    axes: str
    image_name: str
    labels_name: str


@dataclass
class TrainingPlan:
    """What to train on, checked from shapes and names only: nothing is read until :meth:`load`.

    Made on the GUI thread by :func:`plan_training`; :meth:`load` reads the annotated planes and is meant for the
    worker thread (a dask or zarr layer may take long to read).
    """

    sources: list[_Source]
    axes: str  # "YX" or "CYX"; "ZYX" or "CZYX" for a 3D network
    channels: int
    ndim: int = 2

    def load(self, should_stop=None) -> TrainingData | None:
        """Read the planes (the volumes, in 3D) with some annotation (None if ``should_stop()`` became true while
        reading).

        Raises :class:`UNetInputError` when no plane has any annotation.
        """
        images, labels, names, used, total = [], [], [], 0, 0
        unit = ax.unit_axes(self.ndim)
        for source in self.sources:
            axes, data, lab = source.axes, source.image, source.labels
            spatial_axes = ax.spatial_axes(axes)
            for plane in ax.iter_planes(data.shape, axes, unit):
                if should_stop is not None and should_stop():
                    return None
                total += 1
                # A copy: the user may go on painting the Labels layer while the network trains.
                lab_plane = np.array(lab[ax.image_index(spatial_axes, plane, slice(None), slice(None))])
                # unlabelled="ignore": 0 carries no information, so a plane needs some positive label to count.
                if not _any(lab_plane):
                    continue
                img_plane = np.asarray(data[plane_index(axes, plane)])
                if "C" in axes:  # channels first, (C, Y, X) or (C, Z, Y, X)
                    img_plane = ax.to_cyx(img_plane, axes, unit)
                    if self.channels == 1:
                        img_plane = img_plane[0]
                images.append(img_plane)
                labels.append(lab_plane)
                names.append(f"{source.image_name} plane {plane}" if plane else source.image_name)
                used += 1
        if not images:
            listed = ", ".join(repr(s.labels_name) for s in self.sources)
            raise UNetInputError(
                f"the Labels layer(s) {listed} have no annotation: paint some objects (and, with 'unlabelled = "
                f"ignored', some background with label 1) before training."
            )
        if np.issubdtype(labels[0].dtype, np.floating):
            labels = [lab.astype(np.int32) for lab in labels]
        what = "volume(s)" if self.ndim == 3 else "plane(s)"
        summary = f"{used} annotated {what}" + (f" of {total}" if total != used else "")
        return TrainingData(images, labels, self.axes, self.channels, summary, names)


def plan_training(pairs: Sequence[tuple], unlabelled: str = "background", ndim: int = 2) -> TrainingPlan:
    """Check (image layer, labels layer) pairs from their shapes and names, without reading any data.

    ``ndim=3`` plans whole volumes for a 3D network: every image needs a Z axis.

    Raises :class:`UNetInputError` with a message naming the layer for every mistake a user can make before
    anything is read (missing layer, shape mismatch, inconsistent channels); a Labels layer without annotation is
    found by :meth:`TrainingPlan.load`.
    """
    if not pairs:
        raise UNetInputError("no training data: add an image layer and a Labels layer with its annotation.")
    sources, channels = [], None
    for image_layer, labels_layer in pairs:
        if image_layer is None:
            raise UNetInputError("choose an image layer to train on (open an image, or File > Open Sample).")
        if labels_layer is None:
            raise UNetInputError(
                f"no Labels layer for {image_layer.name!r}: add one (the 'new labels layer' button of the layer "
                f"list), paint some objects on it, and choose it here."
            )
        axes = image_axes(image_layer)
        if ndim == 3 and "Z" not in axes:
            raise UNetInputError(
                f"image {image_layer.name!r} (axes {axes!r}) has no Z axis: a 3D network trains on volumes. "
                f"Choose 2D, or a stack (name its axes with the layer's axis labels if Z was not recognised)."
            )
        data, lab = layer_data(image_layer), layer_data(labels_layer)
        spatial = tuple(n for n, a in zip(data.shape, axes) if a != "C")
        if tuple(lab.shape) != spatial:
            raise InvalidShapeError(
                f"image {image_layer.name!r} has shape {spatial} (without channels) but labels "
                f"{labels_layer.name!r} have shape {tuple(lab.shape)}; they must cover the same pixels. "
                f"Choose the matching Labels layer or create a new one on this image."
            )
        n_channels = data.shape[axes.index("C")] if "C" in axes else 1
        if channels is not None and n_channels != channels:
            raise UNetInputError(
                f"image {image_layer.name!r} has {n_channels} channel(s) but the other training images have "
                f"{channels}; one model takes one number of channels."
            )
        channels = n_channels
        sources.append(_Source(data, lab, axes, image_layer.name, labels_layer.name))
    unit = ax.unit_axes(ndim)
    return TrainingPlan(sources, ("C" if channels > 1 else "") + unit, int(channels), ndim)


def training_data(pairs: Sequence[tuple], unlabelled: str = "background") -> TrainingData:
    """Collect the annotated planes of (image layer, labels layer) pairs (:func:`plan_training` then ``load``).

    Stacks and time-lapses are split into 2D planes and only planes with some annotation are kept, so a user can
    annotate a few planes of a large stack. Reads the data: call it off the GUI thread.
    """
    return plan_training(pairs, unlabelled).load()


def guess_labels_layer(image_layer, labels_layers: Sequence) -> object | None:
    """The Labels layer most likely annotating ``image_layer``: a user's layer of the same name prefix first, then a
    segmentation of this image by the Segment dock that the user corrected (painted on), then the same shape.

    Other layers the plugin made (training previews, uncorrected segmentations: see :func:`is_output`) are never
    guessed; a user can still choose one by hand.
    """
    if image_layer is None or not labels_layers:
        return None
    try:
        axes = image_axes(image_layer)
    except UNetInputError:
        return None
    data = layer_data(image_layer)
    spatial = tuple(n for n, a in zip(data.shape, axes) if a != "C")
    same_shape = [lab for lab in labels_layers if tuple(layer_data(lab).shape) == spatial]
    users = [lab for lab in same_shape if not is_output(lab)]
    segmentations = [
        lab
        for lab in same_shape
        if output_info(lab).get("corrected") and output_info(lab).get("source") == image_layer.name
    ]
    for lab in users:
        if lab.name.startswith(image_layer.name):
            return lab
    if segmentations:
        return segmentations[-1]  # the newest run
    return users[0] if users else None
