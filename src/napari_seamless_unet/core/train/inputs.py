"""Checking training inputs: image/label pairs, their axes, dtypes, values and channel counts.

Every check runs before any work, so a mistake in the tenth label image is reported at once, not after an hour of
training; each message names the pair (by index or by the name the caller gave) and the fix.
"""

from __future__ import annotations

import numpy as np

from .. import axes as ax
from .. import shapes
from ..errors import UNetInputError
from .config import TrainConfig
from .data import annotated


def _as_list(data, what: str) -> list:
    if data is None:
        raise UNetInputError(f"no {what} given; pass a list of numpy arrays.")
    if hasattr(data, "shape") and hasattr(data, "dtype"):
        return [data]
    data = list(data)
    if not data:
        raise UNetInputError(f"{what} is an empty list; pass at least one image with its labels.")
    return data


def _infer_axes(image_shape: tuple, label_shape: tuple, axes: str | None, name: str) -> str:
    if axes is not None:
        axes = str(axes).upper().replace("S", "C")
        n_channels = image_shape[axes.index("C")] if "C" in axes and len(axes) == len(image_shape) else 1
        return ax.resolve_axes(image_shape, axes, n_channels, name)
    if image_shape == label_shape:
        return ax.default_axes(image_shape, 1)
    if len(image_shape) == len(label_shape) + 1 and 2 <= len(label_shape) <= 4:
        spatial = ax.default_axes(label_shape, 1)
        for k in (len(image_shape) - 1, len(image_shape) - 3):
            if image_shape[:k] + image_shape[k + 1 :] == label_shape:
                return spatial[:k] + "C" + spatial[k:]
    raise UNetInputError(
        f"{name} has shape {image_shape} but {name.replace('image', 'labels')} has shape {label_shape}; they must "
        f"cover the same pixels (labels have the image's shape without its channel axis). Check that image and "
        f"labels belong together, crop one to match, or pass axes=... (e.g. 'YXC' for RGB)."
    )


def _check_pair(image, labels, axes: str | None, index: int, config: TrainConfig, role: str, names=None):
    """Validate one image/labels pair; returns (image, labels, axes) as numpy arrays."""
    name = f"{role} image {index}"
    lname = f"{role} labels {index}"
    if names is not None:  # e.g. layer names from the viewer: more useful than an index
        name, lname = f"{role} image {names[index]!r}", f"{role} labels of {names[index]!r}"
    image = np.asarray(image)
    labels = np.asarray(labels)
    ax.check_image_dtype(image, name)
    if labels.dtype.kind not in "biuf":
        raise UNetInputError(
            f"{lname} has dtype {labels.dtype}, which is not a label image; labels must be integers "
            f"(0 = background, 1, 2, ... = objects or classes). Convert them, e.g. labels.astype('int32')."
        )
    axes = _infer_axes(image.shape, labels.shape, axes, name)
    if config.ndim == 3 and "Z" not in axes:
        raise UNetInputError(
            f"{name} of shape {image.shape} (axes {axes!r}) has no Z axis, but ndim=3 trains a 3D network on "
            f"volumes; give volumes (axes with Z, e.g. 'ZYX'), or train a 2D network (ndim=2)."
        )
    spatial = tuple(n for n, a in zip(image.shape, axes, strict=True) if a != "C")
    if spatial != labels.shape:
        raise UNetInputError(
            f"{name} has shape {image.shape} (axes {axes!r}, spatial {spatial}) but {lname} has shape "
            f"{labels.shape}; they must cover the same pixels. Crop or resample one of them to match."
        )
    if image.dtype.kind == "f" and not np.all(np.isfinite(image)):
        raise UNetInputError(f"{name} contains NaN or Inf values; replace them first, e.g. numpy.nan_to_num(image).")
    if labels.dtype.kind == "f" and (not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels))):
        raise UNetInputError(
            f"{lname} has non-integer values (float labels such as 0.5 or NaN): labels must be whole numbers. "
            f"Use a label image, or round it: numpy.round(labels).astype('int32')."
        )
    if labels.size and labels.min() < 0:
        raise UNetInputError(
            f"{lname} has negative values (minimum {labels.min()}); labels must be 0 (background or unlabelled) "
            f"or positive ids. Shift or relabel them, e.g. skimage.segmentation.relabel_sequential."
        )
    labels = labels.astype(np.int64)
    if config.depth is not None:  # an automatic depth is chosen to fit the smallest image (train.defaults)
        shapes.check_context(labels.shape[-2:], int(config.depth), name)
    valid = annotated(labels, config)
    if not valid.any():
        raise UNetInputError(
            f"{lname} has no annotated pixels (all {'0' if config.unlabelled == 'ignore' else 'ignored'}); "
            f"paint some labels first, or leave this image out."
        )
    if config.unlabelled == "background":
        values = np.unique(labels[valid])
        if values.size == 1:
            what = "empty: all 0, no objects" if values[0] == 0 else f"all {values[0]}: no background (0)"
            raise UNetInputError(
                f"{lname} is {what}. Training needs {'objects' if values[0] == 0 else 'background'} too: paint "
                f"them, or use unlabelled='ignore' for sparse annotation (1 = background, 2, 3, ... = objects)."
            )
    unit = ax.unit_axes(config.ndim)
    for p, plane in enumerate(ax.iter_planes(image.shape, axes, unit)):
        block = image[ax.image_index(axes, plane, slice(None), slice(None))]
        if block.size and block.min() == block.max():
            where = f" {'volume' if config.ndim == 3 else 'plane'} {p}" if ax.stack_axes(axes, unit) else ""
            raise UNetInputError(
                f"{name}{where} is constant (every pixel {block.flat[0]}); it carries no information to learn from. "
                f"Remove it or check that the right layer was chosen."
            )
    return image, labels, axes


def check_pairs(images, labels, config: TrainConfig, role: str, in_channels: int | None, names=None):
    """Check every pair and that all have ``in_channels`` channels (the first pair's when None).

    Returns ``([(image, labels, axes), ...], in_channels)``.
    """
    images, labels = _as_list(images, f"{role} images"), _as_list(labels, f"{role} labels")
    if names is not None and len(names) != len(images):
        raise UNetInputError(f"got {len(names)} names for {len(images)} {role} images; give one name per image.")
    if len(images) != len(labels):
        raise UNetInputError(
            f"got {len(images)} {role} images but {len(labels)} label images; pass one label image per image."
        )
    pairs = []
    for i, (image, lab) in enumerate(zip(images, labels, strict=True)):
        image, lab, axes = _check_pair(image, lab, config.axes, i, config, role, names)
        channels = image.shape[axes.index("C")] if "C" in axes else 1
        if in_channels is None:
            in_channels = channels
        elif channels != in_channels:
            label = f"{names[i]!r}" if names is not None else str(i)
            raise UNetInputError(
                f"{role} image {label} has {channels} channel(s) (shape {image.shape}, axes {axes!r}) but the network "
                f"takes {in_channels}; all images need the same channels as the first one (or the resumed model). "
                f"Convert them, or pass axes=... if the channel axis was guessed wrongly."
            )
        pairs.append((image, lab, axes))
    return pairs, in_channels


def check_validation(validation, config: TrainConfig, in_channels: int) -> list | None:
    """Check the caller's validation data ``(images, labels)`` like training pairs; None when not given."""
    if validation is None:
        return None
    if not isinstance(validation, (tuple, list)) or len(validation) != 2:
        raise UNetInputError("validation must be a pair (images, labels) of lists of arrays.")
    return check_pairs(validation[0], validation[1], config, "validation", in_channels)[0]
