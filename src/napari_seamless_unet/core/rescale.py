"""Prediction at the model's pixel size: an image of another physical pixel (voxel) size is resampled to the
model's, predicted there, and its class probabilities are resampled back to the image's grid.

One notion of size throughout: ``voxel_size``, the physical size of a pixel (Y, X) or voxel (Z, Y, X) along the
model's axes, in micrometres. A model records it at training (``UNet.voxel_size``, ``TrainConfig.voxel_size``);
``None`` (unknown: trained without one, or saved before models recorded it) never rescales, nor does an image whose
size is unknown, nor sizes that agree within :data:`TOLERANCE`.

The image is resampled linearly (order 1), smoothed first along the axes that shrink (Gaussian anti-aliasing, as
``skimage.transform.resize`` does it); the probabilities come back linearly too, and labels (argmax, or instances)
are made from them on the image's grid, so objects come back whole rather than as blocky upsampled labels.
Memory: one plane at a time (a 3D model: one volume), read whole: the plane as float32 at both pixel sizes and
its class probabilities at both, besides what the tile loop holds. A single plane larger than memory cannot be
rescaled this way: resample the image first, or pass ``rescale=False``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Sequence

import numpy as np

from . import axes as ax
from .errors import UNetInputError
from .progress import Progress

#: sizes within 1% of the model's are taken as equal: no resampling
TOLERANCE = 0.01


def image_voxel_size(ndim: int, voxel_size) -> tuple[float, ...]:
    """An image's ``voxel_size`` along a ``ndim``-D model's axes: the last ``ndim`` sizes given (a ZYX size for a 2D
    model: its Y, X), or one number for every axis. Raises ``UNetInputError`` for sizes that are not positive."""
    sizes = (voxel_size,) * ndim if isinstance(voxel_size, (int, float)) else tuple(voxel_size)
    try:
        sizes = tuple(float(v) for v in sizes)
    except (TypeError, ValueError):
        raise UNetInputError(f"voxel_size must be numbers (Z, Y, X or Y, X), got {voxel_size!r}") from None
    if len(sizes) < ndim or not all(v > 0 and math.isfinite(v) for v in sizes):
        what = "Z, Y, X (3 sizes)" if ndim == 3 else "Y, X (2 sizes)"
        raise UNetInputError(
            f"voxel_size of the image must be positive sizes {what} for a {ndim}D model, got {voxel_size!r}"
        )
    return sizes[-ndim:]


def zoom_factors(model, voxel_size, rescale: bool = True) -> tuple[float, ...] | None:
    """The image's voxel size over the model's, per axis of the model (2 is an image twice as coarse, which grows
    twofold); None where nothing is resampled: ``rescale`` off, a size unknown, or every ratio within 1%."""
    if not rescale or voxel_size is None or getattr(model, "voxel_size", None) is None:
        return None
    image = image_voxel_size(model.ndim, voxel_size)
    zoom = tuple(i / m for i, m in zip(image, model.voxel_size))
    return None if all(abs(z - 1.0) <= TOLERANCE for z in zoom) else zoom


def labelling_spacing(model, voxel_size, rescale: bool = True):
    """The voxel size ``segment``'s post-processing measures distances with: the image's where it is resampled
    (labels are made on the image's grid), else the model's."""
    if zoom_factors(model, voxel_size, rescale) is None:
        return model.voxel_size
    return image_voxel_size(model.ndim, voxel_size)


def scaled_shape(shape: Sequence[int], zoom: Sequence[float]) -> tuple[int, ...]:
    """The shape of ``shape`` resampled by ``zoom`` (rounded, at least 1)."""
    return tuple(max(1, round(int(n) * float(z))) for n, z in zip(shape, zoom))


def resample(block: np.ndarray, shape: Sequence[int], order: int = 1) -> np.ndarray:
    """``(C, *spatial)`` resampled to ``(C, *shape)`` as float32: interpolation of ``order`` (1: linear), pixel
    edges aligned (the whole extent maps onto the whole extent), Gaussian anti-aliasing along shrinking axes."""
    from skimage.transform import resize

    block = np.asarray(block, dtype=np.float32)
    target = (block.shape[0], *(int(n) for n in shape))
    if tuple(block.shape) == target:
        return block
    shrink = any(t < s for t, s in zip(target, block.shape))
    resized = resize(block, target, order=order, mode="reflect", anti_aliasing=shrink, preserve_range=True)
    return resized.astype(np.float32, copy=False)


def iter_rescaled(
    predict_unit: Callable[..., Generator[Progress, None, np.ndarray]],
    model,
    image,
    axes: str,
    zoom: Sequence[float],
    *,
    output: str,
    out,
    name: str = "image",
    **kwargs,
) -> Generator[Progress, None, object]:
    """``iter_predict`` (``predict_unit``) at the model's pixel size, plane by plane (volume by volume): each is read,
    resampled by ``zoom``, predicted, and its probabilities resampled back and written to ``out`` (the image's
    grid) whole: probabilities, their argmax (``output="labels"``), or to the foreground sink of ``segment``.

    Progress counts tiles of the resampled planes across the stack. ``kwargs`` go to ``predict_unit``.
    """
    unit = ax.unit_axes(model.ndim)
    planes = list(ax.iter_planes(image.shape, axes, unit))
    shape = tuple(int(image.shape[axes.index(a)]) for a in unit)
    small = scaled_shape(shape, zoom)
    # the order of the unit axes in the output (the image's order), from the network's (Z,) Y, X
    order = [a for a in ax.spatial_axes(axes) if a in unit]
    permutation = (0, *(1 + unit.index(a) for a in order))
    for i, plane in enumerate(planes):
        block = ax.to_cyx(np.asarray(image[ax.image_index(axes, plane, slice(None), slice(None))]), axes, unit)
        scaled = resample(block, small)
        del block
        probabilities = np.zeros((model.num_classes, *small), dtype=np.float32)
        target = probabilities
        if kwargs.get("view_entropy"):  # one more channel after the probabilities (core.uncertainty)
            probabilities = np.zeros((model.num_classes + 1, *small), dtype=np.float32)
            target = _WiderThanItSays(probabilities, model.num_classes)
        where = f" (plane {plane})" if plane else ""
        inner = predict_unit(
            model,
            scaled,
            axes="C" + unit,
            output="probabilities",
            out=target,
            name=f"{name}{where} resampled to the model's pixel size",
            **kwargs,
        )
        try:
            for event in inner:
                yield Progress(i * event.total + event.done, len(planes) * event.total, event.stage)
        finally:
            inner.close()
        del scaled
        back = resample(probabilities, shape).transpose(permutation)
        del probabilities
        whole = [slice(0, n) for n in shape]  # explicit bounds: a sink sees a plane's first and only write
        index = ax.output_index(axes, plane, *whole[-2:], *whole[:-2])
        if output == "probabilities":
            out[(slice(None), *index)] = back
        else:
            out[index] = back.argmax(axis=0)
    return out


class _WiderThanItSays:
    """A buffer with one channel more than the probabilities ``iter_predict`` checks ``out`` for: the views' mean
    entropy that ``view_entropy`` writes after them."""

    def __init__(self, buffer: np.ndarray, num_classes: int):
        self.buffer = buffer
        self.shape = (num_classes, *buffer.shape[1:])
        self.dtype = buffer.dtype

    def __setitem__(self, index, values) -> None:
        self.buffer[index] = values
