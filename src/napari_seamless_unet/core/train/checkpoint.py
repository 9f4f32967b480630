"""Checkpoints: where the best model goes, what a resumable checkpoint holds, and resuming from one.

A checkpoint is a model file (:func:`~napari_seamless_unet.core.model_io.save_model`) with a ``training_state``:
the optimizer state, the step count and the step the run was planned to end at, the history and the run's random
streams (:class:`~.network.RandomStreams`), so that a resumed run continues exactly where the saved one was.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..errors import UNetInputError
from ..model_io import read_model_file
from .config import TrainConfig
from .network import RandomStreams


def best_path(save_path: str | Path) -> Path:
    """``model.unet.pt`` -> ``model.best.unet.pt``."""
    path = Path(save_path)
    name = path.name
    stem = name[: -len(".unet.pt")] if name.endswith(".unet.pt") else path.stem
    return path.with_name(f"{stem}.best.unet.pt")


def read_resume(config: TrainConfig) -> dict[str, Any] | None:
    """The payload of ``config.resume_from`` (None without one), checked to be for ``config.task`` (and, for
    instances, ``config.instance_classes``)."""
    if not config.resume_from:
        return None
    payload = read_model_file(config.resume_from)
    if payload["config"].get("task") != config.task:
        raise UNetInputError(
            f"{config.resume_from!r} was trained for task {payload['config'].get('task')!r} but config.task is "
            f"{config.task!r}; use the same task to resume."
        )
    classes = payload["config"].get("num_classes", 2)
    if config.task == "instances" and classes != config.instance_classes:
        raise UNetInputError(
            f"{config.resume_from!r} has {classes} instance classes but config.instance_classes is "
            f"{config.instance_classes}; set instance_classes={classes} to resume it."
        )
    return payload


def recorded_precision(payload: dict[str, Any] | None, device: torch.device) -> str | None:
    """The precision ("fp32", "bf16", "fp16") a checkpoint's run trained in, where it trained on a device of this
    type; None without training state (a fine-tuning starts afresh)."""
    state = (payload or {}).get("training_state")
    if not state:
        return None
    settings = json.loads(state["history"]).get("settings") or {}
    if str(settings.get("device", "")).split(":")[0] != device.type:
        return None
    return settings.get("precision")


def training_state(
    optimizer: torch.optim.Optimizer,
    step: int,
    planned_steps: int | None,
    history: dict[str, Any],
    randomness: RandomStreams,
    config: TrainConfig,
) -> dict[str, Any]:
    """What a checkpoint needs beyond the weights to continue training exactly.

    ``planned_steps`` is the step the run was to end at (None for a run limited by time only): resuming without
    ``steps`` finishes that plan.
    """
    return {
        "optimizer": optimizer.state_dict(),
        "step": step,
        "planned_steps": -1 if planned_steps is None else int(planned_steps),
        "history": json.dumps(history, default=float),
        "rng": randomness.state(),
        "config": json.dumps(config.to_dict()),
    }


def restore(
    state: dict[str, Any], optimizer: torch.optim.Optimizer, history: dict[str, Any], randomness: RandomStreams
) -> tuple[int, int | None]:
    """Load a checkpoint's training state into the optimizer, history and random streams.

    Returns the checkpoint's step and the step its run was planned to end at (None when unknown or unlimited).
    """
    optimizer.load_state_dict(state["optimizer"])
    history.update(json.loads(state["history"]))
    randomness.load(state.get("rng", {}))
    planned = int(state.get("planned_steps", -1))
    return int(state["step"]), (planned if planned >= 0 else None)
