"""Instance labels that are global across the blocks of a dask array: ids that never collide, objects cut by
block borders given one id, the same objects as the in-memory post-processing.

Connected components are labelled block by block, offset by the counts of the blocks before (a cumulative
sum), and the ids that touch across block faces are merged with ``scipy.sparse.csgraph.connected_components``
(as cellpose's distributed evaluation and dask-image do); the result is a lookup table applied lazily. The steps
of :func:`~napari_seamless_unet.core.postprocess.label_plane` follow on that:

- ``min_size``: sizes summed over blocks, objects below it dropped from the table;
- ``restore_borders`` (two classes) and the border given back to interiors (three classes): local within a few
  pixels, computed with ``map_overlap`` on the global labels;
- ``fill_holes``: the background is labelled the same way (8- or 26-connected, the dual of face-connected
  objects); a background component that touches neither the image's edge nor any object but one is a hole of
  that object. (The in-memory step also fills the background around an object that lies inside another's hole,
  which is not done here.)

Planes of a stack (volumes of a time-lapse for a 3D network) are never connected: the arrays' other axes come
in chunks of one, and only the unit axes (Y, X or Z, Y, X) are merged across.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import ndimage

from .postprocess import BORDER_GAP, BORDER_REACH, _expand_labels
from .postprocess import restore_borders as _restore_borders
from .weights import unit_spacing

#: the overlap, in voxels, that restore_borders and the border reach of three classes read around a block:
#: their distances reach gap + 1 = 3 in-plane pixels; twice that leaves room for ties and coarse z
MARGIN = 2 * (BORDER_GAP + 2)


def _structure(ndim: int, unit: tuple[int, ...], full: bool) -> np.ndarray:
    """Connectivity along the unit axes only (scipy wants 3 along every axis: the others keep their centre):
    faces (``full=False``) or faces, edges and corners."""
    structure = np.zeros((3,) * ndim, bool)
    centre = [slice(None) if a in unit else 1 for a in range(ndim)]
    if full:
        structure[tuple(centre)] = True
        return structure
    middle = [1] * ndim
    structure[tuple(middle)] = True
    for a in unit:
        for d in (0, 2):
            index = list(middle)
            index[a] = d
            structure[tuple(index)] = True
    return structure


def _label_block(mask: np.ndarray, unit: tuple[int, ...], full: bool) -> np.ndarray:
    labels, _ = ndimage.label(mask, structure=_structure(mask.ndim, unit, full))
    return labels.astype(np.int64)


def _block_max(labels: np.ndarray) -> np.ndarray:
    return np.array(labels.max(initial=0), dtype=np.int64).reshape((1,) * labels.ndim)


def _add_offset(labels: np.ndarray, offset: np.ndarray) -> np.ndarray:
    return np.where(labels > 0, labels + offset.reshape(()), 0)


def offset_ids(local):
    """Block-wise ids ``1..n`` of every block (int64) made unique across blocks: each block's ids shifted by the
    counts of the blocks before it (a cumulative sum). Returns the shifted labels and the dask scalar of their
    count."""
    import dask.array as da

    counts = local.map_blocks(_block_max, chunks=tuple((1,) * len(c) for c in local.chunks), dtype=np.int64)
    flat = counts.ravel()
    offsets = (da.cumsum(flat) - flat).reshape(counts.shape).rechunk(1)
    return da.map_blocks(_add_offset, local, offsets, dtype=np.int64), flat.sum()


def label_blocks(mask, unit: tuple[int, ...], full: bool = False):
    """Block-wise connected components of a boolean dask array, with ids made unique by offsets.

    Returns ``(labels, total)``: int64 labels whose ids are unique across blocks (not yet merged across faces),
    and the dask scalar of their count.
    """
    return offset_ids(mask.map_blocks(_label_block, unit, full, dtype=np.int64))


def blocks(array) -> list:
    """The blocks of a dask array as delayed objects, in C order, sharing its graph (not optimised one by one,
    which would copy the graph into every block and compute it again for each)."""
    return list(array.to_delayed(optimize_graph=False).ravel())


def _neighbour_offsets(ndim: int, unit: tuple[int, ...], axis: int, full: bool):
    """Offsets along the unit axes other than ``axis`` that pair a voxel with its neighbours across a face of
    ``axis``: none but itself for face connectivity, all of {-1, 0, 1} for full connectivity."""
    others = [a for a in unit if a != axis]
    steps = (-1, 0, 1) if full else (0,)
    for combo in itertools.product(steps, repeat=len(others)):
        yield dict(zip(others, combo))


def _shifted_pair(a: np.ndarray, b: np.ndarray, shift: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``a`` and ``b`` where ``b`` is moved by ``shift`` (voxel ``i`` of ``a`` against ``i + shift`` of ``b``)."""
    sa, sb = [slice(None)] * a.ndim, [slice(None)] * a.ndim
    for axis, d in shift.items():
        if d > 0:
            sa[axis], sb[axis] = slice(None, -d), slice(d, None)
        elif d < 0:
            sa[axis], sb[axis] = slice(-d, None), slice(None, d)
    return a[tuple(sa)], b[tuple(sb)]


