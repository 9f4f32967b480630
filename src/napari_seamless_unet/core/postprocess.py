"""From class maps and foreground probabilities to instance labels of one plane, in memory or block by block.

In memory (:func:`label_plane`): threshold, connected components or a seeded watershed, small objects removed,
the pixels between touching objects given back (:func:`restore_borders`) and holes filled (:func:`fill_holes`);
for a three-class model (background, interior, border), seeds from the interior that take back their border
pixels (:func:`label_three_classes`). Block by block (:func:`label_foreground_blockwise`, for planes larger than
memory): connected components and small objects only.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .weights import two_nearest_distances

# Planes with more pixels than this are labelled block by block, so memory stays bounded by the block size.
BLOCKWISE_PIXELS = 4096 * 4096
METHODS = ("components", "watershed")
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
    """Connected components (4-connectivity) of a 2D foreground mask as int32 labels 1..n.

    4-connectivity keeps objects apart that touch only at a corner across the one-pixel gap the weighted loss
    teaches the network to leave between them.
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
    """One 2D plane of class ids as :func:`~napari_seamless_unet.segment` labels it: the class ids for a semantic
    model; for an instance model, its objects by :func:`label_plane` with ``options`` (``fill_holes``,
    ``method``, ``restore_borders``) from the foreground (class 1) or, with ``num_classes=3``, from the
    interior (1) and border (2) classes: what ``segment`` gives at ``threshold=0.5``."""
    if task != "instances":
        return classes
    classes = np.asarray(classes)
    if num_classes == 3:
        return label_plane(np.stack([classes == 1, classes == 2]).astype(np.float32), min_size=min_size, **options)
    return label_plane(classes == 1, min_size=min_size, **options)


def remove_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """``labels`` without the objects smaller than ``min_size`` pixels, renumbered 1..n in order of their ids."""
    labels = np.asarray(labels)
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_size
    keep[0] = False
    lut = np.zeros(len(sizes), dtype=np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return lut[labels]


def watershed_instances(foreground: np.ndarray, h: float = WATERSHED_H) -> np.ndarray:
    """Split a 2D foreground mask into objects with a seeded watershed on its distance transform.

    Each connected component (4-connectivity, as :func:`label_foreground`) is split on its own: the seeds are
    the maxima of its distance to the background that rise at least ``h`` pixels above the saddle to any
    higher maximum (h-maxima), so two discs joined by a neck narrower than their radii minus ``h`` become two
    objects; a component with one such maximum or none (a thin or tiny object) stays one object. Returns
    int32 labels 1..n, numbered component by component.
    """
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    components, _ = ndimage.label(np.asarray(foreground, dtype=bool))
    labels = np.zeros(components.shape, dtype=np.int32)
    count = 0
    for index, box in enumerate(ndimage.find_objects(components), start=1):
        # Working in each component's bounding box (plus a background margin) costs a fifth of the whole plane.
        box = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box)
        mask = components[box] == index
        distance = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
        n = 1
        if distance.max() >= h + 1:  # two maxima h apart need a saddle of at least 1: else one object
            seeds, n = ndimage.label((h_maxima(distance, h) > 0) & mask, structure=np.ones((3, 3), dtype=bool))
        crop = labels[box]
        if n <= 1:
            crop[mask] = count + 1
            count += 1
        else:
            crop[mask] = watershed(-distance, seeds, mask=mask)[mask] + count
            count += n
    return labels


