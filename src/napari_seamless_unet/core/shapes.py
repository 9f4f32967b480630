"""Shape arithmetic of the unpadded U-Net.

Each level of the contracting path applies two unpadded 3x3 convolutions (-4 pixels) and a 2x2 max pooling
(/2, which needs an even size); the bottom applies two convolutions; each level of the expanding path doubles
the size and applies two convolutions. With ``depth`` poolings an input of size ``n`` gives an output of size
``n - (12 * 2**depth - 8)``, and valid inputs are spaced ``2**depth`` apart (572 -> 388 for depth 4).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

from .errors import InvalidShapeError


def _check_depth(depth: int) -> None:
    if not isinstance(depth, int) or depth < 1:
        raise InvalidShapeError(f"depth must be a positive integer, got {depth!r}")


def _output_size_or_reason(size: int, depth: int) -> tuple[int | None, str]:
    """Output size for one axis, or ``None`` and why the size is invalid."""
    return AxisRule.paper(depth).output_or_reason(size)


def halo(depth: int = 4) -> int:
    """Context in pixels that the network consumes on each side (92 for depth 4)."""
    _check_depth(depth)
    return 6 * 2**depth - 4


def min_input_size(depth: int = 4) -> int:
    """The smallest valid input size along one axis."""
    return AxisRule.paper(depth).min_input_size


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
    return AxisRule.paper(depth).valid_input_size(size, mode)


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


# -- per-axis arithmetic: anisotropic 3D networks ----------------------------------------------------------------
class AxisRule:
    """The shape arithmetic of one spatial axis of a network whose levels may differ per axis.

    ``kernels[level]`` is the convolution size along this axis at each level (``depth + 1`` entries: the levels of
    the contracting path, then the bottom; the expanding path reuses its level's), 3 or 1 (a convolution that
    does not look along this axis, for an axis sampled much more coarsely than the others). ``pools[level]`` is
    the pooling (and up-convolution) factor at each of the ``depth`` levels, 2 or 1. The paper's axis is all 3s
    and all 2s (:meth:`paper`).
    """

    def __init__(self, kernels: Sequence[int], pools: Sequence[int]):
        self.kernels = tuple(int(k) for k in kernels)
        self.pools = tuple(int(p) for p in pools)
        if len(self.kernels) != len(self.pools) + 1 or not self.pools:
            raise InvalidShapeError(f"need depth + 1 kernels and depth pools, got {self.kernels} and {self.pools}")
        if any(k not in (1, 3) for k in self.kernels) or any(p not in (1, 2) for p in self.pools):
            raise InvalidShapeError(f"kernels must be 1 or 3 and pools 1 or 2, got {self.kernels}, {self.pools}")

    @classmethod
    def paper(cls, depth: int) -> AxisRule:
        _check_depth(depth)
        return cls((3,) * (depth + 1), (2,) * depth)

    def __eq__(self, other) -> bool:
        return isinstance(other, AxisRule) and (self.kernels, self.pools) == (other.kernels, other.pools)

    def __hash__(self) -> int:
        return hash((self.kernels, self.pools))

    def __repr__(self) -> str:
        return f"AxisRule(kernels={self.kernels}, pools={self.pools})"

    @property
    def depth(self) -> int:
        return len(self.pools)

    @property
    def step(self) -> int:
        """Valid input sizes are this far apart (the product of the poolings)."""
        return int(math.prod(self.pools))

    def output_or_reason(self, size: int) -> tuple[int | None, str]:
        n = int(size)
        for level, (k, p) in enumerate(zip(self.kernels, self.pools)):
            n -= 2 * (k - 1)
            if n <= 0:
                return None, f"it shrinks to nothing at level {level}"
            if p == 2 and n % 2:
                return None, f"level {level} would max-pool an odd size ({n})"
            n //= p
        n -= 2 * (self.kernels[-1] - 1)
        if n <= 0:
            return None, "it shrinks to nothing at the bottom of the network"
        for level in reversed(range(self.depth)):
            n = n * self.pools[level] - 2 * (self.kernels[level] - 1)
            if n <= 0:
                return None, "it shrinks to nothing in the expanding path"
        return n, ""

    @functools.cached_property
    def min_input_size(self) -> int:
        size = 1
        while self.output_or_reason(size)[0] is None:
            size += 1
        return size

    @functools.cached_property
    def halo(self) -> int:
        """Context consumed on each side along this axis."""
        size = self.min_input_size
        return (size - self.output_or_reason(size)[0]) // 2

    def valid_input_size(self, size: int, mode: str = "nearest") -> int:
        smallest, step = self.min_input_size, self.step
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

    def output_size(self, size: int, axis: str = "") -> int:
        out, reason = self.output_or_reason(size)
        if out is None:
            below, above = self.valid_input_size(size, "down"), self.valid_input_size(size, "up")
            near = f"{below} or {above}" if below != above and below < size else f"{above}"
            where = f" along {axis}" if axis else ""
            raise InvalidShapeError(
                f"input size {size}{where} is not valid for this network: {reason}. Valid sizes are "
                f"{self.min_input_size} + k * {self.step}; the nearest are {near}."
            )
        return out


def anisotropic_rules(voxel_size: Sequence[float], depth: int) -> tuple[AxisRule, ...]:
    """Per-axis rules of a network for data of this voxel size, as the 3D U-Net line of work chooses them.

    At each level, with the spacings the data has there: an axis whose spacing is more than twice the finest
    gets 1-voxel convolutions along it (it carries too little context per voxel to convolve across yet), and an
    axis is pooled only while its spacing is below twice the finest, so coarse z is pooled later than x and y
    until the spacings meet (nnU-Net's rule). Isotropic voxels give the paper's rules on every axis.
    """
    _check_depth(depth)
    spacing = [float(s) for s in voxel_size]
    if any(not s > 0 for s in spacing):
        raise InvalidShapeError(f"voxel sizes must be positive, got {tuple(voxel_size)}")
    kernels: list[list[int]] = [[] for _ in spacing]
    pools: list[list[int]] = [[] for _ in spacing]
    for level in range(depth + 1):
        finest = min(spacing)
        for a, s in enumerate(spacing):
            # a small tolerance: (2.0000001, 1, 1) is the same as (2, 1, 1) read from a file's metadata
            kernels[a].append(3 if s <= 2 * finest * (1 + 1e-6) else 1)
            if level < depth:
                pool = 2 if s < 2 * finest * (1 - 1e-6) else 1
                pools[a].append(pool)
                spacing[a] = s * pool
    return tuple(AxisRule(k, p) for k, p in zip(kernels, pools))


class Geometry:
    """The shape arithmetic of a network over all its spatial axes (one :class:`AxisRule` per axis)."""

    def __init__(self, rules: Sequence[AxisRule], axes: str | None = None):
        self.rules = tuple(rules)
        self.axes = axes or "ZYX"[-len(self.rules) :]

    @classmethod
    def paper(cls, depth: int, ndim: int = 2) -> Geometry:
        return cls((AxisRule.paper(depth),) * ndim)

    @property
    def ndim(self) -> int:
        return len(self.rules)

    @property
    def halo(self) -> tuple[int, ...]:
        return tuple(r.halo for r in self.rules)

    @property
    def step(self) -> tuple[int, ...]:
        return tuple(r.step for r in self.rules)

    @property
    def min_input_shape(self) -> tuple[int, ...]:
        return tuple(r.min_input_size for r in self.rules)

    def output_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        self._check_ndim(shape)
        return tuple(r.output_size(s, a) for r, s, a in zip(self.rules, shape, self.axes))

    def valid_input_shape(self, shape: Sequence[int], mode: str = "nearest") -> tuple[int, ...]:
        self._check_ndim(shape)
        return tuple(r.valid_input_size(s, mode) for r, s in zip(self.rules, shape))

    def input_shape_for_output(self, shape: Sequence[int]) -> tuple[int, ...]:
        """The smallest valid input shape whose output covers ``shape``."""
        self._check_ndim(shape)
        return tuple(r.valid_input_size(int(s) + 2 * r.halo, "up") for r, s in zip(self.rules, shape))

    def check_input_shape(self, shape: Sequence[int], what: str = "tile") -> tuple[int, ...]:
        try:
            return self.output_shape(shape)
        except InvalidShapeError as err:
            raise InvalidShapeError(
                f"{what} shape {tuple(int(s) for s in shape)} is invalid: {err} "
                f"Nearest valid {what} shape: {self.valid_input_shape(shape)}."
            ) from None

    def _check_ndim(self, shape: Sequence[int]) -> None:
        if len(shape) != self.ndim:
            raise InvalidShapeError(
                f"expected a {self.ndim}D shape ({', '.join(self.axes)}), got {tuple(int(s) for s in shape)}"
            )

    def __repr__(self) -> str:
        return f"Geometry({self.rules!r})"