def _face_pairs(first: np.ndarray, second: np.ndarray, axis: int, unit, full: bool, flip: bool = False) -> np.ndarray:
    """(id, id) pairs of neighbours across a face: ``first`` and ``second`` are slabs two voxels thick along
    ``axis``; ids > 0 on both sides; ``flip``: (second's id, first's id)."""
    a = np.take(first, [0], axis=axis)
    b = np.take(second, [1], axis=axis)
    pairs = []
    for shift in _neighbour_offsets(first.ndim, unit, axis, full):
        x, y = _shifted_pair(a, b, shift)
        both = (x > 0) & (y > 0)
        pairs.append(np.stack([x[both], y[both]], axis=1))
    pairs = np.unique(np.concatenate(pairs), axis=0)
    return pairs[:, ::-1] if flip else pairs


def _slabs(array, unit, axis: int):
    """Slabs two voxels thick across every inner block face along ``axis``, whole along the other unit axes
    (so that diagonal neighbours across block corners are seen too)."""
    bounds = np.cumsum(array.chunks[axis])[:-1]
    whole = {a: -1 for a in unit if a != axis}
    for p in bounds.tolist():
        index = [slice(None)] * array.ndim
        index[axis] = slice(p - 1, p + 1)
        yield array[tuple(index)].rechunk({axis: 2, **whole})


def face_pairs(first, unit, full: bool, second=None) -> list:
    """Delayed (N, 2) arrays of ids that are neighbours across block faces: of ``first`` with itself, or of
    ``first`` (voxel on one side) with ``second`` (its neighbour on the other side, both directions)."""
    import dask

    out = []
    for axis in unit:
        arrays = [(first, first)] if second is None else [(first, second), (second, first)]
        for a_arr, b_arr in arrays:
            for slab_a, slab_b in zip(_slabs(a_arr, unit, axis), _slabs(b_arr, unit, axis)):
                flip = a_arr is not first  # pairs of ``first``'s id, then ``second``'s
                for da_, db_ in zip(blocks(slab_a), blocks(slab_b)):
                    out.append(dask.delayed(_face_pairs)(da_, db_, axis, unit, full, flip))
    return out


def _ids_and_counts(labels: np.ndarray):
    ids, counts = np.unique(labels, return_counts=True)
    keep = ids > 0
    return ids[keep], counts[keep]


