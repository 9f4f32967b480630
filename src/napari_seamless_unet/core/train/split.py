"""Holding out validation data when the caller gives none: a strip of every plane, not whole planes.

Holding out whole planes throws training data away (with two planes, half of it) and, with one plane, leaves
nothing to validate on. Instead the last ``validation_fraction`` of each plane's longer side is held out: the
training plane is cropped before it, and the validation plane is the strip plus the network's context (read
from the real image, not mirrored), scored only on the strip.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from .config import TrainConfig
from .data import Plane

MIN_STRIP = 8  # pixels; planes too small for a strip of this size on both sides are not split


def split(planes: list[Plane], config: TrainConfig, context: int) -> tuple[list[Plane], list[Plane]]:
    """``(training, validation)`` planes: every plane loses a strip of ``config.validation_fraction`` to validation.

    Parameters
    ----------
    planes : list of Plane
        Training planes (with weight maps).
    config : TrainConfig
        ``validation_fraction``: the share of each plane's longer side held out; 0 validates on the training
        planes themselves.
    context : int
        Pixels of real image kept before the strip for the network's context (its halo).
    """
    if config.validation_fraction <= 0:
        return planes, planes
    training, validation = [], []
    for plane in planes:
        pieces = _strip(plane, config.validation_fraction, context)
        if pieces is None:
            training.append(plane)
        else:
            training.append(pieces[0])
            validation.append(pieces[1])
    if not validation:
        warnings.warn(
            "the training images are too small to hold out a validation strip; validating on the training data "
            "(pass validation=(images, labels) for an honest score).",
            UserWarning,
            stacklevel=4,
        )
        return planes, planes
    return training, validation


def _strip(plane: Plane, fraction: float, context: int) -> tuple[Plane, Plane] | None:
    h, w = plane.target.shape[-2:]  # a volume's strip runs through all its planes
    axis = 0 if h >= w else 1
    size = (h, w)[axis]
    held = round(fraction * size)
    cut = size - held
    if held < MIN_STRIP or cut < MIN_STRIP:
        return None
    start = max(0, cut - context)

    def crop(array, lo, hi):
        if array is None:
            return None
        index = [slice(None)] * array.ndim
        index[array.ndim - 2 + axis] = slice(lo, hi)
        return array[tuple(index)]

    def part(lo: int, hi: int, **changes) -> Plane:
        fields = {
            name: crop(getattr(plane, name), lo, hi)
            for name in ("image", "raw", "target", "valid", "objects", "weight")
        }
        return dataclasses.replace(plane, **fields, **changes)

    training = part(0, cut, name=f"{plane.name} (training part)")
    scored = [slice(None)] * plane.target.ndim
    scored[plane.target.ndim - 2 + axis] = slice(cut - start, size - start)
    validation = part(start, size, name=f"{plane.name} (validation strip)", scored=tuple(scored))
    # The context before the strip is seen, not scored.
    outside = np.ones(validation.target.shape, dtype=bool)
    outside[tuple(scored)] = False
    validation.valid = validation.valid & ~outside
    validation.weight = np.where(outside, 0.0, validation.weight).astype(np.float32)
    return training, validation
