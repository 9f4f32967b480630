"""Shape arithmetic of the unpadded U-Net.

Each level of the contracting path applies two unpadded 3x3 convolutions (-4 pixels) and a 2x2 max pooling
(/2, which needs an even size); the bottom applies two convolutions; each level of the expanding path doubles
the size and applies two convolutions. With ``depth`` poolings an input of size ``n`` gives an output of size
``n - (12 * 2**depth - 8)``, and valid inputs are spaced ``2**depth`` apart (572 -> 388 for depth 4).
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import InvalidShapeError


def _check_depth(depth: int) -> None:
    if not isinstance(depth, int) or depth < 1:
        raise InvalidShapeError(f"depth must be a positive integer, got {depth!r}")


def _output_size_or_reason(size: int, depth: int) -> tuple[int | None, str]:
    """Output size for one axis, or ``None`` and why the size is invalid."""
    n = int(size)
    for level in range(depth):
        n -= 4
        if n <= 0:
            return None, f"it shrinks to nothing at level {level}"
        if n % 2:
            return None, f"level {level} would max-pool an odd size ({n})"
        n //= 2
    n -= 4
    if n <= 0:
        return None, "it shrinks to nothing at the bottom of the network"
    for _ in range(depth):
        n = 2 * n - 4
        if n <= 0:
            return None, "it shrinks to nothing in the expanding path"
    return n, ""


def halo(depth: int = 4) -> int:
    """Context in pixels that the network consumes on each side (92 for depth 4)."""
    _check_depth(depth)
    return 6 * 2**depth - 4


def min_input_size(depth: int = 4) -> int:
    """The smallest valid input size along one axis."""
    _check_depth(depth)
    n = 2**depth
    size = n - 4 % n if 4 % n else n  # sizes are congruent to -4 modulo 2**depth
    while _output_size_or_reason(size, depth)[0] is None:
        size += n
    return size


def is_valid_input_size(size: int, depth: int = 4) -> bool:
    """Whether an input of this size passes through the network without an odd pooling."""
    _check_depth(depth)
    return _output_size_or_reason(size, depth)[0] is not None


def valid_input_size(size: int, depth: int = 4, mode: str = "nearest") -> int:
    """A valid input size near ``size``.

    Parameters
    ----------
    size : int
        Requested size along one axis.
    depth : int
        Number of poolings of the network.
    mode : {"nearest", "up", "down"}
        Which valid size to return: the nearest (ties go up), the smallest one >= size, or the largest one <= size
        (never smaller than :func:`min_input_size`).
    """
    _check_depth(depth)
    step = 2**depth
    smallest = min_input_size(depth)
    if size <= smallest:
        return smallest
    below = smallest + ((int(size) - smallest) // step) * step
    above = below if below == size else below + step
    if mode == "up":
        return above
    if mode == "down":
        return below
    if mode == "nearest":
        return below if size - below < above - size else above
    raise ValueError(f"mode must be 'nearest', 'up' or 'down', got {mode!r}")


def output_size(size: int, depth: int = 4) -> int:
    """Output size along one axis for an input of ``size`` pixels; raises with the nearest valid sizes."""
    _check_depth(depth)
    out, reason = _output_size_or_reason(size, depth)
    if out is None:
        below = valid_input_size(size, depth, "down")
        above = valid_input_size(size, depth, "up")
        near = f"{below} or {above}" if below != above and below < size else f"{above}"
        raise InvalidShapeError(
            f"input size {size} is not valid for a U-Net of depth {depth}: {reason}. "
            f"Valid sizes are {min_input_size(depth)} + k * {2**depth}; the nearest are {near}."
        )
    return out


def input_size_for_output(size: int, depth: int = 4) -> int:
    """The smallest valid input size whose output has at least ``size`` pixels."""
    _check_depth(depth)
    return valid_input_size(int(size) + 2 * halo(depth), depth, "up")


def output_shape(input_shape: Sequence[int], depth: int = 4) -> tuple[int, ...]:
    """Spatial output shape for a spatial input shape, e.g. ``(572, 572) -> (388, 388)``."""
    return tuple(output_size(s, depth) for s in input_shape)


def valid_input_shape(shape: Sequence[int], depth: int = 4, mode: str = "nearest") -> tuple[int, ...]:
    """The valid input shape nearest to ``shape`` (see :func:`valid_input_size`)."""
    return tuple(valid_input_size(s, depth, mode) for s in shape)


def check_input_shape(shape: Sequence[int], depth: int = 4, what: str = "tile") -> tuple[int, ...]:
    """Validate a spatial input shape and return its output shape; the error names ``what`` and the fix."""
    try:
        return output_shape(shape, depth)
    except InvalidShapeError as err:
        raise InvalidShapeError(
            f"{what} shape {tuple(int(s) for s in shape)} is invalid: {err} "
            f"Nearest valid {what} shape: {valid_input_shape(shape, depth)}."
        ) from None


def check_context(size: Sequence[int], depth: int, what: str = "image", trained: bool = False) -> None:
    """Raise if a (Y, X) image is smaller than the network's context on each side.

    Mirroring cannot extrapolate such an image reliably. For training (``trained=False``) the message suggests a
    smaller depth; a trained model's depth cannot change, so for prediction it suggests padding the image or a
    model of smaller depth.
    """
    context = halo(depth)
    if min(size) < context:
        smaller = max(1, depth - 1)
        if trained:
            fix = (
                f"Pad the image to at least {context} x {context} pixels (e.g. numpy.pad(image, ..., "
                f"mode='reflect') and crop the result), or use a model trained with a smaller depth (depth "
                f"{smaller} needs {halo(smaller)} pixels)."
            )
        else:
            fix = f"Use a larger image or a smaller depth (depth {smaller} needs {halo(smaller)} pixels)."
        raise InvalidShapeError(
            f"{what} of YX size {tuple(int(s) for s in size)} is smaller than the network's context of {context} "
            f"pixels on each side; mirroring cannot extrapolate it reliably. {fix}"
        )
