"""Objects of two label images matched one to one by overlap: how ``link_planes`` follows an object through a
stack (z or time). Numpy and scipy only."""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import connected_components

#: an object takes the id of the object of the previous plane it overlaps with at least this IoU
LINK_IOU = 0.3


def match_objects(
    previous: np.ndarray, current: np.ndarray, min_iou: float = LINK_IOU
) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one pairs of objects of two label images that overlap with IoU >= ``min_iou``.

    Among the pairs above ``min_iou``, the matching maximises the total IoU (``linear_sum_assignment`` within
    each group of objects that overlap one another; most groups are a single pair). The overlaps are counted
    sparsely, so the cost grows with the pixels, not with the product of the object counts.

    Returns
    -------
    previous_ids, current_ids : int64 arrays of the same length
        ``current_ids[k]`` matches ``previous_ids[k]``.
    """
    previous, current = np.asarray(previous), np.asarray(current)
    none = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    both = (previous > 0) & (current > 0)
    if not both.any():
        return none
    base = int(current.max()) + 1
    keys, inter = np.unique(previous[both].astype(np.int64) * base + current[both], return_counts=True)
    p, c = keys // base, keys % base
    p_ids, p_area = np.unique(previous[previous > 0], return_counts=True)
    union = p_area[np.searchsorted(p_ids, p)] + np.bincount(current.ravel(), minlength=base)[c] - inter
    good = inter >= min_iou * union
    p, c, iou = p[good], c[good], inter[good] / union[good]
    if not len(p):
        return none
    rows, cols = np.unique(p, return_inverse=True)[1], np.unique(c, return_inverse=True)[1]
    nr, nc = rows.max() + 1, cols.max() + 1
    graph = sparse.coo_matrix((np.ones(len(p)), (rows, nr + cols)), shape=(nr + nc, nr + nc))
    group = connected_components(graph, directed=False)[1][rows]
    sizes = np.bincount(group)
    single = sizes[group] == 1
    take_p, take_c = [p[single]], [c[single]]
    for g in np.flatnonzero(sizes > 1):  # objects that overlap several others: the best one-to-one assignment
        k = np.flatnonzero(group == g)
        pu, pi = np.unique(p[k], return_inverse=True)
        cu, ci = np.unique(c[k], return_inverse=True)
        table = np.zeros((len(pu), len(cu)))
        table[pi, ci] = iou[k]
        r, s = linear_sum_assignment(table, maximize=True)
        ok = table[r, s] > 0
        take_p.append(pu[r[ok]])
        take_c.append(cu[s[ok]])
    return np.concatenate(take_p), np.concatenate(take_c)
