"""The weight map of the U-Net paper: class balance plus a border term that separates touching objects.

``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 sigma**2))`` where ``w_c`` balances the class frequencies
and ``d1``, ``d2`` are the distances of a background pixel to the nearest and second-nearest object (Ronneberger
et al. 2015, eq. 2). The border term is computed object by object inside each object's bounding box grown by the
distance beyond which the term is negligible, keeping the two smallest distances per pixel, so the cost grows
with the objects' area, not with (number of objects) x (image size).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage


def distance_cutoff(w0: float = 10.0, sigma: float = 5.0, tolerance: float = 1e-3) -> float:
    """Largest ``d1 + d2`` for which the border term still exceeds ``tolerance`` (absolute weight).

    Beyond it the term ``w0 * exp(-(d1 + d2)**2 / (2 sigma**2))`` is below ``tolerance`` and is treated as 0;
    since ``d1 <= d2``, both distances of every pixel that matters are below this cutoff too.
    """
    if w0 <= tolerance or sigma <= 0:
        return 0.0
    return float(sigma * math.sqrt(2.0 * math.log(w0 / tolerance)))


def _distance(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance of each pixel to the nearest zero of ``mask``."""
    return ndimage.distance_transform_edt(mask).astype(np.float32)


def two_nearest_distances(objects: np.ndarray, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """Distances ``d1 <= d2`` of every pixel to its nearest and second-nearest object.

    Parameters
    ----------
    objects : 2D int array
        0 = no object, each positive value one object.
    cutoff : float
        Distances beyond ``cutoff`` are not computed and come back as ``inf``.

    Returns
    -------
    d1, d2 : float32 arrays
        Pixels inside an object have distance 0 to it.
    """
    objects = np.asarray(objects)
    d1 = np.full(objects.shape, np.inf, dtype=np.float32)
    d2 = np.full(objects.shape, np.inf, dtype=np.float32)
    if not objects.any():
        return d1, d2
    ids, dense = np.unique(objects, return_inverse=True)
    dense = dense.reshape(objects.shape).astype(np.int32)
    if ids[0] != 0:
        dense += 1
    grow = math.ceil(cutoff) + 1
    h, w = objects.shape
    for index, box in enumerate(ndimage.find_objects(dense), start=1):
        if box is None:
            continue
        y0, y1 = max(0, box[0].start - grow), min(h, box[0].stop + grow)
        x0, x1 = max(0, box[1].start - grow), min(w, box[1].stop + grow)
        crop = dense[y0:y1, x0:x1]
        # The whole object lies inside the crop, so distances to it are exact there; outside they exceed cutoff.
        d = _distance(crop != index)
        d[d > cutoff] = np.inf
        c1, c2 = d1[y0:y1, x0:x1], d2[y0:y1, x0:x1]
        closer = d < c1
        c2[...] = np.where(closer, c1, np.minimum(c2, d))
        c1[...] = np.where(closer, d, c1)
    return d1, d2


def border_weights(
    objects: np.ndarray, w0: float = 10.0, sigma: float = 5.0, background: np.ndarray | None = None
) -> np.ndarray:
    """The separation term ``w0 * exp(-(d1 + d2)**2 / (2 sigma**2))`` on background pixels, 0 elsewhere.

    Parameters
    ----------
    objects : 2D int array
        Object ids (0 = none).
    w0, sigma : float
        Height and width of the term (paper: 10 and 5 pixels).
    background : 2D bool array, optional
        Pixels that receive the term; default ``objects == 0``. (Unannotated pixels are excluded by the caller.)
    """
    objects = np.asarray(objects)
    if background is None:
        background = objects == 0
    out = np.zeros(objects.shape, dtype=np.float32)
    if w0 <= 0 or sigma <= 0:
        return out
    d1, d2 = two_nearest_distances(objects, distance_cutoff(w0, sigma))
    s = d1 + d2
    finite = background & np.isfinite(s)
    out[finite] = w0 * np.exp(-(s[finite] ** 2) / (2.0 * sigma**2))
    return out


def class_weights(classes: np.ndarray, valid: np.ndarray, num_classes: int) -> np.ndarray:
    """``w_c``: per-pixel weights that give every class present the same total weight (mean 1 over ``valid``).

    Pixels outside ``valid`` get 0.
    """
    counts = np.bincount(classes[valid].ravel(), minlength=num_classes).astype(np.float64)
    present = counts > 0
    per_class = np.zeros(max(num_classes, counts.size), dtype=np.float32)
    if present.any():
        per_class[present] = counts.sum() / (present.sum() * counts[present])
    out = per_class[np.clip(classes, 0, per_class.size - 1)]
    out[~valid] = 0.0
    return out.astype(np.float32, copy=False)


def separate_touching(objects: np.ndarray) -> np.ndarray:
    """Set to 0 the pixels of an object that 4-touch a different object, so touching objects get a gap.

    The network then learns to leave a background line between touching objects, and connected components
    (4-connectivity) of its foreground recover them as separate instances.
    """
    objects = np.asarray(objects)
    touch = np.zeros(objects.shape, dtype=bool)
    for axis in (0, 1):
        a = np.swapaxes(objects, 0, axis)
        t = np.swapaxes(touch, 0, axis)
        differ = (a[1:] != a[:-1]) & (a[1:] > 0) & (a[:-1] > 0)
        t[1:] |= differ
        t[:-1] |= differ
    out = objects.copy()
    out[touch] = 0
    return out


def instance_weight_map(
    objects: np.ndarray,
    valid: np.ndarray | None = None,
    w0: float = 10.0,
    sigma: float = 5.0,
    balance: bool = True,
) -> np.ndarray:
    """The paper's weight map for a foreground/background target built from instance labels.

    Parameters
    ----------
    objects : 2D int array
        Object ids after :func:`separate_touching` (0 = background or unannotated).
    valid : 2D bool array, optional
        Annotated pixels (default all); the others get weight 0 and are neither objects nor background.
    w0, sigma : float
        Border term parameters.
    balance : bool
        Add the class-balancing term ``w_c`` (else ``w_c = 1``).
    """
    objects = np.asarray(objects)
    valid = np.ones(objects.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    foreground = (objects > 0).astype(np.int64)
    wc = class_weights(foreground, valid, 2) if balance else valid.astype(np.float32)
    return wc + border_weights(objects, w0, sigma, background=valid & (objects == 0))
