"""``fill_holes`` of global labels block by block: the background labelled like the objects (8- or
26-connected, the dual of face-connected objects), and every background component given to the first object
that encloses it, as :func:`~napari_seamless_unet.core.postprocess.fill_holes` gives it, also where an
object lies inside another's hole."""

from __future__ import annotations

import itertools

import numpy as np

from .dask_labels import _components, _shifted_pair, blocks, face_pairs, label_blocks


def _block_touching(first: np.ndarray, second: np.ndarray, unit) -> np.ndarray:
    """(id of ``first``, id of ``second``) pairs of neighbours (faces, edges and corners) inside one block, ids
    > 0 (``first`` may be ``second``: its pairs of one id are dropped later)."""
    pairs = [np.zeros((0, 2), np.int64)]
    for shift in itertools.product((-1, 0, 1), repeat=len(unit)):
        if not any(shift):
            continue
        x, y = _shifted_pair(first, second, dict(zip(unit, shift)))
        both = (x > 0) & (y > 0)
        pairs.append(np.stack([x[both], y[both]], axis=1).astype(np.int64))
    return np.unique(np.concatenate(pairs), axis=0)


def _edge_ids(labels: np.ndarray) -> np.ndarray:
    return np.unique(labels[labels > 0]).astype(np.int64)


def _first_voxels(labels: np.ndarray, unit, block_start: tuple, unit_shape: tuple):
    """(ids, raster position of each id's first voxel in its plane) of one block: the order in which
    ``ndimage.label`` numbers objects, which decides the object a hole goes to when several enclose it."""
    ids, first = np.unique(labels, return_index=True)
    coords = np.unravel_index(first, labels.shape)
    position = np.ravel_multi_index(tuple(coords[a] + block_start[a] for a in unit), unit_shape)
    keep = ids > 0
    return ids[keep], position[keep]