def _components(total: int, pairs: list) -> np.ndarray:
    """The connected component (0 for id 0) of every id ``0..total`` given the pairs that join them."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    edges = np.concatenate([np.zeros((0, 2), np.int64), *pairs]).astype(np.int64)
    n = int(total) + 1
    graph = coo_matrix((np.ones(len(edges), np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    # id 0 is alone (no pair holds it): its component and component 0 swap numbers
    zero = component[0]
    return np.where(component == zero, 0, np.where(component == 0, zero, component))


def _merge_table(total, pairs: list, sizes: list, min_size: int) -> np.ndarray:
    """Lookup table from block-wise ids to final ids 1..n: ids joined across faces become one object, objects of
    fewer than ``min_size`` voxels 0."""
    component = _components(total, pairs)
    # A component's number is not 0 only for ids > 0; renumber 1..n and drop the small ones.
    count = np.zeros(len(component), np.int64)
    for ids, counts in sizes:
        np.add.at(count, component[ids], counts)
    keep = count >= max(1, int(min_size))
    keep[0] = False
    renumber = np.zeros(len(component), np.int64)
    renumber[keep] = np.arange(1, int(keep.sum()) + 1)
    return renumber[component].astype(np.int32)


def _size_table(total, sizes: list, min_size: int) -> np.ndarray:
    """Lookup table that keeps the objects ``1..total`` of at least ``min_size`` voxels (summed over blocks)."""
    count = np.zeros(int(total) + 1, np.int64)
    for ids, counts in sizes:
        np.add.at(count, ids, counts)
    table = np.arange(int(total) + 1, dtype=np.int32)
    table[count < int(min_size)] = 0
    table[0] = 0
    return table


def _apply_table(labels: np.ndarray, table: np.ndarray) -> np.ndarray:
    return table[labels]


def global_components(mask, unit, min_size: int = 0, full: bool = False):
    """Connected components of a boolean dask array, global across its blocks (face connectivity along the unit
    axes unless ``full``), objects of fewer than ``min_size`` voxels removed: lazy int32 labels."""
    import dask
    import dask.array as da

    labels, total = label_blocks(mask, unit, full)
    pairs = face_pairs(labels, unit, full)
    sizes = [dask.delayed(_ids_and_counts)(block) for block in blocks(labels)]
    table = dask.delayed(_merge_table)(total, pairs, sizes, min_size)
    return da.map_blocks(_apply_table, labels, table, dtype=np.int32, meta=np.array((), np.int32))


def _restore_block(labels: np.ndarray, unit, spacing) -> np.ndarray:
    plane = _squeeze(labels, unit)
    return _restore_borders(plane, spacing=spacing).reshape(labels.shape)


def _grow_block(labels: np.ndarray, foreground: np.ndarray, unit, spacing) -> np.ndarray:
    """Three classes: every seed takes back the foreground within :data:`BORDER_REACH` nearer to it."""
    seeds = _squeeze(labels, unit)
    fg = _squeeze(foreground, unit)
    grown = _expand_labels(seeds, BORDER_REACH, unit_spacing(spacing, seeds.ndim))
    return np.where(fg | (seeds > 0), grown, 0).astype(np.int32).reshape(labels.shape)


def _squeeze(block: np.ndarray, unit) -> np.ndarray:
    """The unit axes of a block whose other axes have length 1."""
    return block.reshape([block.shape[a] for a in unit])


def _depth(ndim: int, unit) -> dict[int, int]:
    return {a: (MARGIN if a in unit else 0) for a in range(ndim)}


def restore_borders_global(labels, unit, spacing=None):
    """:func:`~napari_seamless_unet.core.postprocess.restore_borders` of global labels, block by block."""
    return labels.map_overlap(
        _restore_block, depth=_depth(labels.ndim, unit), boundary="none", unit=unit, spacing=spacing, dtype=np.int32
    )


def grow_into_borders_global(labels, foreground, unit, spacing=None):
    """The border band of a three-class model given back to the interiors (``label_three_classes``)."""
    import dask.array as da

    return da.map_overlap(
        _grow_block,
        labels,
        foreground,
        depth=_depth(labels.ndim, unit),
        boundary="none",
        unit=unit,
        spacing=spacing,
        dtype=np.int32,
        align_arrays=False,
    )


def remove_small_global(labels, min_size: int):
    """Objects of fewer than ``min_size`` voxels (summed over blocks) set to 0."""
    import dask
    import dask.array as da

    sizes = [dask.delayed(_ids_and_counts)(block) for block in blocks(labels)]
    table = dask.delayed(_size_table)(labels.max(), sizes, min_size)
    return da.map_blocks(_apply_table, labels, table, dtype=np.int32, meta=np.array((), np.int32))
