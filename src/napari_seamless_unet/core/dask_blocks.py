"""The worker's side of :func:`~napari_seamless_unet.core.dask_predict.predict_dask`: the network a graph
carries (:class:`ModelPayload`), built once per worker process, and what one block task does (its tiles, on the
image's pooling grid, read from its piece of the image with mirrored borders)."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace

import numpy as np

from . import axes as ax
from .devices import resolve_device
from .inference import TileRunner, choose_tile_shape
from .instances import object_classes
from .model import UNet
from .normalization import Normalization, normalise_tile
from .outputs import output_dtype
from .tiling import TileGrid, read_mirrored, reflect_indices


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
    # the process id: a forked child must not reuse its parent's runner (a CUDA context does not survive a fork)
    key = (payload.token, str(device), precision, tile_shape, tta, os.getpid())
    with _RUNNERS_LOCK:
        runner = _RUNNERS.get(key)
        if runner is None:
            runner = TileRunner(payload.build(), resolve_device(device), precision, tile_shape, tta)
            _RUNNERS[key] = runner
            while len(_RUNNERS) > 4:
                _RUNNERS.popitem(last=False)
        return runner


@dataclass(frozen=True)
class Block:
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


def make_block(model: UNet, region, unit_shape, tile_shape, device) -> Block:
    """The block writing ``region`` ((start, stop) per unit axis) of a plane of ``unit_shape``: its tiles (of
    ``tile_shape``, or the one that covers it and fits ``device``) and the box of image they read; the plane is
    set with ``dataclasses.replace``."""
    geometry = model.geometry
    start = tuple(a for a, _ in region)
    stop = tuple(b for _, b in region)
    origin = tuple((a // step) * step for a, step in zip(start, geometry.step))
    extent = tuple(b - o for b, o in zip(stop, origin))
    tiles = tuple(tile_shape) if tile_shape is not None else choose_tile_shape(model, extent, device)
    block = Block((), start, stop, origin, tiles, ())
    lows = list(unit_shape)
    highs = [0 for _ in unit_shape]
    for _, _, indices in block.tiles(geometry, unit_shape):
        for axis, idx in enumerate(indices):
            lows[axis] = min(lows[axis], int(idx.min()))
            highs[axis] = max(highs[axis], int(idx.max()) + 1)
    return replace(block, box=tuple(zip(lows, highs)))


@dataclass(frozen=True)
class BlockJob:
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


def _read_piece(job: BlockJob, piece: np.ndarray, block: Block, indices) -> np.ndarray:
    """The mirrored input of one tile from ``piece`` (the image at ``block.box``, the plane's other axes kept at
    length 1), as (C, *unit)."""
    shifted = [idx - lo for idx, (lo, _) in zip(indices, block.box)]
    positions = [job.axes.index(a) for a in job.unit]
    prefix = tuple(0 if a in dict(block.plane) else slice(None) for a in job.axes)
    values = read_mirrored(piece, prefix, *shifted, *positions)
    return ax.to_cyx(values, job.axes, job.unit)


def run_block(job: BlockJob, payload: ModelPayload, statistics, piece: np.ndarray, block: Block) -> np.ndarray:
    """One output block: its tiles run on this worker's device, written into a block of the result."""
    extent = tuple(b - a for a, b in zip(block.start, block.stop))
    runner = _runner(payload, job.device, job.precision, block.tile_shape, job.tta)
    model = runner.model
    if job.output == "labels":  # class ids (argmax), what the runner gives
        take, out = None, np.zeros(extent, output_dtype(model, "labels"))
    else:  # probabilities of every class, or of those that labelling reads
        take = slice(None) if job.output == "probabilities" else object_classes(model.num_classes)
        out = np.zeros(np.empty(model.num_classes)[take].shape + extent, np.float32)
    tiles = list(block.tiles(model.geometry, job.unit_shape))
    for first in range(0, len(tiles), job.batch_size):
        batch_tiles = tiles[first : first + job.batch_size]
        batch = [
            normalise_tile(_read_piece(job, piece, block, indices), *statistics, job.name, dict(block.plane))
            for _, _, indices in batch_tiles
        ]
        results = runner(np.stack(batch), "labels" if take is None else "probabilities")
        for (start, stop, _), result in zip(batch_tiles, results):
            lo = tuple(max(a, s) for a, s in zip(start, block.start))
            src = tuple(slice(a - s, b - s) for a, b, s in zip(lo, stop, start))
            dst = tuple(slice(a - s, b - s) for a, b, s in zip(lo, stop, block.start))
            out[(..., *dst)] = result[src] if take is None else result[(take, *src)]
    # the result's axes: C (probabilities), then the image's axes without C, the plane's other axes of length 1
    plane = dict(block.plane)
    lead = out.ndim - len(job.unit)
    order = [a for a in job.out_axes if a in job.unit]
    values = np.transpose(out, (*range(lead), *(lead + job.unit.index(a) for a in order)))
    shape = list(values.shape[:lead]) + [1 if a in plane else values.shape[lead + order.index(a)] for a in job.out_axes]
    return values.reshape(shape)


def statistics(normalization: dict, axes: str, plane: tuple, sample: np.ndarray):
    return Normalization.from_any(normalization).from_plane_sample(sample, axes, dict(plane))