def restore_borders(labels: np.ndarray, gap: int = BORDER_GAP) -> np.ndarray:
    """Give the background pixels between two touching objects back to the nearer one.

    A background pixel is given back when it lies on a channel at most ``gap`` pixels wide between two
    different objects (its distances ``d1 <= d2`` to the nearest and second-nearest object add up to at most
    ``gap + 1``); it goes to the nearest object (ties: the first of its neighbours up, down, left, right, then
    diagonal). This undoes the gap that the training target cuts between touching objects; an object with no
    other object within ``gap`` pixels never grows, and neither do objects into background wider than ``gap``.
    """
    labels = np.asarray(labels)
    out = labels.astype(np.int32, copy=True)
    if gap <= 0 or not labels.any():
        return out
    d1, d2 = two_nearest_distances(labels, cutoff=gap + 1.0)
    between = (labels == 0) & (d1 + d2 <= gap + 1 + 1e-3)
    if not between.any():
        return out
    # The nearest object is at most (gap + 1) / 2 pixels away: try the offsets within that radius, nearest first.
    reach = int((gap + 1) // 2)
    offsets = sorted(
        ((dy, dx) for dy in range(-reach, reach + 1) for dx in range(-reach, reach + 1) if (dy, dx) != (0, 0)),
        key=lambda o: (o[0] ** 2 + o[1] ** 2, abs(o[1]), o),
    )
    offsets = [o for o in offsets if o[0] ** 2 + o[1] ** 2 <= ((gap + 1) / 2) ** 2 + 1e-6]
    padded = np.pad(out, reach)
    h, w = out.shape
    todo = between.copy()
    for dy, dx in offsets:
        neighbour = padded[reach + dy : reach + dy + h, reach + dx : reach + dx + w]
        take = todo & (neighbour > 0)
        out[take] = neighbour[take]
        todo &= ~take
    return out


def fill_holes(labels: np.ndarray) -> np.ndarray:
    """Fill the holes of every object: background pixels that it encloses (8-connected background, the dual of
    4-connected objects) join it. Pixels of another object inside a hole stay that object's."""
    out = np.array(labels, dtype=np.int32, copy=True)
    for index, box in enumerate(ndimage.find_objects(out), start=1):
        if box is None:
            continue
        crop = out[box]
        filled = ndimage.binary_fill_holes(crop == index, structure=np.ones((3, 3), dtype=bool))
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
) -> np.ndarray:
    """Instance labels (int32, 1..n) of one 2D plane of foreground probabilities, in memory.

    Foreground is ``probability > threshold``; objects are its connected components (``method="components"``)
    or the regions of :func:`watershed_instances`; objects of fewer than ``min_size`` foreground pixels are
    removed; then :func:`restore_borders` and :func:`fill_holes` (in that order) where asked for.

    ``probability`` of shape ``(2, H, W)`` holds the interior and border probabilities of a three-class model
    instead: they go to :func:`label_three_classes` with the same options.
    """
    options = {"threshold": threshold, "min_size": min_size, "fill_holes": fill_holes, "method": method}
    if np.ndim(probability) == 3:
        return label_three_classes(probability[0], probability[1], restore_borders=restore_borders, **options)
    foreground = np.asarray(probability) > threshold
    if method == "watershed":
        labels = watershed_instances(foreground)
        labels = remove_small(labels, min_size) if min_size > 0 else labels
    else:
        labels = label_foreground(foreground, min_size=min_size)
    if restore_borders:
        labels = _restore_borders(labels)
    if fill_holes:
        labels = _fill_holes(labels)
    return labels


def label_three_classes(
    interior: np.ndarray,
    border: np.ndarray,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    min_size: int = 0,
    fill_holes: bool = True,
    method: str = "components",
    restore_borders: bool = True,
) -> np.ndarray:
    """Instance labels (int32, 1..n) of one 2D plane of a three-class model (background, interior, border).

    The seeds are the objects of the interior (``interior > threshold``): its connected components
    (4-connectivity) or, with ``method="watershed"``, the regions of :func:`watershed_instances`, which also
    splits interiors joined by a neck. With ``restore_borders``, each seed then takes back the foreground pixels
    (``interior + border > threshold``, i.e. not background) nearer to it than to any other seed and at most
    :data:`BORDER_REACH` pixels away (``skimage.segmentation.expand_labels``, masked by the foreground): the
    border band, exactly wherever a border pixel is nearer to its own object's interior than to another's (on
    perfect targets of touching discs, all but a few pixels where objects meet at a corner); foreground further
    from every seed stays background. Without it, objects are their interiors (one border width smaller).
    Then objects of fewer than ``min_size`` pixels (counted with the border they took) are removed, and
    :func:`fill_holes` where asked for.

    A border band never joins two objects (that is what it is for), so touching objects come back apart
    without the two-class target's gap; an object with no interior pixel (thinner than three pixels) is lost.
    """
    from skimage.segmentation import expand_labels

    interior = np.asarray(interior)
    seeds = interior > threshold
    labels = watershed_instances(seeds) if method == "watershed" else label_foreground(seeds)
    if restore_borders:
        foreground = (interior + np.asarray(border)) > threshold
        labels = np.where(foreground | seeds, expand_labels(labels, BORDER_REACH), 0).astype(np.int32)
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
