"""The training history (losses, validation scores, the best step) and the run's timing statistics.

The history is a plain JSON-able dict: it is returned by :func:`~napari_seamless_unet.core.train.train`, stored
in the model file's ``metadata["history"]`` and in checkpoints, and restored on resume.
"""

from __future__ import annotations

import math
import time
from typing import Any


def new_history() -> dict[str, Any]:
    """An empty history; the loop adds the run's settings (device, tile_size, ...) and timings."""
    return {
        "step": [],
        "loss": [],
        "val_step": [],
        "val_loss": [],
        "val_iou": [],
        "val_iou_per_class": [],
        "val_ap50": [],
        "stopped": False,
        "best_step": None,
        "best_score": None,
    }


def record_step(history: dict[str, Any], step: int, loss: float) -> None:
    history["step"].append(step)
    history["loss"].append(loss)


def record_validation(history: dict[str, Any], step: int, val: dict[str, Any], task: str) -> bool:
    """Append a validation result; True when its score is the best so far (then ``best_step`` is this step)."""
    history["val_step"].append(step)
    history["val_loss"].append(val["loss"])
    history["val_iou"].append(val["iou"])
    history["val_iou_per_class"].append(val["iou_per_class"])
    if task == "instances":
        history["val_ap50"].append(val["ap50"])
    score, best = val["score"], history["best_score"]
    if score is not None and math.isfinite(score) and (best is None or score > best):
        history["best_step"], history["best_score"] = step, score
        return True
    return False


class Clock:
    """Wall time of a run, including the time trained before a resume, and the time spent per step."""

    def __init__(self, elapsed_before: float = 0.0):
        self.elapsed_before = elapsed_before
        self.started = time.perf_counter()
        self.data_seconds = 0.0  # drawing and augmenting batches
        self.step_seconds = 0.0  # whole steps, data included
        self.steps = 0

    def seconds(self) -> float:
        """Seconds since this run (not the resumed one) started."""
        return time.perf_counter() - self.started

    def out_of_time(self, budget: float | None) -> bool:
        return budget is not None and self.seconds() >= budget

    def add_step(self, started: float, data_ready: float, finished: float) -> None:
        """Count one step from its ``time.perf_counter()`` stamps."""
        self.data_seconds += data_ready - started
        self.step_seconds += finished - started
        self.steps += 1

    def stamp(self, history: dict[str, Any]) -> None:
        """Write ``steps_per_second``, ``data_time_fraction`` and ``elapsed_seconds`` into the history."""
        if self.steps:
            history["steps_per_second"] = self.steps / max(self.step_seconds, 1e-9)
            history["data_time_fraction"] = self.data_seconds / max(self.step_seconds, 1e-9)
        history["elapsed_seconds"] = self.elapsed_before + self.seconds()
