"""The weight map of the U-Net paper: class balance plus a border term that separates touching objects.

``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 sigma**2))`` where ``w_c`` balances the class frequencies
and ``d1``, ``d2`` are the distances of a background pixel to the nearest and second-nearest object (Ronneberger
et al. 2015, eq. 2). The border term is computed object by object inside each object's bounding box grown by the
distance beyond which the term is negligible, keeping the two smallest distances per pixel, so the cost grows
with the objects' area, not with (number of objects) x (image size).

Every function takes a 2D plane ``(Y, X)`` or a 3D volume ``(Z, Y, X)`` (any number of axes, in fact) and an
optional ``spacing``, the voxel size along each axis (e.g. ``(3.0, 1.0, 1.0)`` for a volume whose planes are three
times as far apart as its pixels). Distances are physical, in units of the smallest spacing (:func:`unit_spacing`),
so ``sigma``, ``w0``'s reach and every width here keep their meaning "in in-plane pixels" and a call without
``spacing`` measures in pixels (voxels) as before. Neighbours are face neighbours (4 in 2D, 6 in 3D).

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


def unit_spacing(spacing, ndim: int) -> tuple[float, ...] | None:
    """``spacing`` divided by its smallest value, so distances come out in units of the finest axis (in-plane pixels).

    ``None`` (isotropic) stays ``None``, which every function here reads as one pixel per axis. Raises
    ``ValueError`` unless ``spacing`` holds one positive finite number per axis of the ``ndim``-dimensional array.
    """
    if spacing is None:
        return None
    values = tuple(float(s) for s in np.ravel(spacing))
    if len(values) != ndim:
        raise ValueError(f"spacing needs one value per axis of a {ndim}D array, got {tuple(values)}")
    if not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"spacing must hold positive finite numbers, got {tuple(values)}")
    smallest = min(values)
    return tuple(s / smallest for s in values)


def _distance(mask: np.ndarray, sampling: tuple[float, ...] | None = None) -> np.ndarray:
    """Euclidean distance of each pixel to the nearest zero of ``mask``, ``sampling`` units per step along each axis."""
    return ndimage.distance_transform_edt(mask, sampling=sampling).astype(np.float32)


def two_nearest_distances(objects: np.ndarray, cutoff: float, spacing=None) -> tuple[np.ndarray, np.ndarray]:
    """Distances ``d1 <= d2`` of every pixel (voxel) to its nearest and second-nearest object.

    Parameters
    ----------
    objects : 2D or 3D int array
        0 = no object, each positive value one object.
    cutoff : float
        Distances beyond ``cutoff`` are not computed and come back as ``inf``.
    spacing : sequence of float, optional
        Voxel size per axis (default isotropic); distances are in units of its smallest value (:func:`unit_spacing`).

    Returns
    -------
    d1, d2 : float32 arrays
        Pixels inside an object have distance 0 to it.
    """
    objects = np.asarray(objects)
    sampling = unit_spacing(spacing, objects.ndim)
    d1 = np.full(objects.shape, np.inf, dtype=np.float32)
    d2 = np.full(objects.shape, np.inf, dtype=np.float32)
    if not objects.any():
        return d1, d2
    ids, dense = np.unique(objects, return_inverse=True)
    dense = dense.reshape(objects.shape).astype(np.int32)
    if ids[0] != 0:
        dense += 1
    # The box grows by the cutoff in steps of each axis (fewer planes than pixels along a coarse z).
    steps = sampling or (1.0,) * objects.ndim
    grow = [math.ceil(cutoff / step) + 1 for step in steps]
    for index, box in enumerate(ndimage.find_objects(dense), start=1):
        if box is None:
            continue
        grown = tuple(
            slice(max(0, b.start - g), min(n, b.stop + g)) for b, g, n in zip(box, grow, objects.shape, strict=True)
        )
        crop = dense[grown]
        # The whole object lies inside the crop, so distances to it are exact there; outside they exceed cutoff.
        d = _distance(crop != index, sampling)
        d[d > cutoff] = np.inf
        c1, c2 = d1[grown], d2[grown]
        closer = d < c1
        c2[...] = np.where(closer, c1, np.minimum(c2, d))
        c1[...] = np.where(closer, d, c1)
    return d1, d2


def border_weights(
    objects: np.ndarray,
    w0: float = 10.0,
    sigma: float = 5.0,
    background: np.ndarray | None = None,
    spacing=None,
) -> np.ndarray:
    """The separation term ``w0 * exp(-(d1 + d2)**2 / (2 sigma**2))`` on background pixels, 0 elsewhere.

    Parameters
    ----------
    objects : 2D or 3D int array
        Object ids (0 = none).
    w0, sigma : float
        Height and width of the term (paper: 10 and 5 pixels; ``sigma`` in in-plane pixels).
    background : bool array, optional
        Pixels that receive the term; default ``objects == 0``. (Unannotated pixels are excluded by the caller.)
    spacing : sequence of float, optional
        Voxel size per axis (:func:`unit_spacing`); default isotropic.
    """
    objects = np.asarray(objects)
    if background is None:
        background = objects == 0
    out = np.zeros(objects.shape, dtype=np.float32)
    if w0 <= 0 or sigma <= 0:
        return out
    d1, d2 = two_nearest_distances(objects, distance_cutoff(w0, sigma), spacing)
    s = d1 + d2
    finite = background & np.isfinite(s)
    out[finite] = w0 * np.exp(-(s[finite] ** 2) / (2.0 * sigma**2))
    return out


def class_weights(classes: np.ndarray, valid: np.ndarray, num_classes: int, spacing=None) -> np.ndarray:
    """``w_c``: per-pixel weights that give every class present the same total weight (mean 1 over ``valid``).

    Pixels outside ``valid`` get 0. Any number of axes. ``spacing`` is checked but changes nothing: every voxel
    of a volume has the same size, so class frequencies counted in voxels are already physical proportions.
    """
    unit_spacing(spacing, np.ndim(classes))
    counts = np.bincount(classes[valid].ravel(), minlength=num_classes).astype(np.float64)
    present = counts > 0
    per_class = np.zeros(max(num_classes, counts.size), dtype=np.float32)
    if present.any():
        per_class[present] = counts.sum() / (present.sum() * counts[present])
    out = per_class[np.clip(classes, 0, per_class.size - 1)]
    out[~valid] = 0.0
    return out.astype(np.float32, copy=False)


def separate_touching(objects: np.ndarray, spacing=None) -> np.ndarray:
    """Set to 0 the pixels of an object that touch a different object across a face, so touching objects get a gap.

    The network then learns to leave a background line (in 3D a sheet) between touching objects, and connected
    components (face connectivity: 4 in 2D, 6 in 3D) of its foreground recover them as separate instances.

    ``spacing`` is checked but changes nothing: the gap is one voxel on each side across every face, whatever
    the voxel size, since a thinner gap does not exist and a thicker one along the finer axes is not needed to
    keep the objects apart. (Across a coarse z that gap is ``2 * spacing_z`` in-plane pixels wide;
    :func:`~napari_seamless_unet.core.postprocess.restore_borders` says when it is given back.)
    """
    objects = np.asarray(objects)
    unit_spacing(spacing, objects.ndim)
    touch = np.zeros(objects.shape, dtype=bool)
    for axis in range(objects.ndim):
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
    spacing=None,
) -> np.ndarray:
    """The paper's weight map for a foreground/background target built from instance labels.

    Parameters
    ----------
    objects : 2D or 3D int array
        Object ids after :func:`separate_touching` (0 = background or unannotated).
    valid : bool array, optional
        Annotated pixels (default all); the others get weight 0 and are neither objects nor background.
    w0, sigma : float
        Border term parameters (``sigma`` in in-plane pixels).
    balance : bool
        Add the class-balancing term ``w_c`` (else ``w_c = 1``), counted in voxels.
    spacing : sequence of float, optional
        Voxel size per axis for the distances ``d1``, ``d2`` (:func:`unit_spacing`); default isotropic.
    """
    objects = np.asarray(objects)
    valid = np.ones(objects.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    foreground = (objects > 0).astype(np.int64)
    wc = class_weights(foreground, valid, 2) if balance else valid.astype(np.float32)
    return wc + border_weights(objects, w0, sigma, background=valid & (objects == 0), spacing=spacing)


#: width in in-plane pixels of the border class of a three-class target: the object pixels that touch another
#: object or annotated background across a face. One pixel keeps the interior of thin objects (a 3-pixel wide
#: object keeps one interior row) and makes the band between two touching objects two pixels wide, like the gap
#: of the two-class target.
BORDER_WIDTH = 1


def _touches_other(objects: np.ndarray, valid: np.ndarray, axes) -> np.ndarray:
    """Object pixels with a face neighbour along ``axes`` that is annotated and not the same object (another object
    or background)."""
    touch = np.zeros(objects.shape, dtype=bool)
    for axis in axes:
        a, v, t = (np.swapaxes(x, 0, axis) for x in (objects, valid, touch))
        differ = a[1:] != a[:-1]
        t[:-1] |= differ & v[1:] & v[:-1] & (a[:-1] > 0)
        t[1:] |= differ & v[:-1] & v[1:] & (a[1:] > 0)
    return touch


def interior_border_classes(
    objects: np.ndarray, valid: np.ndarray | None = None, width: int = BORDER_WIDTH, spacing=None
) -> np.ndarray:
    """The three-class target of instance labels: 0 background, 1 object interior, 2 object border.

    The border is the band of ``width`` pixels inside each object along its edge with another object or with
    annotated background (for a fully annotated plane, what ``skimage.segmentation.find_boundaries(objects,
    mode="inner")`` marks, applied ``width`` times); the rest of an object is its interior. Seeds grown from
    the interiors (:func:`~napari_seamless_unet.core.postprocess.label_three_classes`) give the objects back whole,
    touching or not. An object's edge along unannotated pixels or the image's edge is not a border: what lies
    beyond is unknown (sparse strokes inside an object stay interior).

    In 3D the band runs across every face. With ``spacing`` its thickness is ``width`` in-plane pixels along
    each axis, rounded to whole voxels of that axis but never below one (else objects touching across a coarse
    z would not be kept apart): ``width=2`` with spacing ``(3, 1, 1)`` is two voxels thick in y and x, one in z.
    The default ``width=1`` is one voxel across every face, whatever the spacing.

    Parameters
    ----------
    objects : 2D or 3D int array
        Object ids (0 = background or unannotated), not separated (touching objects touch).
    valid : bool array, optional
        Annotated pixels (default all). Unannotated pixels come back as 0; the caller gives them no weight.
    width : int
        Border width in in-plane pixels (:data:`BORDER_WIDTH`).
    spacing : sequence of float, optional
        Voxel size per axis (:func:`unit_spacing`); default isotropic.

    Returns
    -------
    int64 array of class ids 0, 1, 2.
    """
    objects = np.asarray(objects)
    valid = np.ones(objects.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    sampling = unit_spacing(spacing, objects.ndim) or (1.0,) * objects.ndim
    rings = [max(1, round(int(width) / step)) for step in sampling]  # how many rings each axis takes part in
    remaining = np.where(valid, objects, 0)
    border = np.zeros(objects.shape, dtype=bool)
    for k in range(int(width)):
        ring = _touches_other(remaining, valid, [axis for axis, n in enumerate(rings) if k < n])
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
    spacing=None,
) -> np.ndarray:
    """Loss weights for a three-class target: class balance over the three classes plus the separation term.

    The term ``w0 * exp(-(d1 + d2)**2 / (2 sigma**2))`` of :func:`border_weights` is given to background pixels
    (as in the paper) and to border pixels, ``d1``, ``d2`` the distances to the nearest and second-nearest
    object. In this target touching objects leave no background between them: the pixels that separate them
    are border pixels (``d1 = 0``, ``d2 = 1`` on a contact line), so the term keeps the paper's purpose, a
    large weight where objects meet, instead of falling on background only. ``w0 = 0`` leaves class balance.

    Parameters
    ----------
    classes : 2D or 3D int array
        :func:`interior_border_classes` of ``objects``.
    objects : int array
        Object ids (0 = background or unannotated), not separated.
    valid : bool array, optional
        Annotated pixels (default all); the others get weight 0.
    w0, sigma : float
        Separation term parameters (``sigma`` in in-plane pixels).
    balance : bool
        Balance the three class frequencies (else ``w_c = 1``).
    spacing : sequence of float, optional
        Voxel size per axis (:func:`unit_spacing`); default isotropic.
    """
    classes = np.asarray(classes)
    valid = np.ones(classes.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    wc = class_weights(classes, valid, 3) if balance else valid.astype(np.float32)
    separating = valid & (classes != 1)
    return wc + border_weights(np.where(valid, objects, 0), w0, sigma, background=separating, spacing=spacing)
