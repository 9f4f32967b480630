"""From class maps and foreground probabilities to instance labels of one plane or volume, in memory, or of one
plane block by block.

In memory (:func:`label_plane`): threshold, connected components or a seeded watershed, small objects removed,
the pixels between touching objects given back (:func:`restore_borders`) and holes filled (:func:`fill_holes`);
for a three-class model (background, interior, border), seeds from the interior that take back their border
pixels (:func:`label_three_classes`). Block by block (:func:`label_foreground_blockwise`, for planes larger than
memory): connected components and small objects only.

The in-memory steps take a 2D plane ``(Y, X)`` or a 3D volume ``(Z, Y, X)``, which is one image: its objects are
connected across planes (face connectivity: 4 neighbours in 2D, 6 in 3D) and sizes are counted in voxels. Where a
distance is involved the optional ``spacing`` (voxel size per axis, e.g. ``(3.0, 1.0, 1.0)``) makes it physical, in
units of the smallest spacing (:func:`~napari_seamless_unet.core.weights.unit_spacing`): every distance parameter
(``gap``, ``h``, :data:`BORDER_REACH`) is in in-plane pixels, and without ``spacing`` in voxels, as before.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .seeded import SEED_THRESHOLD, seeded_instances
from .weights import two_nearest_distances, unit_spacing

# Planes with more pixels than this are labelled block by block, so memory stays bounded by the block size.
BLOCKWISE_PIXELS = 4096 * 4096
METHODS = ("components", "watershed", "seeds")
#: the default foreground threshold of instance models: on tuning images (not the benchmark's test images) a
#: threshold of 0.7 found the touching objects a short training leaves joined at 0.5 (2-class discs AP@0.5
#: 0.934 vs 0.905, 3-class discs 0.913 vs 0.813, nuclei 1.000 vs 0.983), the matched IoU unchanged (the gap is
#: given back by restore_borders); benchmarks/README.md, bench_postprocess.py
DEFAULT_THRESHOLD = 0.7
#: restore_borders gives back background channels at most this many pixels wide between two objects: the gap
#: that the training target (``weights.separate_touching``) leaves is two pixels wide, one from each object.
BORDER_GAP = 2
#: the watershed seeds are maxima of the distance to the background at least this many pixels high
WATERSHED_H = 2.0
#: three-class models: an object's interior takes back the foreground pixels at most this far from it (the
#: one-pixel border of the training target, weights.BORDER_WIDTH, with room for a thicker predicted band)
BORDER_REACH = 3.0


def label_foreground(foreground: np.ndarray, min_size: int = 0) -> np.ndarray:
    """Connected components (face connectivity: 4 in 2D, 6 in 3D) of a foreground mask as int32 labels 1..n;
    objects of fewer than ``min_size`` pixels (voxels) are removed.

    Face connectivity keeps objects apart that touch only at a corner or an edge across the one-voxel gap the
    weighted loss teaches the network to leave between them.
    """
    labels, n = ndimage.label(foreground)
    if min_size > 0 and n:
        sizes = np.bincount(labels.ravel())
        small = sizes < min_size
        small[0] = False
        labels[small[labels]] = 0
        labels, _ = ndimage.label(labels > 0)
    return labels.astype(np.int32, copy=False)


def labels_from_classes(
    classes: np.ndarray, task: str, min_size: int = 0, num_classes: int = 2, **options
) -> np.ndarray:
    """One 2D plane (or 3D volume) of class ids as :func:`~napari_seamless_unet.segment` labels it: the class
    ids for a semantic model; for an instance model, its objects by :func:`label_plane` with ``options``
    (``fill_holes``, ``method``, ``restore_borders``, ``spacing``) from the foreground (class 1) or, with
    ``num_classes=3``, from the interior (1) and border (2) classes: what ``segment`` gives at ``threshold=0.5``.
    A 3D ``classes`` is one volume (its objects connect across planes)."""
    if task != "instances":
        return classes
    classes = np.asarray(classes)
    options = {**options, "ndim": classes.ndim}  # the class count is known here: no shape to guess from
    if num_classes == 3:
        return label_plane(np.stack([classes == 1, classes == 2]).astype(np.float32), min_size=min_size, **options)
    return label_plane(classes == 1, min_size=min_size, **options)


def remove_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """``labels`` (any number of axes) without the objects smaller than ``min_size`` pixels (voxels), renumbered
    1..n in order of their ids."""
    labels = np.asarray(labels)
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_size
    keep[0] = False
    lut = np.zeros(len(sizes), dtype=np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return lut[labels]


def watershed_instances(foreground: np.ndarray, h: float = WATERSHED_H, spacing=None) -> np.ndarray:
    """Split a 2D or 3D foreground mask into objects with a seeded watershed on its distance transform.

    Each connected component (face connectivity, as :func:`label_foreground`) is split on its own: the seeds are
    the maxima of its distance to the background that rise at least ``h`` pixels above the saddle to any
    higher maximum (h-maxima), so two discs (balls) joined by a neck narrower than their radii minus ``h`` become
    two objects; a component with one such maximum or none (a thin or tiny object) stays one object. With
    ``spacing`` the distance and ``h`` are physical, in in-plane pixels. Returns int32 labels 1..n, numbered
    component by component.
    """
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    foreground = np.asarray(foreground, dtype=bool)
    sampling = unit_spacing(spacing, foreground.ndim)
    components, _ = ndimage.label(foreground)
    labels = np.zeros(components.shape, dtype=np.int32)
    count = 0
    inner = (slice(1, -1),) * foreground.ndim
    for index, box in enumerate(ndimage.find_objects(components), start=1):
        # Working in each component's bounding box (plus a background margin) costs a fifth of the whole plane.
        box = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box)
        mask = components[box] == index
        distance = ndimage.distance_transform_edt(np.pad(mask, 1), sampling=sampling)[inner]
        n = 1
        if distance.max() >= h + 1:  # two maxima h apart need a saddle of at least 1: else one object
            # Seeds may touch at a corner (a plateau's maxima): any connectivity makes them one seed.
            structure = np.ones((3,) * foreground.ndim, dtype=bool)
            seeds, n = ndimage.label((h_maxima(distance, h) > 0) & mask, structure=structure)
        crop = labels[box]
        if n <= 1:
            crop[mask] = count + 1
            count += 1
        else:
            crop[mask] = watershed(-distance, seeds, mask=mask)[mask] + count
            count += n
    return labels


def _offsets_within(radius: float, steps: tuple[float, ...]) -> list[tuple[int, ...]]:
    """The voxel offsets (not 0) at most ``radius`` in-plane pixels away (``steps`` pixels per voxel along each
    axis), nearest first; ties: the smaller step in x, then in y, then the lower offset (in 2D: up, down, left,
    right, then diagonal, as before 3D)."""
    reach = [int(radius / step + 1e-9) for step in steps]
    grid = np.stack(np.meshgrid(*(np.arange(-r, r + 1) for r in reach), indexing="ij"), -1).reshape(-1, len(steps))
    keyed = []
    for offset in map(tuple, grid.tolist()):
        d2 = sum((o * step) ** 2 for o, step in zip(offset, steps, strict=True))
        if any(offset) and d2 <= radius**2 + 1e-6:
            keyed.append(((d2, *(abs(o) for o in offset[:0:-1]), offset), offset))
    return [offset for _, offset in sorted(keyed)]


def restore_borders(labels: np.ndarray, gap: int = BORDER_GAP, spacing=None) -> np.ndarray:
    """Give the background pixels (voxels) between two touching objects back to the nearer one.

    A background pixel is given back when it lies on a channel at most ``gap`` pixels wide between two
    different objects (its distances ``d1 <= d2`` to the nearest and second-nearest object add up to at most
    ``gap + 1``); it goes to the nearest object (ties: the first of its neighbours up, down, left, right, then
    diagonal). This undoes the gap that the training target cuts between touching objects; an object with no
    other object within ``gap`` pixels never grows, and neither do objects into background wider than ``gap``.

    In 3D the same holds for face-connected volumes. With ``spacing`` the distances are physical and ``gap`` is
    in in-plane pixels, so the rule ``d1 + d2 <= gap + 1`` is the same in every direction: a channel of ``k``
    planes across a z of spacing ``s`` (in units of the in-plane spacing) has ``d1 + d2 = (k + 1) * s`` at its
    middle, so with ``s = 3`` the default ``gap=2`` gives back no channel across z, even one plane thick (6 > 3):
    that is 3 in-plane pixels of physical background, wider than ``gap``. ``gap=5`` gives back one-plane
    channels across such a z; the two-plane gap that ``weights.separate_touching`` cuts between objects touching
    across z needs ``gap >= 3 * s - 1``. Without ``spacing`` voxels count as cubes: ``gap`` voxels in every
    direction.
    """
    labels = np.asarray(labels)
    out = labels.astype(np.int32, copy=True)
    steps = unit_spacing(spacing, labels.ndim) or (1.0,) * labels.ndim
    if gap <= 0 or not labels.any():
        return out
    d1, d2 = two_nearest_distances(labels, cutoff=gap + 1.0, spacing=spacing)
    between = (labels == 0) & (d1 + d2 <= gap + 1 + 1e-3)
    if not between.any():
        return out
    # The nearest object is at most (gap + 1) / 2 pixels away: try the offsets within that radius, nearest first.
    offsets = _offsets_within((gap + 1) / 2, steps)
    reach = [max(abs(o[axis]) for o in offsets) if offsets else 0 for axis in range(labels.ndim)]
    padded = np.pad(out, [(r, r) for r in reach])
    todo = between.copy()
    for offset in offsets:
        window = tuple(slice(r + o, r + o + n) for r, o, n in zip(reach, offset, out.shape, strict=True))
        neighbour = padded[window]
        take = todo & (neighbour > 0)
        out[take] = neighbour[take]
        todo &= ~take
    return out


def fill_holes(labels: np.ndarray) -> np.ndarray:
    """Fill the holes of every object: background pixels that it encloses (background connected through faces,
    edges and corners, the dual of face-connected objects) join it; in 3D, the cavities it encloses. Pixels of
    another object inside a hole stay that object's. Distances play no part, so no ``spacing``."""
    out = np.array(labels, dtype=np.int32, copy=True)
    structure = np.ones((3,) * out.ndim, dtype=bool)
    for index, box in enumerate(ndimage.find_objects(out), start=1):
        if box is None:
            continue
        crop = out[box]
        filled = ndimage.binary_fill_holes(crop == index, structure=structure)
        crop[filled & (crop == 0)] = index
    return out


