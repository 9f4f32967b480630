"""Training data as planes: normalised images, class targets, annotation masks and loss weight maps.

Every 2D plane of every training image becomes one :class:`Plane`. The label values are turned into class ids
here (what label 0 means depends on ``config.unlabelled``), the classes present are checked, and the paper's
weight map (or, with ``instance_classes=3``, the interior/border target and its weights) is computed once per
plane.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import axes as ax
from ..errors import UNetInputError
from ..normalization import Normalization, apply_statistics
from ..weights import (
    class_weights,
    instance_weight_map,
    interior_border_classes,
    separate_touching,
    three_class_weight_map,
)
from .config import TrainConfig


@dataclass
class Plane:
    """One 2D training or validation sample: a plane (a whole ZYX volume for a 3D network, every array below
    then with a Z axis before Y and X)."""

    image: np.ndarray  # (C, H, W) normalised float32
    raw: np.ndarray  # (C, H, W) as given, for validation through the prediction code
    target: np.ndarray  # (H, W) class ids (anything where not annotated)
    valid: np.ndarray  # (H, W) annotated pixels
    objects: np.ndarray | None  # (H, W) instance ids (instances task)
    weight: np.ndarray | None = None  # (H, W) loss weights, 0 where not annotated
    name: str = ""
    scored: tuple[slice, slice] | None = None  # validation: the region scored (the rest is context); None = all


def annotated(labels: np.ndarray, config: TrainConfig) -> np.ndarray:
    """The pixels that count in the loss: all but label 0 under ``unlabelled='ignore'`` and ``ignore_label``."""
    valid = labels != 0 if config.unlabelled == "ignore" else np.ones(labels.shape, dtype=bool)
    if config.ignore_label is not None:
        valid &= labels != int(config.ignore_label)
    return valid


def _classes(labels: np.ndarray, config: TrainConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """Target class map and (instances) object ids from raw labels."""
    shift = 1 if config.unlabelled == "ignore" else 0
    valid = annotated(labels, config)
    if config.task == "instances":
        objects = np.where(valid & (labels > shift), labels, 0)
        return (objects > 0).astype(np.int64), objects
    return np.where(valid, labels - shift, 0), None


def make_planes(pairs, config: TrainConfig, normalization: Normalization, role: str) -> list[Plane]:
    """Every 2D plane of the checked ``(image, labels, axes)`` pairs, normalised as prediction will see it."""
    out = []
    unit = ax.unit_axes(config.ndim)  # a 3D network trains on volumes: its "planes" are whole ZYX volumes
    for i, (image, labels, axes) in enumerate(pairs):
        for p, plane in enumerate(ax.iter_planes(image.shape, axes, unit)):
            # Per plane, exactly as prediction normalises (see Normalization.plane_statistics).
            offset, scale = normalization.plane_statistics(image, axes, plane)
            raw = ax.to_cyx(image[ax.image_index(axes, plane, slice(None), slice(None))], axes, unit)
            lab = labels[ax.output_index(axes, plane, slice(None), slice(None))]
            target, objects = _classes(lab, config)
            out.append(
                Plane(
                    image=apply_statistics(raw, offset, scale),
                    raw=raw,
                    target=target,
                    valid=annotated(lab, config),
                    objects=objects,
                    name=f"{role} image {i}" + (f" {_unit_name(unit)} {p}" if ax.stack_axes(axes, unit) else ""),
                )
            )
    return out


def _unit_name(unit: str) -> str:
    return "volume" if unit == "ZYX" else "plane"


def check_classes(planes: list[Plane], config: TrainConfig, num_classes: int | None) -> int:
    """The network's class count; raises if the annotated classes cannot train it (one class only, too many)."""
    if config.task == "instances":
        fg = any((p.target[p.valid] == 1).any() for p in planes)
        bg = any((p.target[p.valid] == 0).any() for p in planes)
        if not (fg and bg):
            missing = "objects" if not fg else "background"
            hint = "label 2 or more" if config.unlabelled == "ignore" else "a positive label"
            bg_hint = "label 1" if config.unlabelled == "ignore" else "label 0"
            raise UNetInputError(
                f"the training labels contain no {missing}; annotate some {missing} "
                f"({hint if missing == 'objects' else bg_hint})."
            )
        return int(config.instance_classes)
    largest = max(int(p.target[p.valid].max()) for p in planes)
    present = set().union(*(np.unique(p.target[p.valid]).tolist() for p in planes))
    if len(present) < 2:
        raise UNetInputError(
            f"the training labels contain only class {present.pop()}; semantic training needs at least two classes "
            f"annotated."
        )
    if num_classes is None:
        num_classes = config.num_classes or max(2, largest + 1)
    if largest >= num_classes:
        raise UNetInputError(
            f"the labels contain class {largest} but the network has {num_classes} classes (0..{num_classes - 1}); "
            f"set num_classes={largest + 1} or relabel."
        )
    return num_classes


def weight_map(plane: Plane, config: TrainConfig, num_classes: int) -> np.ndarray:
    """The plane's loss weights (0 where not annotated).

    For instances this also sets ``plane.target`` to the foreground with a background gap between touching
    objects (:func:`~napari_seamless_unet.core.weights.separate_touching`), which the border weights emphasise;
    with ``instance_classes=3``, to background, interior and border
    (:func:`~napari_seamless_unet.core.weights.interior_border_classes`).
    """
    # 3D: distances of the weight map in physical units (in-plane pixels); the gap and border bands stay one
    # voxel across every face, which is what a 3D model's post-processing gives back (instances.StackLabeller)
    spacing = config.voxel_size if config.ndim == 3 else None
    if config.task == "instances" and config.instance_classes == 3:
        plane.target = interior_border_classes(plane.objects, plane.valid)
        return three_class_weight_map(
            plane.target, plane.objects, plane.valid, config.w0, config.sigma, config.balance_classes, spacing=spacing
        )
    if config.task == "instances":
        objects = separate_touching(plane.objects)
        plane.target = (objects > 0).astype(np.int64)
        return instance_weight_map(
            objects, plane.valid, config.w0, config.sigma, config.balance_classes, spacing=spacing
        )
    if config.balance_classes:
        return class_weights(plane.target, plane.valid, num_classes)
    return plane.valid.astype(np.float32)
