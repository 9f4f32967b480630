"""Defaults that fit the device and the time budget: what a :class:`TrainConfig` leaves open is chosen here.

A user who gives only the task and a time budget gets a network, tile, batch and learning rate that learn
something useful within that budget on their device; whatever they set themselves wins. The choice is
recorded in the history (``history["settings"]``) and the model file, and shown by the widget and the CLI.

The rules and the figures that chose them are in ``benchmarks/README.md`` (``benchmarks/bench_quality.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from .. import shapes
from ..errors import UNetInputError
from ..presets import NETWORK_PRESETS
from .config import DEFAULT_LEARNING_RATE, TrainConfig

#: what the paper did, one name away: ``TrainConfig(preset="paper")``
PAPER = {"base_channels": 64, "depth": 4, "dropout": 0.5, "tile_size": 572, "batch_size": 1}

# CPU and MPS: a 16-channel network of depth 4 (92 pixels of context) on tiles with about 228 output pixels a
# side, so that the halo costs less than the prediction; no dropout (it only slows a short training down).
SMALL_DEVICE = {"base_channels": 16, "depth": 4, "dropout": 0.0, "output_size": 228, "batch_size": 1}
# CUDA: the paper's network on tiles of the paper's size, as many a batch as fit a quarter of the free memory.
GPU = {"base_channels": 64, "depth": 4, "dropout": 0.0, "output_size": 388}

AUTOMATIC = ("base_channels", "depth", "dropout", "tile_size", "batch_size", "learning_rate")


def resolve(
    config: TrainConfig,
    device: torch.device,
    plane_shapes: Sequence[tuple[int, int]],
    resumed: dict[str, Any] | None = None,
) -> tuple[TrainConfig, dict[str, Any]]:
    """Fill in what ``config`` leaves open (None) for ``device``.

    Parameters
    ----------
    config : TrainConfig
        As given by the user; explicit values are kept.
    device : torch.device
        The training device.
    plane_shapes : sequence of (int, int)
        The training planes' shapes: the depth is lowered until the smallest plane holds the network's context,
        and tiles are not made larger than the largest plane needs.
    resumed : dict, optional
        The architecture of a model training continues from (``UNet.config()``): it is kept.

    Returns
    -------
    config : TrainConfig
        Every architecture and schedule field set.
    settings : dict
        The resolved values, the device, and ``"automatic"``: the names chosen here rather than by the user.
    """
    chosen: dict[str, Any] = {}
    if config.preset is not None:
        if config.preset not in NETWORK_PRESETS:
            raise UNetInputError(f"preset must be one of {sorted(NETWORK_PRESETS)}, got {config.preset!r}.")
        base, depth = NETWORK_PRESETS[config.preset]
        chosen.update(base_channels=base, depth=depth)
        if config.preset == "paper":
            chosen.update(PAPER)
    elif device.type == "cuda":
        chosen.update(base_channels=GPU["base_channels"], depth=GPU["depth"], dropout=GPU["dropout"])
    else:
        chosen.update({k: SMALL_DEVICE[k] for k in ("base_channels", "depth", "dropout", "batch_size")})
    if resumed:
        chosen.update(base_channels=resumed["base_channels"], depth=resumed["depth"], dropout=resumed["dropout"])

    values = {name: getattr(config, name) for name in AUTOMATIC}
    automatic = [name for name, value in values.items() if value is None]
    for name in ("base_channels", "depth", "dropout"):
        if values[name] is None or (resumed and name in ("base_channels", "depth")):
            values[name] = chosen.get(name, PAPER[name])
    smallest = min(min(s) for s in plane_shapes)
    if config.depth is None and not resumed:
        # The context must fit the smallest image (mirroring cannot extrapolate more than the image itself).
        while values["depth"] > 1 and shapes.halo(values["depth"]) > smallest:
            values["depth"] -= 1
    depth = int(values["depth"])
    if values["tile_size"] is None:
        values["tile_size"] = chosen.get("tile_size") or _tile_size(depth, device, plane_shapes)
    if values["batch_size"] is None:
        values["batch_size"] = chosen.get("batch_size") or _batch_size(values, device)
    if values["learning_rate"] is None:
        values["learning_rate"] = DEFAULT_LEARNING_RATE[config.optimizer]
    shapes.check_input_shape((int(values["tile_size"]),) * 2, depth, what="training tile")
    resolved = dataclasses.replace(config, **values)
    settings = {**values, "device": str(device), "automatic": automatic}
    return resolved, settings


def _tile_size(depth: int, device: torch.device, plane_shapes: Sequence[tuple[int, int]]) -> int:
    """A valid training tile: about the output size of the device's rule, no more than the largest plane."""
    target = GPU["output_size"] if device.type == "cuda" else SMALL_DEVICE["output_size"]
    largest = max(min(s) for s in plane_shapes)
    return shapes.input_size_for_output(max(4, min(target, largest)), depth)


def _batch_size(values: dict[str, Any], device: torch.device) -> int:
    """1 on CPU and MPS (one tile already uses every core); on CUDA as many tiles as fit a quarter of the free
    memory, by the inference estimate times four for the activations kept for the backward pass."""
    if device.type != "cuda":
        return 1
    from ..devices import memory_budget
    from ..inference import estimate_tile_memory
    from ..model import UNet

    probe = UNet(1, 2, int(values["base_channels"]), int(values["depth"]))
    per_tile = 4 * estimate_tile_memory(probe, (int(values["tile_size"]),) * 2)
    return int(max(1, min(16, memory_budget(device) // 2 // max(1, per_tile))))