_restore_borders, _fill_holes = restore_borders, fill_holes  # label_plane's keywords hide these names


def label_plane(
    probability: np.ndarray,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    min_size: int = 0,
    fill_holes: bool = True,
    method: str = "components",
    restore_borders: bool = True,
    spacing=None,
    ndim: int | None = None,
) -> np.ndarray:
    """Instance labels (int32, 1..n) of one 2D plane or 3D volume of foreground probabilities, in memory.

    Foreground is ``probability > threshold``; objects are its connected components (``method="components"``)
    or the regions of :func:`watershed_instances`, or objects grown from confident seeds (``method="seeds"``,
    :func:`~napari_seamless_unet.core.seeded.seeded_instances`); objects of fewer than ``min_size`` pixels (voxels)
    are removed; then :func:`restore_borders` and :func:`fill_holes` (in that order) where asked for.

    ``probability`` holding one more axis than the image, of length 2, holds the interior and border
    probabilities of a three-class model instead: they go to :func:`label_three_classes` with the same options.
    ``ndim`` (2 or 3) says how many axes the image has, which tells the two apart: ``(H, W)`` and
    ``(2, H, W)`` with ``ndim=2``, ``(D, H, W)`` and ``(2, D, H, W)`` with ``ndim=3``. Left out it is the length
    of ``spacing``, or 2 without one: a 3D ``probability`` with neither is a three-class plane, as before 3D
    (so a volume of foreground probabilities needs ``ndim=3`` or a ``spacing``).

    ``spacing`` (voxel size per axis of the image, not of the class axis) makes the distances of the watershed,
    :func:`restore_borders` and :func:`label_three_classes` physical, in in-plane pixels.
    """
    probability = np.asarray(probability)
    if ndim is None:
        ndim = 2 if spacing is None else len(spacing)
    if probability.ndim not in (ndim, ndim + 1) or (probability.ndim == ndim + 1 and probability.shape[0] != 2):
        raise ValueError(
            f"a {ndim}D image needs probabilities of {ndim} axes (two classes) or {ndim + 1} axes with 2 first "
            f"(interior and border of three classes), got shape {probability.shape}"
        )
    options = {"threshold": threshold, "min_size": min_size, "fill_holes": fill_holes, "method": method}
    if probability.ndim == ndim + 1:
        return label_three_classes(
            probability[0], probability[1], restore_borders=restore_borders, spacing=spacing, **options
        )
    foreground = probability > threshold
    if method in ("watershed", "seeds"):
        if method == "seeds":
            labels = seeded_instances(probability, threshold, spacing)
        else:
            labels = watershed_instances(foreground, spacing=spacing)
        labels = remove_small(labels, min_size) if min_size > 0 else labels
    else:
        labels = label_foreground(foreground, min_size=min_size)
    if restore_borders:
        labels = _restore_borders(labels, spacing=spacing)
    if fill_holes:
        labels = _fill_holes(labels)
    return labels


