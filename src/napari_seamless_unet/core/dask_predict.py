"""Overlap-tile prediction as a dask graph: images bigger than one machine, on whatever scheduler is active.

Each output block is one task. It reads the part of the image its tiles need (the exact halo of the valid
network, mirrored at the image's edges as :func:`~napari_seamless_unet.core.predict.predict` mirrors them), and
its tiles start on the image's pooling grid, so every block computes exactly what one pass over the whole
image would: ``predict_dask(...).compute()`` equals ``predict(...)`` for any chunking. The intensity statistics
of every plane are a task of their own, read from the same strided sample as ``predict`` reads.

The network travels in the graph once, as weights and constructor arguments (:class:`ModelPayload`); a worker
builds it on its own device the first time it needs it and keeps it for the following blocks.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from . import axes as ax
from .dask_blocks import Block, BlockJob, ModelPayload, make_block, run_block, statistics
from .devices import resolve_device
from .errors import UNetInputError
from .model import UNet
from .normalization import plane_sample_index
from .outputs import output_dtype

#: the default output block per axis of a 2D (Y, X) or 3D (Z, Y, X) network, before rounding to its pooling
#: grid: about a million output pixels, so that the halo costs little (depth 4: tiles of 1212^2, 1.40 input pixels
#: per output pixel) and a plane of 8192^2 still makes 64 blocks to spread over workers
DEFAULT_BLOCK = {2: (1024, 1024), 3: (64, 256, 256)}
#: on a GPU a block is a batch of tiles: four times the pixels keep it busy (the tiles still fit its memory)
GPU_BLOCK = {2: (2048, 2048), 3: (128, 512, 512)}


# -- the image ---------------------------------------------------------------------------------------------------
def as_dask_array(image, chunks=None):
    """``image`` as a dask array: a dask array as it is; a zarr array (or a path to a zarr store or OME-Zarr
    image: its first level) read chunk by chunk where the task runs; a numpy array put in the graph once."""
    import dask.array as da

    if isinstance(image, (str, os.PathLike)):
        from ..io.read import open_zarr

        image, _ = open_zarr(image)
    if isinstance(image, da.Array):
        return image
    if not (hasattr(image, "shape") and hasattr(image, "dtype")):
        image = np.asarray(image)
    if chunks is None:
        chunks = getattr(image, "chunks", None) if not isinstance(image, np.ndarray) else None
        chunks = chunks if isinstance(chunks, tuple) and len(chunks) == len(image.shape) else "auto"
    return da.from_array(image, chunks=chunks, asarray=True, inline_array=False)


def image_axes(image) -> str | None:
    """The axes a zarr path names in its metadata (OME-Zarr multiscales or an ``axes`` attribute), else None."""
    if isinstance(image, (str, os.PathLike)):
        from ..io.read import open_zarr

        return open_zarr(image)[1]
    return None


# -- the blocks --------------------------------------------------------------------------------------------------
def default_chunks(model: UNet, unit_shape: Sequence[int], device=None) -> tuple[int, ...]:
    """Output block shape of the unit axes (Y, X or Z, Y, X) for ``device``: :data:`DEFAULT_BLOCK` (CPU, MPS)
    or :data:`GPU_BLOCK` (CUDA) rounded to the network's pooling grid, no larger than the image needs."""
    blocks = GPU_BLOCK if resolve_device(device).type == "cuda" else DEFAULT_BLOCK
    return tuple(
        min(step * math.ceil(n / step), step * max(1, round(b / step)))
        for n, b, step in zip(unit_shape, blocks[model.ndim], model.geometry.step)
    )


