"""Holding out validation planes when the caller gives no validation data."""

from __future__ import annotations

import numpy as np

from .config import TrainConfig
from .data import Plane


def split(planes: list[Plane], config: TrainConfig) -> tuple[list[Plane], list[Plane]]:
    """``(training, validation)`` planes: ``config.validation_fraction`` of them, chosen by ``config.seed``.

    At least one plane is held out and at least one kept; with a single plane (or a fraction of 0) the same
    planes serve for both, so there is always something to validate on.
    """
    n = len(planes)
    if n < 2 or config.validation_fraction <= 0:
        return planes, planes
    n_val = min(n - 1, max(1, round(config.validation_fraction * n)))
    order = np.random.default_rng(config.seed).permutation(n)
    val = set(order[:n_val].tolist())
    return [p for i, p in enumerate(planes) if i not in val], [p for i, p in enumerate(planes) if i in val]