def _expand_labels(labels: np.ndarray, distance: float, sampling) -> np.ndarray:
    """``skimage.segmentation.expand_labels`` with a voxel size (its ``spacing`` is missing before 0.23): each
    background voxel at most ``distance`` from an object takes the nearest object's id."""
    distances, nearest = ndimage.distance_transform_edt(labels == 0, sampling=sampling, return_indices=True)
    out = np.zeros_like(labels)
    grow = distances <= distance
    out[grow] = labels[tuple(axis[grow] for axis in nearest)]
    return out


def label_three_classes(
    interior: np.ndarray,
    border: np.ndarray,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    min_size: int = 0,
    fill_holes: bool = True,
    method: str = "components",
    restore_borders: bool = True,
    spacing=None,
) -> np.ndarray:
    """Instance labels (int32, 1..n) of one 2D plane or 3D volume of a three-class model (background, interior,
    border).

    The seeds are the objects of the interior (``interior > threshold``; with ``method="seeds"``, above
    ``seeded.SEED_THRESHOLD`` too, so only its confident cores): its connected components
    (face connectivity) or, with ``method="watershed"``, the regions of :func:`watershed_instances`, which also
    splits interiors joined by a neck. With ``restore_borders``, each seed then takes back the foreground pixels
    (``interior + border > threshold``, i.e. not background) nearer to it than to any other seed and at most
    :data:`BORDER_REACH` pixels away (``skimage.segmentation.expand_labels``, masked by the foreground): the
    border band, exactly wherever a border pixel is nearer to its own object's interior than to another's (on
    perfect targets of touching discs, all but a few pixels where objects meet at a corner); foreground further
    from every seed stays background. Without it, objects are their interiors (one border width smaller).
    Then objects of fewer than ``min_size`` pixels (voxels, counted with the border they took) are removed, and
    :func:`fill_holes` where asked for.

    With ``spacing`` "nearer" and :data:`BORDER_REACH` are physical, in in-plane pixels: across a z of spacing 3
    the one-plane border band (3 pixels away) is still within reach, a second plane (6) is not.

    A border band never joins two objects (that is what it is for), so touching objects come back apart
    without the two-class target's gap; an object with no interior pixel (thinner than three pixels) is lost.
    """
    interior = np.asarray(interior)
    sampling = unit_spacing(spacing, interior.ndim)
    seeds = interior > (max(threshold, SEED_THRESHOLD) if method == "seeds" else threshold)
    labels = watershed_instances(seeds, spacing=spacing) if method == "watershed" else label_foreground(seeds)
    if restore_borders:
        foreground = (interior + np.asarray(border)) > threshold
        labels = np.where(foreground | seeds, _expand_labels(labels, BORDER_REACH, sampling), 0).astype(np.int32)
    if min_size > 0:
        labels = remove_small(labels, min_size)
    if fill_holes:
        labels = _fill_holes(labels)
    return labels


