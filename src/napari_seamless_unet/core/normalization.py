"""Intensity normalisation that travels with the model, so that training and prediction agree."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .errors import UNetInputError

MODES = ("percentile", "minmax", "none")
# Percentiles of very large (lazy) images are estimated from a strided subsample of about this many values
# per channel: exact enough for intensity scaling, and it keeps a 20000x20000 zarr image out of memory.
_MAX_SAMPLES = 1 << 22


@dataclass(frozen=True)
class Normalization:
    """How image intensities are mapped before the network.

    Parameters
    ----------
    mode : {"percentile", "minmax", "none"}
        ``percentile`` maps the ``low`` and ``high`` percentiles of each channel to 0 and 1 (robust to hot
        pixels); ``minmax`` maps min and max; ``none`` passes intensities through as float32.
    low, high : float
        Percentiles for ``mode="percentile"``.
    """

    mode: str = "percentile"
    low: float = 1.0
    high: float = 99.8

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"normalization mode must be one of {MODES}, got {self.mode!r}")
        if not 0.0 <= self.low < self.high <= 100.0:
            raise ValueError(f"need 0 <= low < high <= 100 percentiles, got low={self.low}, high={self.high}")

    @classmethod
    def from_any(cls, value: Normalization | dict | None) -> Normalization:
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return cls(**value)
        if isinstance(value, str):
            return cls(mode=value)
        raise TypeError(f"normalization must be a Normalization, dict or mode name, got {type(value).__name__}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def statistics(self, image, channel_axis: int | None) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel offset and scale for ``image`` (numpy, dask or zarr), estimated from a bounded sample.

        Returns ``(offset, scale)`` arrays of length n_channels so that ``(x - offset) * scale`` is normalised.
        """
        n_channels = 1 if channel_axis is None else image.shape[channel_axis]
        if self.mode == "none":
            return np.zeros(n_channels, np.float32), np.ones(n_channels, np.float32)
        return self._from_sample(np.asarray(_subsample(image, channel_axis), dtype=np.float64))

    def plane_statistics(self, image, axes: str, plane: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel ``(offset, scale)`` of one 2D plane (or 3D volume) of ``image`` (axes like "TZCYX").

        Every plane of a stack or time-lapse is normalised on its own, as in training, so that a plane is
        segmented the same whether it comes alone or in a stack, and bleaching over time does not matter. Only a
        strided sample of the plane is read (a zarr plane is never loaded whole).
        """
        if self.mode == "none":
            n_channels = image.shape[axes.index("C")] if "C" in axes else 1
            return np.zeros(n_channels, np.float32), np.ones(n_channels, np.float32)
        sample = image[plane_sample_index(image.shape, axes, plane)]
        if hasattr(sample, "compute"):  # dask
            sample = sample.compute()
        return self.from_plane_sample(sample, axes, plane)

    def from_plane_sample(self, sample, axes: str, plane: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
        """``(offset, scale)`` from what ``image[plane_sample_index(image.shape, axes, plane)]`` read: the same
        statistics as :meth:`plane_statistics`, for a caller (a dask task) that reads the sample itself."""
        sample = np.asarray(sample, dtype=np.float64)
        kept = [a for a in axes if a not in plane]
        n_channels = sample.shape[kept.index("C")] if "C" in kept else 1
        if self.mode == "none":
            return np.zeros(n_channels, np.float32), np.ones(n_channels, np.float32)
        if "C" in kept:
            sample = np.moveaxis(sample, kept.index("C"), 0)
        return self._from_sample(sample.reshape(n_channels, -1))

    def _from_sample(self, sample: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(offset, scale)`` from a (C, N) float64 sample."""
        if not np.all(np.isfinite(sample)):
            raise UNetInputError(
                "the image contains NaN or Inf values; replace them first (e.g. numpy.nan_to_num) or mask them out."
            )
        if self.mode == "percentile":
            lo, hi = np.percentile(sample, [self.low, self.high], axis=1)
            lo, hi = _sparse_fallback(sample, lo, hi, self.low, self.high)
        else:
            lo, hi = sample.min(axis=1), sample.max(axis=1)
        span = hi - lo
        # A constant channel carries no information: map it to 0 instead of dividing by zero.
        scale = np.where(span > 0, 1.0 / np.where(span > 0, span, 1.0), 0.0)
        return lo.astype(np.float32), scale.astype(np.float32)


def _sparse_fallback(sample: np.ndarray, lo: np.ndarray, hi: np.ndarray, low: float, high: float):
    """Keep a sparse channel (mostly one value, a few bright objects) from collapsing to a constant.

    When both percentiles fall on the background value, the upper one is taken among the pixels above it instead:
    still robust to a few hot pixels, and the objects keep their contrast.
    """
    lo, hi = lo.copy(), hi.copy()
    for c in range(sample.shape[0]):
        if hi[c] > lo[c]:
            continue
        above = sample[c][sample[c] > lo[c]]
        if above.size == 0:
            continue  # truly constant
        new_hi = float(np.percentile(above, high))
        if new_hi <= lo[c]:
            new_hi = float(above.max())
        warnings.warn(
            f"channel {c} is almost all one value ({lo[c]:g}): its {low:g} and {high:g} percentiles are equal, so "
            f"it is scaled from {lo[c]:g} to the {high:g} percentile of its other pixels ({new_hi:g}) instead.",
            UserWarning,
            stacklevel=4,
        )
        hi[c] = new_hi
    return lo, hi


def plane_sample_index(shape, axes: str, plane: dict[str, int]) -> tuple:
    """The index of the strided sample of one plane (or volume: ``plane`` without Z) that its statistics are
    taken from: every ``step``-th pixel along each spatial axis, about :data:`_MAX_SAMPLES` values a channel."""
    spatial = [shape[i] for i, a in enumerate(axes) if a != "C" and a not in plane]
    step = max(1, int(np.ceil((np.prod(spatial, dtype=np.float64) / _MAX_SAMPLES) ** (1 / len(spatial)))))
    return tuple(plane[a] if a in plane else (slice(None) if a == "C" else slice(None, None, step)) for a in axes)


def apply_statistics(tile: np.ndarray, offset: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Normalise a ``(C, ...)`` tile with per-channel statistics; returns float32."""
    shape = (-1,) + (1,) * (tile.ndim - 1)
    return (tile.astype(np.float32, copy=False) - offset.reshape(shape)) * scale.reshape(shape)


def normalise_tile(tile: np.ndarray, offset: np.ndarray, scale: np.ndarray, name: str, plane) -> np.ndarray:
    """:func:`apply_statistics` of a tile read for prediction, refusing NaN or Inf first (they would spread
    through every convolution): ``name`` and ``plane`` say where."""
    if tile.dtype.kind == "f" and not np.all(np.isfinite(tile)):
        raise UNetInputError(
            f"{name} contains NaN or Inf values (plane {plane or 0}); replace them first, e.g. numpy.nan_to_num."
        )
    return apply_statistics(tile, offset, scale)


def _subsample(image, channel_axis: int | None) -> np.ndarray:
    """A strided subsample of ``image`` as a (C, N) array, reading at most about _MAX_SAMPLES values a channel."""
    ndim = len(image.shape)
    spatial_axes = [a for a in range(ndim) if a != channel_axis]
    size = int(np.prod([image.shape[a] for a in spatial_axes])) if spatial_axes else 1
    step = 1
    while size / step ** len(spatial_axes) > _MAX_SAMPLES:
        step += 1
    index = tuple(slice(None) if a == channel_axis else slice(None, None, step) for a in range(ndim))
    sample = image[index]
    if hasattr(sample, "compute"):  # dask
        sample = sample.compute()
    sample = np.asarray(sample)
    if channel_axis is None:
        return sample.reshape(1, -1)
    return np.moveaxis(sample, channel_axis, 0).reshape(sample.shape[channel_axis], -1)
