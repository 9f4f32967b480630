"""The weight map of the U-Net paper: class balance plus a border term that separates touching objects.

``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 sigma**2))`` where ``w_c`` balances the class frequencies
and ``d1``, ``d2`` are the distances of a background pixel to the nearest and second-nearest object (Ronneberger
et al. 2015, eq. 2). The border term is computed object by object inside each object's bounding box grown by the
distance beyond which the term is negligible, keeping the two smallest distances per pixel, so the cost grows
with the objects' area, not with (number of objects) x (image size).

The alternative to the paper's two classes, a three-class target (background, object interior, object border:
:func:`interior_border_classes`) with its weights (:func:`three_class_weight_map`), lives here too.
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


#: width in pixels of the border class of a three-class target: the object pixels that 4-touch another object or
#: annotated background. One pixel keeps the interior of thin objects (a 3-pixel wide object keeps one interior
#: row) and makes the band between two touching objects two pixels wide, like the gap of the two-class target.
BORDER_WIDTH = 1


def _touches_other(objects: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Object pixels with a 4-neighbour that is annotated and not the same object (another object or background)."""
    touch = np.zeros(objects.shape, dtype=bool)
    for axis in (0, 1):
        a, v, t = (np.swapaxes(x, 0, axis) for x in (objects, valid, touch))
        differ = a[1:] != a[:-1]
        t[:-1] |= differ & v[1:] & v[:-1] & (a[:-1] > 0)
        t[1:] |= differ & v[:-1] & v[1:] & (a[1:] > 0)
    return touch


def interior_border_classes(
    objects: np.ndarray, valid: np.ndarray | None = None, width: int = BORDER_WIDTH
) -> np.ndarray:
    """The three-class target of instance labels: 0 background, 1 object interior, 2 object border.

    The border is the band of ``width`` pixels inside each object along its edge with another object or with
    annotated background (for a fully annotated plane, what ``skimage.segmentation.find_boundaries(objects,
    mode="inner")`` marks, applied ``width`` times); the rest of an object is its interior. Seeds grown from
    the interiors (:func:`~napari_seamless_unet.core.postprocess.label_three_classes`) give the objects back whole,
    touching or not. An object's edge along unannotated pixels or the image's edge is not a border: what lies
    beyond is unknown (sparse strokes inside an object stay interior).

    Parameters
    ----------
    objects : 2D int array
        Object ids (0 = background or unannotated), not separated (touching objects touch).
    valid : 2D bool array, optional
        Annotated pixels (default all). Unannotated pixels come back as 0; the caller gives them no weight.
    width : int
        Border width in pixels (:data:`BORDER_WIDTH`).

    Returns
    -------
    int64 array of class ids 0, 1, 2.
    """
    objects = np.asarray(objects)
    valid = np.ones(objects.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    remaining = np.where(valid, objects, 0)
    border = np.zeros(objects.shape, dtype=bool)
    for _ in range(int(width)):
        ring = _touches_other(remaining, valid)
        border |= ring
        remaining = np.where(ring, -1, remaining)  # the next ring lies inside this one
    classes = np.where(valid & (objects > 0), 1, 0).astype(np.int64)
    classes[border] = 2
    return classes


def three_class_weight_map(
    classes: np.ndarray,
    objects: np.ndarray,
    valid: np.ndarray | None = None,
    w0: float = 10.0,
    sigma: float = 5.0,
    balance: bool = True,
) -> np.ndarray:
    """Loss weights for a three-class target: class balance over the three classes plus the separation term.

    The term ``w0 * exp(-(d1 + d2)**2 / (2 sigma**2))`` of :func:`border_weights` is given to background pixels
    (as in the paper) and to border pixels, ``d1``, ``d2`` the distances to the nearest and second-nearest
    object. In this target touching objects leave no background between them: the pixels that separate them
    are border pixels (``d1 = 0``, ``d2 = 1`` on a contact line), so the term keeps the paper's purpose, a
    large weight where objects meet, instead of falling on background only. ``w0 = 0`` leaves class balance.

    Parameters
    ----------
    classes : 2D int array
        :func:`interior_border_classes` of ``objects``.
    objects : 2D int array
        Object ids (0 = background or unannotated), not separated.
    valid : 2D bool array, optional
        Annotated pixels (default all); the others get weight 0.
    w0, sigma : float
        Separation term parameters.
    balance : bool
        Balance the three class frequencies (else ``w_c = 1``).
    """
    classes = np.asarray(classes)
    valid = np.ones(classes.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    wc = class_weights(classes, valid, 3) if balance else valid.astype(np.float32)
    separating = valid & (classes != 1)
    return wc + border_weights(np.where(valid, objects, 0), w0, sigma, background=separating)