class _UnionFind:
    def __init__(self):
        self.parent = np.zeros(1, dtype=np.int64)

    def grow(self, n: int) -> None:
        old = len(self.parent)
        if n > old:
            self.parent = np.concatenate([self.parent, np.arange(old, n, dtype=np.int64)])

    def find(self, a: int) -> int:
        root = a
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[a] != root:  # path compression
            self.parent[a], a = root, self.parent[a]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def roots(self) -> np.ndarray:
        return np.array([self.find(i) for i in range(len(self.parent))], dtype=np.int64)


def label_foreground_blockwise(
    plane, foreground_class: int = 1, min_size: int = 0, block: int = 4096, offset: int = 0
) -> int:
    """Label the connected foreground of a 2D array (e.g. a zarr plane view) in place, block by block.

    ``plane`` holds class ids on entry and int32 instance labels on return; its dtype must hold them. Only one
    block (plus one row and one column of its neighbours) is in memory at a time: blocks are labelled on their
    own, labels that meet across block edges are merged with a union-find, and a second pass writes the final
    consecutive labels ``offset + 1 .. offset + n``. Returns the number of instances ``n``.
    """
    h, w = plane.shape
    uf = _UnionFind()
    count = 0
    for y in range(0, h, block):
        for x in range(0, w, block):
            fg = np.asarray(plane[y : y + block, x : x + block]) == foreground_class
            local, n = ndimage.label(fg)
            local = np.where(local > 0, local + count, 0).astype(np.int32)
            uf.grow(count + n + 1)
            # Merge with the neighbours above and to the left, which already hold provisional labels.
            if y > 0:
                above = np.asarray(plane[y - 1, x : x + local.shape[1]])
                _merge(uf, above, local[0])
            if x > 0:
                left = np.asarray(plane[y : y + local.shape[0], x - 1])
                _merge(uf, left, local[:, 0])
            plane[y : y + block, x : x + block] = local
            count += n
    roots = uf.roots()
    _, final = np.unique(roots, return_inverse=True)  # consecutive ids; root 0 is background
    lut = final.astype(np.int32)
    if min_size > 0:
        sizes = np.zeros(lut.max() + 1, dtype=np.int64)
        for y in range(0, h, block):
            for x in range(0, w, block):
                block_labels = lut[np.asarray(plane[y : y + block, x : x + block])]
                sizes += np.bincount(block_labels.ravel(), minlength=len(sizes))
        keep = sizes >= min_size
        keep[0] = False
        renumber = np.zeros(len(sizes), dtype=np.int32)
        renumber[keep] = np.arange(1, keep.sum() + 1)
        lut = renumber[lut]
    n = int(lut.max())
    lut = np.where(lut > 0, lut + offset, 0).astype(np.int32)
    for y in range(0, h, block):
        for x in range(0, w, block):
            plane[y : y + block, x : x + block] = lut[np.asarray(plane[y : y + block, x : x + block])]
    return n


def _merge(uf: _UnionFind, previous: np.ndarray, current: np.ndarray) -> None:
    touching = (previous > 0) & (current > 0)
    for a, b in set(zip(previous[touching].tolist(), current[touching].tolist())):
        uf.union(a, b)


class _PlaneView:
    """2D view of one plane of an N-d array (numpy or zarr), so block-wise code can index it as ``[y, x]``."""

    def __init__(self, array, prefix: tuple, y_axis: int, x_axis: int):
        self.array, self.prefix, self.y_axis, self.x_axis = array, prefix, y_axis, x_axis
        self.shape = (array.shape[y_axis], array.shape[x_axis])

    def _index(self, key):
        y, x = key
        index = list(self.prefix)
        index[self.y_axis], index[self.x_axis] = y, x
        return tuple(index)

    def __getitem__(self, key):
        return self.array[self._index(key)]

    def __setitem__(self, key, value):
        self.array[self._index(key)] = value
