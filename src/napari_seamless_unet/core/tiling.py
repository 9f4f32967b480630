"""Overlap-tile layout: mirror-extrapolated borders, tiles aligned to the pooling grid, valid centres stitched.

A tile's output starts at a multiple of ``2**depth`` so that every tile sees the same max-pooling grid as one
pass over the whole (mirror-padded) image would; that is what makes tiled and single-pass predictions equal.
Valid output sizes are congruent to 4 modulo ``2**depth``, so each tile computes a few pixels more than it
writes (its *stride*); every output pixel is written by exactly one tile, without blending.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from . import shapes
from .errors import InvalidShapeError


def reflect_indices(start: int, stop: int, size: int) -> np.ndarray:
    """Indices ``start..stop-1`` mirrored into ``[0, size)`` like ``numpy.pad(mode="reflect")``, any distance."""
    idx = np.arange(start, stop, dtype=np.int64)
    if size == 1:
        return np.zeros_like(idx)
    period = 2 * (size - 1)
    idx = np.mod(idx, period)
    return np.where(idx >= size, period - idx, idx)


@dataclass(frozen=True)
class Tile:
    """One tile: the output region it writes (inside the image) and where its input starts (may be outside)."""

    out_start: tuple[int, int]
    out_stop: tuple[int, int]
    in_start: tuple[int, int]

    @property
    def out_slices(self) -> tuple[slice, slice]:
        return tuple(slice(a, b) for a, b in zip(self.out_start, self.out_stop))


@dataclass(frozen=True)
class TileGrid:
    """All tiles of one 2D plane.

    Attributes
    ----------
    image_shape : (int, int)
        Spatial shape of the plane.
    tile_shape : (int, int)
        Input tile shape fed to the network (valid for its depth).
    output_tile_shape : (int, int)
        What the network returns for one tile.
    stride : (int, int)
        Output pixels written per tile (a multiple of ``2**depth``), the spacing between tiles.
    halo : int
        Context on each side.
    """

    image_shape: tuple[int, int]
    tile_shape: tuple[int, int]
    output_tile_shape: tuple[int, int]
    stride: tuple[int, int]
    halo: int

    @classmethod
    def for_tile_shape(cls, image_shape: Sequence[int], tile_shape: Sequence[int], depth: int) -> TileGrid:
        """Lay out tiles of a given (valid) input shape over a plane."""
        tile_shape = tuple(int(t) for t in tile_shape)
        if len(tile_shape) != 2:
            raise InvalidShapeError(f"tile_shape must have two entries (Y, X), got {tile_shape}")
        out = shapes.check_input_shape(tile_shape, depth, what="tile")
        step = 2**depth
        stride = tuple((o // step) * step for o in out)
        if min(stride) < step:
            raise InvalidShapeError(
                f"tile shape {tile_shape} is too small; use at least {shapes.min_input_size(depth) + step}"
            )
        return cls(tuple(int(s) for s in image_shape), tile_shape, out, stride, shapes.halo(depth))

    @classmethod
    def for_stride(cls, image_shape: Sequence[int], stride: Sequence[int], depth: int) -> TileGrid:
        """Lay out tiles that write ``stride`` output pixels each (multiples of ``2**depth``)."""
        step = 2**depth
        if any(s % step or s <= 0 for s in stride):
            raise InvalidShapeError(f"tile stride {tuple(stride)} must be positive multiples of {step}")
        out = tuple(s + 4 for s in stride)
        tile = tuple(o + 2 * shapes.halo(depth) for o in out)
        shapes.check_input_shape(tile, depth)
        return cls(tuple(int(s) for s in image_shape), tile, out, tuple(int(s) for s in stride), shapes.halo(depth))

    @property
    def counts(self) -> tuple[int, int]:
        return tuple(math.ceil(n / s) for n, s in zip(self.image_shape, self.stride))

    def __len__(self) -> int:
        ny, nx = self.counts
        return ny * nx

    def __iter__(self) -> Iterator[Tile]:
        ny, nx = self.counts
        (sy, sx), (h, w) = self.stride, self.image_shape
        for iy in range(ny):
            for ix in range(nx):
                y0, x0 = iy * sy, ix * sx
                yield Tile((y0, x0), (min(y0 + sy, h), min(x0 + sx, w)), (y0 - self.halo, x0 - self.halo))

    def input_indices(self, tile: Tile) -> tuple[np.ndarray, np.ndarray]:
        """Mirrored source indices (Y, X) of the tile's input."""
        return tuple(
            reflect_indices(start, start + t, n)
            for start, t, n in zip(tile.in_start, self.tile_shape, self.image_shape)
        )

    @property
    def executed_output_pixels(self) -> int:
        """Output pixels the network computes for this plane (including those outside the image)."""
        return len(self) * self.output_tile_shape[0] * self.output_tile_shape[1]


def read_mirrored(array, index_prefix, y_idx: np.ndarray, x_idx: np.ndarray, y_axis: int, x_axis: int) -> np.ndarray:
    """Read ``array`` at mirrored Y/X indices, touching only the bounding box (lazy for dask and zarr)."""
    y0, y1 = int(y_idx.min()), int(y_idx.max()) + 1
    x0, x1 = int(x_idx.min()), int(x_idx.max()) + 1
    index = list(index_prefix)
    index[y_axis], index[x_axis] = slice(y0, y1), slice(x0, x1)
    block = array[tuple(index)]
    if hasattr(block, "compute"):
        block = block.compute()
    block = np.asarray(block)
    # Axes removed by integer indexing shift the positions of Y and X in the block.
    removed_before = lambda axis: sum(isinstance(i, (int, np.integer)) for i in index_prefix[:axis])  # noqa: E731
    by, bx = y_axis - removed_before(y_axis), x_axis - removed_before(x_axis)
    contiguous_y = y_idx[0] == y0 and np.all(np.diff(y_idx) == 1)
    contiguous_x = x_idx[0] == x0 and np.all(np.diff(x_idx) == 1)
    if not contiguous_y:
        block = np.take(block, y_idx - y0, axis=by)
    if not contiguous_x:
        block = np.take(block, x_idx - x0, axis=bx)
    return block