def _normalise_chunks(chunks, model: UNet, unit_shape, device=None) -> tuple[tuple[int, ...], ...]:
    """Block sizes along every unit axis, as dask's chunks: ``chunks`` an int, a tuple of one size per axis, or a
    tuple of tuples of sizes; default :func:`default_chunks`."""
    if chunks is None:
        chunks = default_chunks(model, unit_shape, device)
    if isinstance(chunks, (int, np.integer)):
        chunks = (int(chunks),) * len(unit_shape)
    chunks = tuple(chunks)
    if len(chunks) != len(unit_shape):
        names = ax.unit_axes(model.ndim)
        raise UNetInputError(
            f"chunks {chunks} must give one block size per axis {', '.join(names)} of a {model.ndim}D network"
        )
    out = []
    for c, n, letter in zip(chunks, unit_shape, ax.unit_axes(model.ndim)):
        if isinstance(c, (int, np.integer)):
            if c < 1:
                raise UNetInputError(f"chunks must be positive, got {c} along {letter}")
            c = min(int(c), n)
            sizes = (c,) * (n // c) + ((n % c,) if n % c else ())
        else:
            sizes = tuple(int(s) for s in c)
            if sum(sizes) != n or min(sizes) < 1:
                raise UNetInputError(f"chunks {sizes} along {letter} must be positive and add up to {n}")
        out.append(sizes)
    return tuple(out)


def check_image(model: UNet, image, axes, name):
    """``predict``'s checks of an image against the network (dtype, axes, context); returns the axes."""
    from .predict import _check_image

    return _check_image(model, image, axes, name)


def build_graph(
    model: UNet,
    image,
    *,
    axes: str | None = None,
    chunks=None,
    tile_shape: Sequence[int] | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    precision: str = "auto",
    tta: bool = False,
    output: str = "probabilities",
    name: str = "image",
):
    """The dask array of :func:`predict_dask` (``output="probabilities"``), of class ids (``"labels"``), or of the
    foreground probabilities an instance model's labelling reads (``"foreground"``: class 1, or classes 1 and 2
    of a three-class model on a leading axis)."""
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    if axes is None:
        axes = image_axes(image)
    source = as_dask_array(image)
    axes = check_image(model, source, axes, name)
    dev = resolve_device(device)
    unit = ax.unit_axes(model.ndim)
    unit_shape = tuple(int(source.shape[axes.index(a)]) for a in unit)
    if tile_shape is not None:
        tile_shape = tuple(int(t) for t in tile_shape)
        model.geometry.check_input_shape(tile_shape, what="tile")
    block_sizes = _normalise_chunks(chunks, model, unit_shape, dev)
    if batch_size is None:
        batch_size = 1 if dev.type == "cpu" else 8
    if int(batch_size) < 1:
        raise UNetInputError(f"batch_size must be >= 1, got {batch_size}")
    out_axes = ax.spatial_axes(axes)
    # Left open, each worker takes its own best device (a GPU where it has one); the tiles are chosen for ``dev``.
    job = BlockJob(
        axes,
        unit,
        unit_shape,
        None if device is None else str(dev),
        precision,
        bool(tta),
        int(batch_size),
        output,
        out_axes,
        name,
    )

    payload = ModelPayload(model)
    token = tokenize(payload.token, source.name, axes, block_sizes, tile_shape, job)
    label = {"probabilities": "unet-predict", "labels": "unet-classes", "foreground": "unet-foreground"}[output]
    out_name = f"{label}-{token}"
    payload_key = f"unet-model-{payload.token}"
    dsk: dict = {payload_key: payload}
    dependencies = []

    bounds = [list(itertools.pairwise(np.cumsum((0, *sizes)).tolist())) for sizes in block_sizes]
    stack = ax.stack_axes(axes, unit)
    # the blocks' tiles and boxes are the same in every plane: laid out once
    layout = {
        combo: make_block(model, tuple(b[i] for b, i in zip(bounds, combo)), unit_shape, tile_shape, dev)
        for combo in itertools.product(*(range(len(b)) for b in bounds))
    }
    for plane in ax.iter_planes(source.shape, axes, unit):
        # the plane's statistics: the same strided sample as predict reads, as one chunk
        sample = source[plane_sample_index(source.shape, axes, plane)]
        sample = sample.rechunk(sample.shape) if sample.ndim else sample
        dependencies.append(sample)
        stats_key = (f"unet-stats-{token}", *plane.values())
        sample_key = (sample.name, *(0,) * sample.ndim)
        dsk[stats_key] = (statistics, model.normalization.to_dict(), axes, tuple(plane.items()), sample_key)
        for combo, block in layout.items():
            block = replace(block, plane=tuple(plane.items()))
            index = tuple(plane[a] if a in plane else slice(lo, hi) for a, (lo, hi) in _box_by_axis(axes, block))
            # the plane's other axes kept at length 1, so that the task's piece has the image's axes
            index = tuple(slice(i, i + 1) if isinstance(i, int) else i for i in index)
            piece = source[index]
            piece = piece.rechunk(piece.shape)
            dependencies.append(piece)
            where = dict(zip(unit, combo))
            key_index = tuple(plane[a] if a in stack else where[a] for a in out_axes)
            if output in ("probabilities", "foreground") and _lead(model, output):
                key_index = (0, *key_index)
            dsk[(out_name, *key_index)] = (
                run_block,
                job,
                payload_key,
                stats_key,
                (piece.name, *(0,) * piece.ndim),
                block,
            )
    spatial_chunks = tuple(
        block_sizes[unit.index(a)] if a in unit else (1,) * source.shape[axes.index(a)] for a in out_axes
    )
    lead = _lead(model, output)
    chunks_out = (((lead,),) if lead else ()) + spatial_chunks
    dtype = output_dtype(model, "labels") if output == "labels" else np.float32  # labels: class ids
    graph = HighLevelGraph.from_collections(out_name, dsk, dependencies=dependencies)
    return da.Array(graph, out_name, chunks_out, dtype=dtype)


def _lead(model: UNet, output: str) -> int:
    """Length of the result's leading class axis (0: none)."""
    if output == "probabilities":
        return model.num_classes
    if output == "foreground" and model.num_classes == 3:
        return 2
    return 0


def _box_by_axis(axes: str, block: Block):
    """(axis letter, (lo, hi)) for every image axis: the unit axes' box, the others whole (C) or the plane's."""
    unit = "ZYX"[-len(block.box) :]
    for a in axes:
        if a in unit:
            yield a, block.box[unit.index(a)]
        else:
            yield a, (None, None)


def predict_dask(
    model: UNet,
    image,
    *,
    axes: str | None = None,
    chunks=None,
    tile_shape: Sequence[int] | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    precision: str = "auto",
    tta: bool = False,
    name: str = "image",
):
    """Class probabilities of an image as a lazy dask array, computed block by block on any dask scheduler.

    ``predict_dask(model, image).compute()`` equals :func:`~napari_seamless_unet.predict` (to float tolerance):
    each block reads the exact halo the valid network needs, mirrored at the image's edges, and its tiles sit
    on the image's pooling grid. Nothing runs until the result is computed or stored (``.to_zarr(...)``), by
    the scheduler that is active then: threads by default, or a ``dask.distributed`` ``Client`` (a
    ``LocalCluster``, or a cluster of many machines). A failed worker's blocks are recomputed by the scheduler.

    Parameters
    ----------
    model : UNet
        A trained network. It travels in the graph once (weights and constructor arguments); each worker builds
        it on its own device (``device``, default CUDA where the worker has a GPU) for its first block.
    image : array-like or path
        numpy, dask or zarr array, or the path of a zarr store or OME-Zarr image (its first level; its axes from
        the metadata), with axes ``axes`` as in :func:`~napari_seamless_unet.predict`.
    chunks : int or tuple, optional
        Output block size along Y, X (Z, Y, X for a 3D network): an int, one size per axis, or dask-style sizes
        per axis. Any chunking gives the same result. Default :func:`default_chunks`: about 1024 x 1024 output
        pixels (2048 x 2048 on CUDA), on the network's pooling grid.
    tile_shape, batch_size, device, precision, tta
        As in :func:`~napari_seamless_unet.predict`; ``tile_shape`` default: the tile that covers a block and
        fits the device's memory. ``device`` left None, every worker takes its own (a GPU where it has one);
        the tiles are chosen for this machine's.

    Returns
    -------
    dask.array.Array
        float32 ``(num_classes, *spatial)`` with the axes of :func:`~napari_seamless_unet.core.predict.output_layout`;
        one chunk per block (the classes in one chunk, the stack's other axes in chunks of 1).
    """
    return build_graph(
        model,
        image,
        axes=axes,
        chunks=chunks,
        tile_shape=tile_shape,
        batch_size=batch_size,
        device=device,
        precision=precision,
        tta=tta,
        output="probabilities",
        name=name,
    )