def _separators(n: int, edges: np.ndarray, root: int) -> tuple[np.ndarray, np.ndarray]:
    """For every node of an undirected graph, its nearest *separator*: the nearest node on its DFS-tree path
    to ``root`` whose removal cuts it off from ``root`` (-1: none); and the DFS discovery order.

    Tarjan's articulation points, iteratively: a tree child ``v`` of ``u`` with ``low[v] >= disc[u]`` is cut
    off by ``u``. The separators of a node are its nearest one, then that one's, and so on.
    """
    from scipy.sparse import csr_matrix

    edges = np.concatenate([edges, edges[:, ::-1]]) if len(edges) else edges.reshape(0, 2)
    graph = csr_matrix((np.ones(len(edges), np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
    indptr, indices = graph.indptr, graph.indices
    disc = np.full(n, -1, np.int64)
    low = np.zeros(n, np.int64)
    parent = np.full(n, -1, np.int64)
    order = []
    clock = 0
    disc[root] = low[root] = clock
    order.append(root)
    stack = [(root, indptr[root])]
    while stack:
        u, i = stack[-1]
        if i < indptr[u + 1]:
            stack[-1] = (u, i + 1)
            v = indices[i]
            if disc[v] < 0:
                clock += 1
                disc[v] = low[v] = clock
                parent[v] = u
                order.append(v)
                stack.append((v, indptr[v]))
            elif v != parent[u]:
                low[u] = min(low[u], disc[v])
        else:
            stack.pop()
            if stack:
                p = stack[-1][0]
                low[p] = min(low[p], low[u])
    nearest = np.full(n, -1, np.int64)
    for v in order[1:]:  # parents before children
        p = parent[v]
        nearest[v] = p if (p != root and low[v] >= disc[p]) else nearest[p]
    return nearest, np.asarray(order, np.int64)


def _hole_table(
    background_total,
    joined: list,
    touching: list,
    edge: list,
    objects_total,
    contacts: list,
    object_edge: list,
    firsts: list,
) -> np.ndarray:
    """For every background id: the object that fills it (0: none), as ``postprocess.fill_holes`` decides.

    ``fill_holes`` gives a background voxel to the first object (in ``ndimage.label``'s order) that encloses
    it: whose removal cuts it off from the image's edge through everything else (background, other objects).
    On the graph of background components, objects and the edge, joined where they touch (faces, edges and
    corners), the objects that enclose a component are the separators between it and the edge."""
    component = _components(background_total, joined)
    n_objects = int(objects_total) + 1
    n_background = int(component.max()) + 1
    node_of = component + n_objects  # background component c is node n_objects + c; objects are their ids
    edge_node = 0  # the image's edge (id 0 is no object)
    parts = [np.zeros((0, 2), np.int64)]
    parts += [np.stack([node_of[p[:, 0]], p[:, 1]], axis=1) for p in touching]
    parts += list(contacts)
    parts += [np.stack([np.zeros_like(ids), node_of[ids]], axis=1) for ids in edge]
    parts += [np.stack([np.zeros_like(ids), ids], axis=1) for ids in object_edge]
    edges = np.unique(np.concatenate(parts), axis=0)
    edges = edges[edges[:, 0] != edges[:, 1]]
    n = n_objects + n_background
    nearest, order = _separators(n, edges, edge_node)
    rank = np.full(n, np.iinfo(np.int64).max, np.int64)
    for ids, position in firsts:
        rank[ids] = np.minimum(rank[ids], position)
    # the first enclosing object: the smallest rank among the separators of a node, up its chain
    best = np.full(n, -1, np.int64)
    for v in order[1:]:
        s = nearest[v]
        if s < 0:
            continue
        candidate = s if s < n_objects else -1
        inherited = best[s]
        if candidate < 0 or (inherited >= 0 and rank[inherited] < rank[candidate]):
            candidate = inherited
        best[v] = candidate
    fill = np.maximum(best[n_objects:], 0)  # per background component
    table = fill[component].astype(np.int32)
    table[0] = 0
    return table


def _fill_block(objects: np.ndarray, background: np.ndarray, table: np.ndarray) -> np.ndarray:
    return np.where(objects > 0, objects, table[background]).astype(np.int32)


def _edges_of(array, unit) -> list:
    """Delayed ids of ``array`` on the faces of every plane (volume): the image's edge."""
    import dask

    out = []
    for axis in unit:
        for end in (0, -1):
            index = [slice(None)] * array.ndim
            index[axis] = slice(0, 1) if end == 0 else slice(-1, None)
            out += [dask.delayed(_edge_ids)(b) for b in blocks(array[tuple(index)])]
    return out


def fill_holes_global(labels, unit, order=None):
    """:func:`~napari_seamless_unet.core.postprocess.fill_holes` of global labels, block by block.

    ``order`` are the labels whose first voxels give the objects' order (``ndimage.label``'s, before borders
    were given back); default ``labels``."""
    import dask
    import dask.array as da

    order = labels if order is None else order
    background, total = label_blocks(labels == 0, unit, full=True)
    joined = face_pairs(background, unit, full=True)
    touching = [dask.delayed(_block_touching)(b, o, unit) for b, o in zip(blocks(background), blocks(labels))]
    touching += face_pairs(background, unit, full=True, second=labels)
    contacts = [dask.delayed(_block_touching)(o, o, unit) for o in blocks(labels)]
    contacts += face_pairs(labels, unit, full=True)
    starts = [np.cumsum((0, *c))[:-1] for c in order.chunks]
    unit_shape = tuple(order.shape[a] for a in unit)
    firsts = [
        dask.delayed(_first_voxels)(block, unit, tuple(int(starts[a][i]) for a, i in enumerate(index)), unit_shape)
        for index, block in zip(np.ndindex(*order.numblocks), blocks(order))
    ]
    table = dask.delayed(_hole_table)(
        total, joined, touching, _edges_of(background, unit), labels.max(), contacts, _edges_of(labels, unit), firsts
    )
    return da.map_blocks(_fill_block, labels, background, table, dtype=np.int32, meta=np.array((), np.int32))
