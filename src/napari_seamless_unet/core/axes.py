"""Axis bookkeeping: which axis holds channels, which are iterated plane by plane."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator, Sequence

import numpy as np

from .errors import UNetInputError

KNOWN_AXES = "TZCYXS"
_UNSUPPORTED_KINDS = {"b": "bool", "c": "complex", "O": "object", "U": "string", "S": "bytes", "V": "void"}


def check_image_dtype(image, name: str = "image") -> None:
    """Reject dtypes that are no intensity images (bool, complex, object, strings)."""
    kind = np.dtype(image.dtype).kind
    if kind in _UNSUPPORTED_KINDS:
        raise UNetInputError(
            f"{name} has dtype {image.dtype} ({_UNSUPPORTED_KINDS[kind]}), which is not an intensity image; "
            f"convert it to an integer or float array first (e.g. image.astype('float32'))."
        )


def default_axes(shape: Sequence[int], in_channels: int = 1) -> str:
    """Guess axes from the shape: YX, ZYX/CYX/YXC, TZYX/ZCYX/ZYXC, TZCYX."""
    ndim = len(shape)
    if ndim == 2:
        return "YX"
    if ndim == 3:
        if in_channels > 1 and shape[-1] == in_channels and in_channels in (3, 4):
            return "YXC"  # RGB(A) as napari and tifffile hand it over
        if in_channels > 1 and shape[0] == in_channels:
            return "CYX"
        return "ZYX"
    if ndim == 4:
        if in_channels > 1 and shape[-1] == in_channels and in_channels in (3, 4):
            return "ZYXC"
        if in_channels > 1 and shape[1] == in_channels:
            return "ZCYX"
        return "TZYX"
    if ndim == 5:
        if in_channels > 1 and shape[-1] == in_channels and in_channels in (3, 4):
            return "TZYXC"
        return "TZCYX"
    raise UNetInputError(
        f"image has {ndim} dimensions {tuple(shape)}; expected 2 to 5 (YX, ZYX, CYX, TZYX, TZCYX). "
        f"Pass a 2D image, a stack, or say which axis is which with axes=..."
    )


def resolve_axes(shape: Sequence[int], axes: str | None, in_channels: int = 1, name: str = "image") -> str:
    """Validate ``axes`` against ``shape`` and the model's channel count; returns upper-case axes with C for S."""
    if axes is None:
        axes = default_axes(shape, in_channels)
    axes = str(axes).upper().replace("S", "C")
    if len(axes) != len(shape):
        raise UNetInputError(
            f"axes {axes!r} has {len(axes)} letters but {name} has {len(shape)} dimensions {tuple(shape)}; "
            f"give one letter per dimension, e.g. {default_axes(shape, in_channels)!r}."
            if 2 <= len(shape) <= 5
            else f"{name} has {len(shape)} dimensions {tuple(shape)}; expected 2 to 5 (YX ... TZCYX)."
        )
    bad = [a for a in axes if a not in KNOWN_AXES]
    if bad or len(set(axes)) != len(axes) or "Y" not in axes or "X" not in axes:
        raise UNetInputError(f"axes {axes!r} is invalid: use each of T, Z, C, Y, X at most once, Y and X exactly once.")
    n_channels = shape[axes.index("C")] if "C" in axes else 1
    if n_channels != in_channels:
        where = f"axis C has {n_channels}" if "C" in axes else "it has no channel axis"
        raise UNetInputError(
            f"the model expects {in_channels} channel(s) but {name} of shape {tuple(shape)} with axes {axes!r}: "
            f"{where}. Use an image with {in_channels} channel(s) or a model trained for {n_channels}."
        )
    for letter in "YX":
        if shape[axes.index(letter)] < 1:
            raise UNetInputError(f"{name} of shape {tuple(shape)} is empty along axis {letter}.")
    return axes


def stack_axes(axes: str, unit: str = "YX") -> str:
    """The axes a stack is iterated over plane by plane (everything but C, Y, X), in image order, e.g. ``"TZ"``;
    with ``unit="ZYX"`` (a 3D network), volume by volume (everything but C, Z, Y, X)."""
    return "".join(a for a in axes if a != "C" and a not in unit)


def plane_axes(axes: str) -> str:
    """Deprecated alias of :func:`stack_axes` (the name read as the axes *of* a plane, the opposite)."""
    warnings.warn("axes.plane_axes is deprecated; use axes.stack_axes", DeprecationWarning, stacklevel=2)
    return stack_axes(axes)


def spatial_axes(axes: str) -> str:
    """Axes of the outputs: the image axes without C."""
    return axes.replace("C", "")


def unit_axes(ndim: int) -> str:
    """The axes one network input covers: ``"YX"`` for a 2D network, ``"ZYX"`` for a 3D one."""
    return "ZYX"[-int(ndim) :]


def iter_planes(shape: Sequence[int], axes: str, unit: str = "YX") -> Iterator[dict[str, int]]:
    """Yield ``{axis: index}`` for every 2D plane, e.g. ``{"T": 0, "Z": 3}`` (every volume for ``unit="ZYX"``)."""
    loop = stack_axes(axes, unit)
    ranges = [range(shape[axes.index(a)]) for a in loop]
    for combo in itertools.product(*ranges):
        yield dict(zip(loop, combo))


def plane_count(shape: Sequence[int], axes: str, unit: str = "YX") -> int:
    return int(np.prod([shape[axes.index(a)] for a in stack_axes(axes, unit)], dtype=np.int64))


def image_index(axes: str, plane: dict[str, int], y, x, z=None) -> tuple:
    """Index into the image for one plane and Y/X selections (C kept whole); Z is the plane's, else ``z`` (all of
    it by default: a volume of a 3D network)."""
    index = []
    for a in axes:
        if a == "Y":
            index.append(y)
        elif a == "X":
            index.append(x)
        elif a == "C":
            index.append(slice(None))
        elif a == "Z" and a not in plane:
            index.append(slice(None) if z is None else z)
        else:
            index.append(plane[a])
    return tuple(index)


def output_index(axes: str, plane: dict[str, int], y, x, z=None) -> tuple:
    """Index into an output of axes ``spatial_axes(axes)`` for one plane (or volume)."""
    return image_index(spatial_axes(axes), plane, y, x, z)


def to_cyx(block: np.ndarray, axes: str, unit: str = "YX") -> np.ndarray:
    """Reorder a block read with :func:`image_index` (remaining axes among C and ``unit`` in image order) to
    (C, Y, X), or (C, Z, Y, X) for ``unit="ZYX"``."""
    kept = [a for a in axes if a == "C" or a in unit]
    if "C" not in kept:
        return block[np.newaxis]
    return np.transpose(block, [kept.index(a) for a in "C" + unit])
