"""What prediction writes: the shape, axes and dtype of :func:`~napari_seamless_unet.predict`'s and
:func:`~napari_seamless_unet.segment`'s results, and the checks of an ``out`` array given for them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import axes as ax
from .errors import UNetInputError
from .instances import holds_instance_ids
from .model import UNet


def _as_array(image):
    """numpy, dask and zarr arrays as they are (read lazily); anything else (lists...) through numpy."""
    return image if hasattr(image, "shape") and hasattr(image, "dtype") else np.asarray(image)


def output_layout(
    model: UNet, image_shape: Sequence[int], axes: str | None = None, output: str = "probabilities"
) -> tuple[tuple[int, ...], str]:
    """Shape and axes of what :func:`predict` (``output="probabilities"``) or :func:`segment` (``"labels"``) returns.

    The result has the image's axes without C; probabilities put the classes first, on a new axis C.
    Returns ``(shape, axes)``, e.g. ``((2, 5, 512, 512), "CZYX")`` for probabilities of a ZYX stack.
    """
    resolved = ax.resolve_axes(image_shape, axes, model.in_channels)
    spatial = tuple(int(n) for n, a in zip(image_shape, resolved) if a != "C")
    if output == "probabilities":
        return (model.num_classes, *spatial), "C" + ax.spatial_axes(resolved)
    return spatial, ax.spatial_axes(resolved)


def output_dtype(model: UNet, output: str = "probabilities") -> np.dtype:
    """The dtype of :func:`predict`'s (float32) or :func:`segment`'s result (int32 instances, uint8 classes)."""
    if output == "probabilities":
        return np.dtype(np.float32)
    if model.task == "instances":
        return np.dtype(np.int32)
    return np.dtype(np.uint8 if model.num_classes <= 255 else np.int32)


def check_out(out, expected: tuple[int, ...], model: UNet, output: str, name: str = "image") -> None:
    """Refuse an ``out`` array whose shape or dtype cannot take the result, before any work is done."""
    if tuple(out.shape) != tuple(expected):
        raise UNetInputError(
            f"out has shape {tuple(out.shape)}, expected {tuple(expected)} for the {output} of {name}; create it "
            f"with that shape (numpy.zeros or zarr.zeros) or leave out=None."
        )
    dtype = np.dtype(out.dtype)
    needed = output_dtype(model, output)
    if output == "probabilities":
        if dtype.kind != "f":
            raise UNetInputError(
                f"out has dtype {dtype}, but probabilities are fractions between 0 and 1; create it with dtype float32."
            )
        return
    if model.task == "instances":
        ok = holds_instance_ids(dtype)
        what = "instance ids (one per object, possibly many thousands)"
    else:
        ok = dtype.kind in "iu" and np.iinfo(dtype).max >= model.num_classes - 1
        what = f"class ids 0..{model.num_classes - 1}"
    if not ok:
        raise UNetInputError(
            f"out has dtype {dtype}, which cannot hold {what} without wrapping around; create it with dtype "
            f"{needed} (e.g. numpy.zeros(shape, dtype='{needed}'))."
        )


def _output_array(out, model: UNet, image_shape, axes: str, output: str, name: str):
    """``out`` checked against the result's shape and dtype, or a new zero-filled numpy array; and the axes."""
    expected, result_axes = output_layout(model, image_shape, axes, output)
    if out is None:
        return np.zeros(expected, dtype=output_dtype(model, output)), result_axes
    check_out(out, expected, model, output, name)
    return out, result_axes


def allocate_output(model: UNet, image, *, axes: str | None = None, output: str = "probabilities") -> np.ndarray:
    """A zero-filled numpy array of the shape and dtype that :func:`predict` or :func:`segment` returns."""
    shape, _ = output_layout(model, _as_array(image).shape, axes, output)
    return np.zeros(shape, dtype=output_dtype(model, output))
