"""A run's inputs made ready: every pair and class checked, the settings resolved, planes with weight maps.

:func:`prepare` does all checks before the first slow step (the weight maps), so a mistake in the tenth label
image is reported at once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from .. import shapes
from ..devices import resolve_device
from ..normalization import Normalization
from .checkpoint import recorded_precision
from .config import TrainConfig
from .data import Plane, check_classes, make_planes, weight_map
from .defaults import fits_budget_by_timing, network_geometry, resolve
from .inputs import check_pairs, check_validation
from .lineage import data_summary
from .scale import object_diameter
from .split import split


@dataclass
class RunData:
    """A run's checked inputs, ready to train on, and the settings resolved for them."""

    planes: list[Plane]
    val_planes: list[Plane]
    in_channels: int
    num_classes: int
    normalization: Normalization
    device: torch.device
    config: TrainConfig  # every architecture and schedule field set (train.defaults)
    settings: dict[str, Any]
    summary: dict[str, Any]  # what the run trains on (train.lineage.data_summary), for the model file

    @property
    def tile(self) -> int:
        return int(self.config.tile_size)

    @property
    def tile_shape(self) -> tuple[int, ...]:
        """The training input tile: (Y, X), or (Z, Y, X) for a 3D network."""
        return tuple(self.settings.get("tile_shape") or (self.tile, self.tile))


def prepare(images, labels, config: TrainConfig, validation, names, payload: dict | None) -> RunData:
    """Check all pairs, then the classes, then resolve the settings, before the first slow step (weight maps)."""
    resumed = payload["config"] if payload else None
    train_pairs, in_channels = check_pairs(
        images, labels, config, "training", resumed["in_channels"] if resumed else None, names
    )
    val_pairs = check_validation(validation, config, in_channels)
    normalization = Normalization.from_any(resumed["normalization"] if resumed else config.normalization)
    planes = make_planes(train_pairs, config, normalization, "training")
    val_planes = make_planes(val_pairs, config, normalization, "validation") if val_pairs else None
    num_classes = check_classes(planes, config, resumed["num_classes"] if resumed else None)
    if val_planes:
        check_classes(val_planes, config, num_classes)
    device = resolve_device(config.device)
    recorded = recorded_precision(payload, device)
    if config.precision == "auto" and recorded:
        config = dataclasses.replace(config, precision=recorded)  # a resumed run trains as it began
    # Labelling the objects is only worth it where the budget rule will use their size.
    diameter = object_diameter(planes) if fits_budget_by_timing(config, device, resumed) else None
    plane_shapes = [p.target.shape for p in planes]
    config, settings = resolve(config, device, plane_shapes, resumed, (in_channels, num_classes), diameter)
    for plane in planes + (val_planes or []):
        shapes.check_context(plane.target.shape[-2:], int(config.depth), plane.name)

    summary = data_summary(planes, names)
    # The work starts here: weight maps once per plane.
    for plane in planes + (val_planes or []):
        plane.weight = weight_map(plane, config, num_classes)
    if val_planes is None:
        planes, val_planes = split(planes, config, network_geometry(config).halo[-1])
    return RunData(planes, val_planes, in_channels, num_classes, normalization, device, config, settings, summary)
