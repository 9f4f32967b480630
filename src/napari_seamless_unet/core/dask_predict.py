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
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from . import axes as ax
from .devices import resolve_device
from .errors import UNetInputError
from .inference import TileRunner, choose_tile_shape
from .model import UNet
from .normalization import Normalization, apply_statistics, plane_sample_index
from .tiling import TileGrid, read_mirrored, reflect_indices

#: the default output block per axis of a 2D (Y, X) or 3D (Z, Y, X) network, before rounding to its pooling
#: grid: about a million output pixels, so that the halo costs little (depth 4: 1208^2 / 1024^2 = 1.39 inputs
#: per output pixel) and a plane of 8192^2 still makes 64 blocks to spread over workers
DEFAULT_BLOCK = {2: (1024, 1024), 3: (64, 256, 256)}


# -- the network in the graph ------------------------------------------------------------------------------------
class ModelPayload:
    """What a worker needs to rebuild a network: constructor arguments and float32 CPU weights (no pickled
    module, no device); ``token`` names it, so a worker builds each network once."""

    def __init__(self, model: UNet):
        from dask.base import tokenize

        self.config = dict(model.config)
        self.state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        self.token = tokenize(
            repr(sorted(self.config.items())), *(v.float().numpy().tobytes() for v in self.state.values())
        )

    def build(self) -> UNet:
        model = UNet(**self.config)
        model.load_state_dict(self.state)
        return model.eval()


_RUNNERS: OrderedDict = OrderedDict()
_RUNNERS_LOCK = threading.Lock()


def _runner(payload: ModelPayload, device, precision: str, tile_shape: tuple, tta: bool) -> TileRunner:
    """The network of ``payload`` on this process's device, built on first use and kept (a few at most)."""
    key = (payload.token, str(device), precision, tile_shape, tta, os.getpid())
    with _RUNNERS_LOCK:
        runner = _RUNNERS.get(key)
        if runner is None:
            runner = TileRunner(payload.build(), resolve_device(device), precision, tile_shape, tta)
            _RUNNERS[key] = runner
            while len(_RUNNERS) > 4:
                _RUNNERS.popitem(last=False)
        return runner


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
def default_chunks(model: UNet, unit_shape: Sequence[int]) -> tuple[int, ...]:
    """Output block shape of the unit axes (Y, X or Z, Y, X): :data:`DEFAULT_BLOCK` rounded up to the network's
    pooling grid, no larger than the image needs."""
    return tuple(
        min(step * math.ceil(n / step), step * max(1, round(b / step)))
        for n, b, step in zip(unit_shape, DEFAULT_BLOCK[model.ndim], model.geometry.step)
    )


def _normalise_chunks(chunks, model: UNet, unit_shape) -> tuple[tuple[int, ...], ...]:
    """Block sizes along every unit axis, as dask's chunks: ``chunks`` an int, a tuple of one size per axis, or a
    tuple of tuples of sizes; default :func:`default_chunks`."""
    if chunks is None:
        chunks = default_chunks(model, unit_shape)
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


@dataclass(frozen=True)
class _Block:
    """One output block of one plane (or volume): the region it writes, and how its tiles are laid out.

    The tiles start at ``origin`` (the block's start rounded down to the pooling grid) and cover up to ``stop``;
    ``box`` is the part of the image their mirrored inputs read.
    """

    plane: tuple[tuple[str, int], ...]
    start: tuple[int, ...]
    stop: tuple[int, ...]
    origin: tuple[int, ...]
    tile_shape: tuple[int, ...]
    box: tuple[tuple[int, int], ...]

    def tiles(self, geometry, image_shape):
        """(output start, output stop, mirrored input indices) of every tile, in image coordinates."""
        extent = tuple(b - o for b, o in zip(self.stop, self.origin))
        grid = TileGrid.for_tile_shape(extent, self.tile_shape, geometry)
        for tile in grid:
            start = tuple(o + s for o, s in zip(self.origin, tile.out_start))
            stop = tuple(min(a + s, b) for a, s, b in zip(start, grid.stride, self.stop))
            indices = tuple(
                reflect_indices(a - h, a - h + t, n)
                for a, h, t, n in zip(start, grid.halos, self.tile_shape, image_shape)
            )
            yield start, stop, indices


