"""Overlap-tile layout: mirror-extrapolated borders, tiles aligned to the pooling grid, valid centres stitched.

A tile's output starts at a multiple of ``2**depth`` so that every tile sees the same max-pooling grid as one
pass over the whole (mirror-padded) image would; that is what makes tiled and single-pass predictions equal.
Valid output sizes are congruent to 4 modulo ``2**depth``, so each tile computes a few pixels more than it
writes (its *stride*); every output pixel is written by exactly one tile, without blending.
"""

from __future__ import annotations

import itertools
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

    out_start: tuple[int, ...]
    out_stop: tuple[int, ...]
    in_start: tuple[int, ...]

    @property
    def out_slices(self) -> tuple[slice, ...]:
        return tuple(slice(a, b) for a, b in zip(self.out_start, self.out_stop))


def _geometry(depth_or_geometry, ndim: int) -> shapes.Geometry:
    if isinstance(depth_or_geometry, shapes.Geometry):
        if depth_or_geometry.ndim != ndim:
            raise InvalidShapeError(f"a {depth_or_geometry.ndim}D network cannot tile a {ndim}D image")
        return depth_or_geometry
    return shapes.Geometry.paper(int(depth_or_geometry), ndim)


@dataclass(frozen=True)
class TileGrid:
    """All tiles of one 2D plane (YX) or 3D volume (ZYX).

    Attributes
    ----------
    image_shape : tuple of int
        Spatial shape of the plane or volume.
    tile_shape : tuple of int
        Input tile shape fed to the network (valid for it).
    output_tile_shape : tuple of int
        What the network returns for one tile.
    stride : tuple of int
        Output pixels written per tile along each axis (a multiple of that axis's pooling step), the spacing
        between tiles.
    halo : int or tuple of int
        Context on each side: an int for the paper's 2D network (the same on both axes), else one per axis.
    """

    image_shape: tuple[int, ...]
    tile_shape: tuple[int, ...]
    output_tile_shape: tuple[int, ...]
    stride: tuple[int, ...]
    halo: int | tuple[int, ...]

    @classmethod
    def for_tile_shape(cls, image_shape: Sequence[int], tile_shape: Sequence[int], depth) -> TileGrid:
        """Lay out tiles of a given (valid) input shape; ``depth`` is the network's depth or its
        :class:`~napari_seamless_unet.core.shapes.Geometry` (``model.geometry``)."""
        tile_shape = tuple(int(t) for t in tile_shape)
        if len(tile_shape) != len(image_shape):
            names = "ZYX"[-len(image_shape) :]
            raise InvalidShapeError(
                f"tile_shape must have {len(image_shape)} entries ({', '.join(names)}), got {tile_shape}"
            )
        geometry = _geometry(depth, len(tile_shape))
        out = geometry.check_input_shape(tile_shape, what="tile")
        stride = tuple((o // step) * step for o, step in zip(out, geometry.step))
        if any(s < step for s, step in zip(stride, geometry.step)):
            smallest = tuple(m + step for m, step in zip(geometry.min_input_shape, geometry.step))
            raise InvalidShapeError(f"tile shape {tile_shape} is too small; use at least {smallest}")
        return cls(tuple(int(s) for s in image_shape), tile_shape, out, stride, cls._halo(geometry))

    @classmethod
    def for_stride(cls, image_shape: Sequence[int], stride: Sequence[int], depth) -> TileGrid:
        """Lay out tiles that write ``stride`` output pixels each (multiples of each axis's pooling step)."""
        geometry = _geometry(depth, len(stride))
        if any(s % step or s <= 0 for s, step in zip(stride, geometry.step)):
            raise InvalidShapeError(f"tile stride {tuple(stride)} must be positive multiples of {geometry.step}")
        tile = geometry.input_shape_for_output(stride)
        out = geometry.check_input_shape(tile)
        return cls(tuple(int(s) for s in image_shape), tile, out, tuple(int(s) for s in stride), cls._halo(geometry))

    @staticmethod
    def _halo(geometry: shapes.Geometry) -> int | tuple[int, ...]:
        halo = geometry.halo
        return halo[0] if geometry.ndim == 2 and halo[0] == halo[1] else halo

    @property
    def halos(self) -> tuple[int, ...]:
        """The halo on each axis."""
        return self.halo if isinstance(self.halo, tuple) else (self.halo,) * len(self.image_shape)

    @property
    def counts(self) -> tuple[int, ...]:
        return tuple(math.ceil(n / s) for n, s in zip(self.image_shape, self.stride))

    def __len__(self) -> int:
        return math.prod(self.counts)

    def __iter__(self) -> Iterator[Tile]:
        for index in itertools.product(*(range(n) for n in self.counts)):
            start = tuple(i * s for i, s in zip(index, self.stride))
            stop = tuple(min(a + s, n) for a, s, n in zip(start, self.stride, self.image_shape))
            yield Tile(start, stop, tuple(a - h for a, h in zip(start, self.halos)))

    def input_indices(self, tile: Tile) -> tuple[np.ndarray, ...]:
        """Mirrored source indices of the tile's input, one array per axis."""
        return tuple(
            reflect_indices(start, start + t, n)
            for start, t, n in zip(tile.in_start, self.tile_shape, self.image_shape)
        )

    @property
    def executed_output_pixels(self) -> int:
        """Output pixels the network computes for this plane (including those outside the image)."""
        return len(self) * math.prod(self.output_tile_shape)


def read_mirrored(array, index_prefix, *indices_and_axes) -> np.ndarray:
    """Read ``array`` at mirrored indices along some axes, touching only their bounding box (lazy for dask and
    zarr).

    Called as ``read_mirrored(array, prefix, y_idx, x_idx, y_axis, x_axis)`` (2D) or with the index arrays of
    all spatial axes followed by their axis numbers, e.g. ``(z_idx, y_idx, x_idx, z_axis, y_axis, x_axis)``.
    """
    n = len(indices_and_axes) // 2
    idx_list, axis_list = indices_and_axes[:n], [int(a) for a in indices_and_axes[n:]]
    index = list(index_prefix)
    for idx, axis in zip(idx_list, axis_list):
        index[axis] = slice(int(idx.min()), int(idx.max()) + 1)
    block = array[tuple(index)]
    if hasattr(block, "compute"):
        block = block.compute()
    block = np.asarray(block)
    # Axes removed by integer indexing shift the positions of the spatial axes in the block.
    for idx, axis in zip(idx_list, axis_list):
        start = int(idx.min())
        if idx[0] == start and np.all(np.diff(idx) == 1):
            continue
        in_block = axis - sum(isinstance(i, (int, np.integer)) for i in index_prefix[:axis])
        block = np.take(block, idx - start, axis=in_block)
    return block
