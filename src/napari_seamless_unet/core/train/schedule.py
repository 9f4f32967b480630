"""When a run's learning rate changes and where it stops: the schedule of a training, by steps or by time."""

from __future__ import annotations

import math

from ..errors import UNetInputError
from .config import DEFAULT_STEPS, TrainConfig


def learning_rate_factor(fraction: float, schedule: str, warmup: float) -> float:
    """The share of the peak learning rate at ``fraction`` (0..1) of a run: linear warm-up, then cosine to 2%."""
    if schedule == "constant":
        return 1.0
    if fraction < warmup:
        return max(fraction, 1e-3) / warmup
    progress = (fraction - warmup) / max(1e-9, 1.0 - warmup)
    return 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def stop_step(config: TrainConfig, step: int, planned: int | None, resumed: bool) -> int | None:
    """The step this call ends at (None: only the time budget ends it)."""
    if config.steps is not None:
        return step + int(config.steps)
    if resumed and planned is not None:
        if planned <= step:
            raise UNetInputError(
                f"{config.resume_from!r} already finished its {planned} planned steps; pass steps=N to train N "
                f"more (or a time_budget)."
            )
        return planned
    if config.time_budget is not None:
        return None
    return step + DEFAULT_STEPS