def _make_block(model: UNet, plane: dict, region, unit_shape, tile_shape, device) -> _Block:
    geometry = model.geometry
    start = tuple(a for a, _ in region)
    stop = tuple(b for _, b in region)
    origin = tuple((a // step) * step for a, step in zip(start, geometry.step))
    extent = tuple(b - o for b, o in zip(stop, origin))
    tiles = tuple(tile_shape) if tile_shape is not None else choose_tile_shape(model, extent, device)
    block = _Block(tuple(plane.items()), start, stop, origin, tiles, ())
    lows = list(unit_shape)
    highs = [0 for _ in unit_shape]
    for _, _, indices in block.tiles(geometry, unit_shape):
        for axis, idx in enumerate(indices):
            lows[axis] = min(lows[axis], int(idx.min()))
            highs[axis] = max(highs[axis], int(idx.max()) + 1)
    return _Block(block.plane, start, stop, origin, tiles, tuple(zip(lows, highs)))


@dataclass(frozen=True)
class _Job:
    """What every block task of one call shares (small: it is in every task)."""

    axes: str
    unit: str
    unit_shape: tuple[int, ...]
    device: str | None
    precision: str
    tta: bool
    batch_size: int
    output: str  # "probabilities", "labels" or "foreground" (the classes after the background, for labelling)
    out_axes: str  # the result's axes without C
    name: str


def _read_piece(job: _Job, piece: np.ndarray, block: _Block, indices) -> np.ndarray:
    """The mirrored input of one tile from ``piece`` (the image at ``block.box``, the plane's other axes kept at
    length 1), as (C, *unit)."""
    shifted = [idx - lo for idx, (lo, _) in zip(indices, block.box)]
    positions = [job.axes.index(a) for a in job.unit]
    prefix = tuple(0 if a in dict(block.plane) else slice(None) for a in job.axes)
    values = read_mirrored(piece, prefix, *shifted, *positions)
    return ax.to_cyx(values, job.axes, job.unit)


def _run_block(job: _Job, payload: ModelPayload, statistics, piece: np.ndarray, block: _Block) -> np.ndarray:
    """One output block: its tiles run on this worker's device, written into a block of the result."""
    extent = tuple(b - a for a, b in zip(block.start, block.stop))
    classes = payload.config["num_classes"]
    if job.output == "probabilities":
        out = np.zeros((classes, *extent), np.float32)
    elif job.output == "foreground":
        from .instances import object_classes

        kept = object_classes(classes)
        out = np.zeros((*(() if isinstance(kept, int) else (classes - 1,)), *extent), np.float32)
    else:
        out = np.zeros(extent, np.uint8 if classes <= 255 else np.int32)
    runner = _runner(payload, job.device, job.precision, block.tile_shape, job.tta)
    geometry = runner.model.geometry
    offset, scale = statistics
    tiles = list(block.tiles(geometry, job.unit_shape))
    for first in range(0, len(tiles), job.batch_size):
        batch_tiles = tiles[first : first + job.batch_size]
        batch = []
        for _, _, indices in batch_tiles:
            values = _read_piece(job, piece, block, indices)
            if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
                raise UNetInputError(
                    f"{job.name} contains NaN or Inf values (plane {dict(block.plane) or 0}); replace them first, "
                    f"e.g. numpy.nan_to_num."
                )
            batch.append(apply_statistics(values, offset, scale))
        mode = "labels" if job.output == "labels" else "probabilities"
        results = runner(np.stack(batch), mode)
        for (start, stop, _), result in zip(batch_tiles, results):
            lo = tuple(max(a, s) for a, s in zip(start, block.start))
            src = tuple(slice(a - s, b - s) for a, b, s in zip(lo, stop, start))
            dst = tuple(slice(a - s, b - s) for a, b, s in zip(lo, stop, block.start))
            if job.output == "probabilities":
                out[(slice(None), *dst)] = result[(slice(None), *src)]
            elif job.output == "foreground":
                out[dst if out.ndim == len(dst) else (slice(None), *dst)] = result[(kept, *src)]
            else:
                out[dst] = result[src]
    # the result's axes: C (probabilities), then the image's axes without C, the plane's other axes of length 1
    plane = dict(block.plane)
    lead = out.ndim - len(job.unit)
    order = [a for a in job.out_axes if a in job.unit]
    values = np.transpose(out, (*range(lead), *(lead + job.unit.index(a) for a in order)))
    shape = list(values.shape[:lead]) + [1 if a in plane else values.shape[lead + order.index(a)] for a in job.out_axes]
    return values.reshape(shape)


def _statistics(normalization: dict, axes: str, plane: tuple, sample: np.ndarray):
    return Normalization.from_any(normalization).from_plane_sample(sample, axes, dict(plane))


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
    block_sizes = _normalise_chunks(chunks, model, unit_shape)
    if batch_size is None:
        batch_size = 1 if dev.type == "cpu" else 8
    if int(batch_size) < 1:
        raise UNetInputError(f"batch_size must be >= 1, got {batch_size}")
    out_axes = ax.spatial_axes(axes)
    # Left open, each worker takes its own best device (a GPU where it has one); the tiles are chosen for ``dev``.
    job = _Job(
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
    for plane in ax.iter_planes(source.shape, axes, unit):
        # the plane's statistics: the same strided sample as predict reads, as one chunk
        sample = source[plane_sample_index(source.shape, axes, plane)]
        sample = sample.rechunk(sample.shape) if sample.ndim else sample
        dependencies.append(sample)
        stats_key = (f"unet-stats-{token}", *plane.values())
        sample_key = (sample.name, *(0,) * sample.ndim)
        dsk[stats_key] = (_statistics, model.normalization.to_dict(), axes, tuple(plane.items()), sample_key)
        for combo in itertools.product(*(range(len(b)) for b in bounds)):
            region = tuple(b[i] for b, i in zip(bounds, combo))
            block = _make_block(model, plane, region, unit_shape, tile_shape, dev)
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
                _run_block,
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
    dtype = np.float32 if output != "labels" else (np.uint8 if model.num_classes <= 255 else np.int32)
    graph = HighLevelGraph.from_collections(out_name, dsk, dependencies=dependencies)
    return da.Array(graph, out_name, chunks_out, dtype=dtype)


def _lead(model: UNet, output: str) -> int:
    """Length of the result's leading class axis (0: none)."""
    if output == "probabilities":
        return model.num_classes
    if output == "foreground" and model.num_classes == 3:
        return 2
    return 0


def _box_by_axis(axes: str, block: _Block):
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
        pixels, on the network's pooling grid.
    tile_shape, batch_size, device, precision, tta
        As in :func:`~napari_seamless_unet.predict`; ``tile_shape`` default: the tile that covers a block and
        fits the device's memory. ``device`` is resolved here and used by every worker.

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
