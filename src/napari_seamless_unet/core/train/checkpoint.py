"""Checkpoints: where the best model goes, what a resumable checkpoint holds, and resuming from one.

A checkpoint is a model file (:func:`~napari_seamless_unet.core.model_io.save_model`) with a ``training_state``:
the optimizer state, the step count, the history and the random state (global torch RNG, the augmentation
generator and, on CUDA, the device RNG), so that a resumed run continues exactly where the saved one was.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..errors import UNetInputError
from ..model_io import read_model_file
from .config import TrainConfig


def best_path(save_path: str | Path) -> Path:
    """``model.unet.pt`` -> ``model.best.unet.pt``."""
    path = Path(save_path)
    name = path.name
    stem = name[: -len(".unet.pt")] if name.endswith(".unet.pt") else path.stem
    return path.with_name(f"{stem}.best.unet.pt")


def read_resume(config: TrainConfig) -> dict[str, Any] | None:
    """The payload of ``config.resume_from`` (None without one), checked to be for ``config.task``."""
    if not config.resume_from:
        return None
    payload = read_model_file(config.resume_from)
    if payload["config"].get("task") != config.task:
        raise UNetInputError(
            f"{config.resume_from!r} was trained for task {payload['config'].get('task')!r} but config.task is "
            f"{config.task!r}; use the same task to resume."
        )
    return payload


def training_state(
    optimizer: torch.optim.Optimizer,
    step: int,
    history: dict[str, Any],
    generator: torch.Generator,
    device: torch.device,
    config: TrainConfig,
) -> dict[str, Any]:
    """What a checkpoint needs beyond the weights to continue training exactly."""
    return {
        "optimizer": optimizer.state_dict(),
        "step": step,
        "history": json.dumps(history, default=float),
        "rng": _rng_state(generator, device),
        "config": json.dumps(config.to_dict()),
    }


def restore(
    state: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    history: dict[str, Any],
    generator: torch.Generator,
    device: torch.device,
) -> int:
    """Load a checkpoint's training state into the optimizer, history and random state; returns its step."""
    optimizer.load_state_dict(state["optimizer"])
    history.update(json.loads(state["history"]))
    _set_rng_state(state.get("rng", {}), generator, device)
    return int(state["step"])


def _rng_state(generator: torch.Generator, device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "augment": generator.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], generator: torch.Generator, device: torch.device) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "augment" in state:
        generator.set_state(state["augment"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
