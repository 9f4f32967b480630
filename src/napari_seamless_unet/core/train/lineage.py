"""Fine-tuning: the model a run starts from (``train(..., init=...)``) and the lineage recorded in the model file.

A run that starts from a model keeps what makes the model's outputs mean something: its architecture, input
channels, classes, task and normalisation. It gets a new optimizer and a new learning-rate schedule over this
run's steps or time budget. The file it writes records where it came from: ``metadata["lineage"]`` lists its
ancestors, oldest first, each with its name, the SHA-256 of its weights, when it was made, the steps it trained
and a summary of its training data; ``metadata["training_data"]`` summarises the data of the run itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ModelFileError, UNetInputError
from ..model import UNet
from .config import TrainConfig

_DEFAULTS = TrainConfig()


def weights_digest(state_dict: dict) -> str:
    """SHA-256 of a state dict's tensors (names, dtypes, shapes and bytes): the identity of a set of weights."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        if tensor.dtype == torch.bfloat16:  # no numpy dtype: its float32 values are exact
            tensor = tensor.float()
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def data_summary(planes, names=None) -> dict[str, Any]:
    """What a run trained on: counts, shapes, annotated pixels and a SHA-256 of the images and targets."""
    digest = hashlib.sha256()
    annotated = 0
    for plane in planes:
        digest.update(np.ascontiguousarray(plane.raw, dtype=np.float32).tobytes())
        target = plane.objects if plane.objects is not None else plane.target
        digest.update(np.ascontiguousarray(np.where(plane.valid, target, -1), dtype=np.int64).tobytes())
        annotated += int(plane.valid.sum())
    summary = {
        "planes": len(planes),
        "plane_shapes": [list(s) for s in sorted({tuple(p.target.shape) for p in planes})],
        "annotated_pixels": annotated,
        "sha256": digest.hexdigest(),
    }
    if names is not None:
        summary["names"] = [str(n) for n in names]
    return summary


def resolve_init(init, config: TrainConfig) -> tuple[dict[str, Any], TrainConfig]:
    """The payload (constructor arguments, weights, metadata) of the model to start from, and ``config`` adapted
    to it: task, instance classes, dimensions and (when unset) voxel size are the model's.

    Parameters
    ----------
    init : UNet, str or path
        A network, a model file (``.unet.pt`` or a bioimage.io package), or the name of a starter model
        (:func:`~napari_seamless_unet.core.starters.starter_models`).
    config : TrainConfig
        The run's settings. A field set to something other than its default that contradicts the model is an
        error (a semantic model cannot be fine-tuned as an instance model); fields left at their defaults follow
        the model.

    Raises
    ------
    UNetInputError
        For an ``init`` that is neither, for ``resume_from`` given too, and for settings the model contradicts.
    """
    if config.resume_from:
        raise UNetInputError(
            "give either init= (start a new run from a model's weights) or config.resume_from (continue an "
            "interrupted run), not both."
        )
    model, source = _as_model(init)
    arch = model.config
    task = arch.get("task", "semantic")
    classes = int(arch["num_classes"])
    changes: dict[str, Any] = {}
    _follow(config, "task", task, changes, f"the model to start from ({source}) is a {task} model")
    if task == "instances":
        _follow(config, "instance_classes", classes, changes, f"{source} has {classes} instance classes")
    elif config.num_classes not in (None, classes):
        raise UNetInputError(
            f"the model to start from ({source}) has {classes} classes but num_classes={config.num_classes}; "
            f"leave num_classes unset to keep the model's classes."
        )
    _follow(config, "ndim", int(arch.get("ndim", 2)), changes, f"{source} is a {arch.get('ndim', 2)}D network")
    if config.voxel_size is None and arch.get("voxel_size") is not None:
        changes["voxel_size"] = tuple(arch["voxel_size"])
    config = dataclasses.replace(config, **changes)
    payload = {
        "config": arch,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "metadata": dict(getattr(model, "metadata", None) or {}),
        "parent": parent_entry(model.state_dict(), getattr(model, "metadata", None), source),
    }
    return payload, config


def _follow(config: TrainConfig, name: str, value, changes: dict, why: str) -> None:
    given = getattr(config, name)
    if given == value:
        return
    if given != getattr(_DEFAULTS, name):
        raise UNetInputError(f"{why}, but the config asks for {name}={given!r}; leave {name} at its default.")
    changes[name] = value


def _as_model(init) -> tuple[UNet, str]:
    from ..model_io import load_model
    from ..starters import STARTERS, starter_path

    if isinstance(init, UNet):
        return init, getattr(init, "source_path", None) or "an in-memory model"
    if isinstance(init, (str, os.PathLike)):
        name = str(init)
        if name in STARTERS and not Path(name).exists():
            return load_model(starter_path(name)), f"starter model {name!r}"
        try:
            return load_model(init), str(init)
        except ModelFileError as err:
            known = ", ".join(repr(n) for n in STARTERS)
            raise UNetInputError(f"cannot start from {name!r}: {err} (starter models: {known}).") from None
    raise UNetInputError(
        f"init must be a UNet, a model file or a starter model's name, got {type(init).__name__}; e.g. "
        f"init='nuclei' or init='path/to/model.unet.pt'."
    )


def parent_entry(state_dict: dict, metadata: dict | None, source: str) -> dict[str, Any]:
    """The lineage entry of a model (its weights and metadata) as the parent of a new run."""
    meta = dict(metadata or {})
    steps = (meta.get("history") or {}).get("step") or []
    return {
        "model": source,
        "weights_sha256": weights_digest(state_dict),
        "created": meta.get("created"),
        "steps": int(steps[-1]) if steps else None,
        "training_data": meta.get("training_data"),
        "starter": meta.get("starter"),
    }


def lineage_of(payload: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The lineage a run records: its parent's lineage and the parent itself when starting from a model; the
    checkpoint's own lineage when resuming; nothing for a run from random weights."""
    if not payload:
        return []
    earlier = list((payload.get("metadata") or {}).get("lineage") or [])
    if payload.get("parent") is not None:
        return [*earlier, payload["parent"]]
    return earlier
