"""Pairing image files with their label files by name, and loading the pairs for training."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..core.errors import UNetInputError
from .read import image_stem, list_images, open_image

# File-name endings that mark a label image of the same stem ("cells_01_labels.tif" labels "cells_01.tif").
LABEL_ENDINGS = ("_labels", "-labels", ".labels", "_label", "-label", "_masks", "_mask", "-mask", "_gt", "_seg")


def pair_images_and_labels(images: Sequence[Path], labels: Sequence[Path]) -> list[tuple[Path, Path]]:
    """Pair image files with label files by name.

    A label file belongs to the image of the same stem, with or without one of :data:`LABEL_ENDINGS`:
    ``a.tif`` pairs with ``a.tif``, ``a_labels.tif``, ``a-mask.tiff``, ``a_gt.zarr``...

    Parameters
    ----------
    images, labels : sequences of Path
        The image files and the label files.

    Returns
    -------
    list of (image, labels) pairs
        In the order of ``images``. When not every image finds its own labels by name and both lists are
        equally long, they are paired in the order given instead.

    Raises
    ------
    UNetInputError
        When names do not pair every image and the lists differ in length.
    """
    by_stem: dict[str, Path] = {}
    for label in labels:
        stem = image_stem(label)
        by_stem.setdefault(stem, label)
        for ending in LABEL_ENDINGS:
            if stem.lower().endswith(ending):
                by_stem.setdefault(stem[: -len(ending)], label)
    pairs = [(image, by_stem.get(image_stem(image))) for image in images]
    if all(label is not None for _, label in pairs) and len({label for _, label in pairs}) == len(pairs):
        return pairs  # type: ignore[return-value]
    if len(images) == len(labels):
        return list(zip(images, labels))
    missing = [image.name for image, label in pairs if label is None]
    raise UNetInputError(
        f"{len(images)} image(s) but {len(labels)} label image(s), and no label file matches "
        f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} by name; name label files like their "
        f"images (e.g. cells.tif and cells_labels.tif) or give the same number of each."
    )


def _whole_number_labels(label, name: str) -> np.ndarray:
    """``label`` as an integer array; float labels holding whole numbers only are converted."""
    label = np.asarray(label)
    if label.dtype.kind in "iub":
        return label
    if label.dtype.kind == "f" and np.all(np.isfinite(label)) and np.all(label == np.round(label)):
        return label.astype(np.int64)
    raise UNetInputError(
        f"label image {name!r} has dtype {label.dtype}; labels must be whole numbers "
        f"(0 = background/unlabelled, 1, 2, ... objects or classes)."
    )


def load_pairs(
    images: str | os.PathLike, labels: str | os.PathLike, what: str = "training"
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Read images and their label images into memory, paired by :func:`pair_images_and_labels`.

    Parameters
    ----------
    images, labels : str or path-like
        An image file and its label file, or folders of them.
    what : str
        What the images are for, in error messages (``"training"``, ``"validation"``).

    Returns
    -------
    (images, labels)
        Two lists of numpy arrays, pair by pair; labels are integer arrays.

    Raises
    ------
    UNetInputError
        When a path is missing, files do not pair, a file cannot be read, or labels are not whole numbers.
    """
    pairs = pair_images_and_labels(list_images(images, f"{what} image"), list_images(labels, f"{what} label"))
    image_arrays, label_arrays = [], []
    for image_path, label_path in pairs:
        image, _ = open_image(image_path, lazy=False)
        label, _ = open_image(label_path, lazy=False)
        label_arrays.append(_whole_number_labels(label, label_path.name))
        image_arrays.append(np.asarray(image))
    return image_arrays, label_arrays
