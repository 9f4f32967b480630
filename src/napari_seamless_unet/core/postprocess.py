"""From class maps to instance labels, in memory or block by block for planes larger than memory."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# Planes with more pixels than this are labelled block by block, so memory stays bounded by the block size.
BLOCKWISE_PIXELS = 4096 * 4096


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


def labels_from_classes(classes: np.ndarray, task: str, min_size: int = 0) -> np.ndarray:
    """What :func:`~napari_seamless_unet.segment` returns for one 2D plane of class ids: the class ids for a
    semantic model, instance labels (foreground components) for an instance model."""
    if task == "instances":
        return label_foreground(classes == 1, min_size=min_size)
    return classes


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


def label_foreground_blockwise(plane, foreground_class: int = 1, min_size: int = 0, block: int = 4096) -> int:
    """Label the connected foreground of a 2D array (e.g. a zarr plane view) in place, block by block.

    ``plane`` holds class ids on entry and int32 instance labels on return; its dtype must hold them. Only one
    block (plus one row and one column of its neighbours) is in memory at a time: blocks are labelled on their
    own, labels that meet across block edges are merged with a union-find, and a second pass writes the final
    consecutive labels. Returns the number of instances.
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
    for y in range(0, h, block):
        for x in range(0, w, block):
            plane[y : y + block, x : x + block] = lut[np.asarray(plane[y : y + block, x : x + block])]
    return int(lut.max())


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
