"""Overlap-tile prediction: probabilities and label images for images of any size, stacks and time-lapses."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from . import axes as ax
from . import shapes
from .devices import autocast_dtype, is_out_of_memory, memory_budget, resolve_device
from .errors import InvalidShapeError, UNetInputError
from .model import UNet, forward_flops
from .normalization import apply_statistics
from .postprocess import BLOCKWISE_PIXELS, _PlaneView, label_foreground_blockwise, labels_from_classes
from .progress import Progress, ProgressLike, run
from .tiling import Tile, TileGrid, read_mirrored

OUTPUTS = ("probabilities", "labels")


# -- memory and tile choice -----------------------------------------------------------------------------------
def estimate_tile_memory(model: UNet, tile_shape: Sequence[int], batch_size: int = 1) -> int:
    """Upper estimate of the bytes one forward pass needs in inference mode (float32 activations).

    In inference mode only the skip connections and a few maps of the current level are alive at once; the
    largest moment is the first expanding level, where the skip, the up-convolution, their concatenation and
    the convolution output coexist.
    """
    size = [int(s) for s in tile_shape]
    ch = model.base_channels
    total = model.in_channels * size[0] * size[1]
    largest = 0
    for level in range(model.depth):
        size = [s - 4 for s in size]
        pixels = size[0] * size[1]
        total += ch * 2**level * pixels  # skip kept for the expanding path
        largest = max(largest, 2 * ch * 2**level * pixels)
        size = [s // 2 for s in size]
    # first expanding level (level 0): up-convolution, concatenation and two convs on about the skip's size
    out = shapes.output_shape(tile_shape, model.depth)
    level0 = ch * (out[0] + 4) * (out[1] + 4)
    largest = max(largest, 4 * level0)
    return int(4 * batch_size * (total + largest) * 1.15)


def choose_tile_shape(
    model: UNet,
    image_shape: Sequence[int],
    device: str | torch.device | None = None,
    memory_budget_bytes: int | None = None,
) -> tuple[int, int]:
    """The input tile shape with the least halo waste that fits the memory budget.

    Tiles are never larger than needed to cover the image: an image is split into the fewest tiles per axis
    that fit, and the tiles are then shrunk to just cover it.
    """
    dev = resolve_device(device)
    budget = memory_budget(dev) if memory_budget_bytes is None else int(memory_budget_bytes)
    step = 2**model.depth
    h, w = (int(s) for s in image_shape)
    best = None
    for n in range(1, 1 << 16):
        # Split the longer axis first; keep tiles roughly square for the least halo per output pixel.
        ny = max(1, math.ceil(h / max(1, math.ceil(max(h, w) / n))))
        nx = max(1, math.ceil(w / max(1, math.ceil(max(h, w) / n))))
        stride = (step * math.ceil(h / ny / step), step * math.ceil(w / nx / step))
        tile = tuple(s + 4 + 2 * model.halo for s in stride)
        best = tile
        if estimate_tile_memory(model, tile) <= budget or max(stride) <= step:
            break
    return best  # type: ignore[return-value]


# -- running the network on a batch of tiles -------------------------------------------------------------------
@dataclass
class _Runner:
    """Runs the network on normalised tile batches on one device, with autocast and channels-last where useful."""

    model: UNet
    device: torch.device
    precision: str = "auto"
    tile_shape: tuple[int, int] | None = None  # what "auto" precision is chosen for

    def __post_init__(self):
        gflop = forward_flops(self.model, self.tile_shape) / 1e9 if self.tile_shape else None
        self.dtype = autocast_dtype(self.device, self.precision, gflop)
        # Channels-last lets oneDNN (CPU) and cuDNN (CUDA) pick their fastest convolution kernels: 1.7x on the
        # paper network on a 2-core AVX-512 CPU (benchmarks/README.md).
        self.channels_last = self.device.type in ("cuda", "cpu")
        self.model = self.model.to(self.device).eval()
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    def __call__(self, batch: np.ndarray, output: str) -> np.ndarray:
        tensor = torch.from_numpy(batch)
        if self.device.type == "cuda":
            tensor = tensor.pin_memory().to(self.device, non_blocking=True)
        else:
            tensor = tensor.to(self.device)
        if self.channels_last:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        autocast = torch.autocast(self.device.type, dtype=self.dtype) if self.dtype is not None else nullcontext()
        with torch.inference_mode(), autocast:
            logits = self.model(tensor).float()
            if output == "labels":
                result = logits.argmax(dim=1).to(torch.uint8 if self.model.num_classes <= 255 else torch.int32)
            else:
                result = torch.softmax(logits, dim=1)
        return result.cpu().numpy()


def predict_tiles(
    model: UNet, tiles: np.ndarray, *, device=None, precision: str = "auto", output: str = "probabilities"
) -> np.ndarray:
    """Run the network on a batch of already normalised, mirror-padded input tiles ``(B, C, H, W)``.

    This is the per-tile step; a block-wise engine (dask ``map_overlap`` with ``depth=halo`` and
    ``boundary="reflect"``) can call it on blocks whose cores are multiples of ``2**depth``.
    Returns ``(B, num_classes, h, w)`` probabilities or ``(B, h, w)`` class ids.
    """
    tiles = np.ascontiguousarray(tiles, dtype=np.float32)
    if tiles.ndim != 4 or tiles.shape[1] != model.in_channels:
        raise InvalidShapeError(f"tiles must be (batch, {model.in_channels}, height, width), got {tiles.shape}")
    shapes.check_input_shape(tiles.shape[-2:], model.depth)
    return _Runner(model, resolve_device(device), precision, tuple(tiles.shape[-2:]))(tiles, output)


# -- the prediction loop -----------------------------------------------------------------------------------------
def _as_array(image):
    """numpy, dask and zarr arrays as they are (read lazily); anything else (lists...) through numpy."""
    return image if hasattr(image, "shape") and hasattr(image, "dtype") else np.asarray(image)


def _check_image(model: UNet, image, axes: str | None, name: str) -> str:
    ax.check_image_dtype(image, name)
    axes = ax.resolve_axes(image.shape, axes, model.in_channels, name)
    shapes.check_context((image.shape[axes.index("Y")], image.shape[axes.index("X")]), model.depth, name)
    return axes


def output_layout(
    model: UNet, image_shape: Sequence[int], axes: str | None = None, output: str = "probabilities"
) -> tuple[tuple[int, ...], str]:
    """Shape and axes of what :func:`predict` (``output="probabilities"``) or :func:`segment` (``"labels"``) returns.

    The result has the image's axes without C; probabilities put the classes first, on a new axis C.
    Returns ``(shape, axes)``, e.g. ``((2, 5, 512, 512), "CZYX")`` for probabilities of a ZYX stack.
    """
    resolved = ax.resolve_axes(image_shape, axes, model.in_channels)
    spatial = tuple(int(n) for n, a in zip(image_shape, resolved) if a != "C")
    if output == "probabilities":
        return (model.num_classes, *spatial), "C" + ax.spatial_axes(resolved)
    return spatial, ax.spatial_axes(resolved)


def output_dtype(model: UNet, output: str = "probabilities") -> np.dtype:
    """The dtype of :func:`predict`'s (float32) or :func:`segment`'s result (int32 instances, uint8 classes)."""
    if output == "probabilities":
        return np.dtype(np.float32)
    if model.task == "instances":
        return np.dtype(np.int32)
    return np.dtype(np.uint8 if model.num_classes <= 255 else np.int32)


def _write(out, output: str, axes: str, plane: dict, tile: Tile, values: np.ndarray) -> None:
    (y0, x0), (y1, x1) = tile.out_start, tile.out_stop
    index = ax.output_index(axes, plane, slice(y0, y1), slice(x0, x1))
    if output == "probabilities":
        index = (slice(None), *index)
        out[index] = values[:, : y1 - y0, : x1 - x0]
    else:
        out[index] = values[: y1 - y0, : x1 - x0]


def iter_predict(
    model: UNet,
    image,
    *,
    axes: str | None = None,
    tile_shape: Sequence[int] | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    precision: str = "auto",
    output: str = "probabilities",
    out=None,
    name: str = "image",
) -> Generator[Progress, None, np.ndarray]:
    """Generator form of :func:`predict`: yields :class:`Progress` per batch of tiles, returns the result.

    ``output="labels"`` writes class ids (argmax) instead of probabilities, so a whole-image probability map is
    never held. Closing the generator early keeps the tiles already written to ``out``.
    """
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    image = _as_array(image)
    axes = _check_image(model, image, axes, name)
    expected, _ = output_layout(model, image.shape, axes, output)
    if out is None:
        out = np.zeros(expected, dtype=output_dtype(model, output))
    elif tuple(out.shape) != expected:
        raise UNetInputError(f"out has shape {tuple(out.shape)}, expected {expected} for {output} of {name}.")

    dev = resolve_device(device)
    plane_shape = (image.shape[axes.index("Y")], image.shape[axes.index("X")])
    if tile_shape is None:
        tile_shape = choose_tile_shape(model, plane_shape, dev)
    grid = TileGrid.for_tile_shape(plane_shape, tile_shape, model.depth)
    if batch_size is None:
        # On a CPU a batch runs no faster than its tiles one by one (each convolution already uses every core),
        # so it would only multiply memory; on a GPU small tiles need batching to fill the device.
        fits = max(1, memory_budget(dev) // max(1, estimate_tile_memory(model, grid.tile_shape)))
        batch_size = 1 if dev.type == "cpu" else int(min(len(grid), fits, 16))
    if int(batch_size) < 1:
        raise UNetInputError(f"batch_size must be >= 1, got {batch_size}")

    was_training = model.training  # restored at the end: a preview during training must not switch off dropout
    runner = _Runner(model, dev, precision, grid.tile_shape)
    planes = list(ax.iter_planes(image.shape, axes))
    total = len(planes) * len(grid)
    done = 0
    y_axis, x_axis = axes.index("Y"), axes.index("X")

    warned = []

    def plane_statistics(plane: dict) -> tuple[np.ndarray, np.ndarray]:
        offset, scale = model.normalization.plane_statistics(image, axes, plane)
        if model.normalization.mode != "none" and np.all(scale == 0) and not warned:
            where = f" (plane {plane})" if plane else ""
            warnings.warn(
                f"{name}{where} is constant: it carries no information and will be segmented as one class.",
                stacklevel=3,
            )
            warned.append(plane)
        return offset, scale

    def load(plane: dict, batch_tiles: list[Tile], tile_grid: TileGrid) -> np.ndarray:
        blocks = []
        for tile in batch_tiles:
            y_idx, x_idx = tile_grid.input_indices(tile)
            prefix = ax.image_index(axes, plane, None, None)
            block = ax.to_cyx(read_mirrored(image, prefix, y_idx, x_idx, y_axis, x_axis), axes)
            if block.dtype.kind == "f" and not np.all(np.isfinite(block)):
                raise UNetInputError(
                    f"{name} contains NaN or Inf values (plane {plane or 0}); replace them first, e.g. numpy.nan_to_num."
                )
            blocks.append(apply_statistics(block, *stats))
        return np.stack(blocks)

    # Read and normalise the next batch on a worker thread while the network runs on the current one.
    with ThreadPoolExecutor(max_workers=1) as reader, _restore_mode(model, was_training):
        for plane in planes:
            stats = plane_statistics(plane)  # read by load() on the reader thread
            plane_grid, plane_batch = grid, int(batch_size)
            while True:
                try:
                    tiles = list(plane_grid)
                    batches = [tiles[i : i + plane_batch] for i in range(0, len(tiles), plane_batch)]
                    pending = reader.submit(load, plane, batches[0], plane_grid)
                    plane_done = 0
                    for k, batch_tiles in enumerate(batches):
                        batch = pending.result()
                        if k + 1 < len(batches):
                            pending = reader.submit(load, plane, batches[k + 1], plane_grid)
                        values = runner(batch, output)
                        for tile, value in zip(batch_tiles, values):
                            _write(out, output, axes, plane, tile, value)
                        plane_done += len(batch_tiles)
                        yield Progress(done + plane_done * len(grid) // len(plane_grid), total, "predict")
                    break
                except Exception as err:
                    if not is_out_of_memory(err):
                        raise
                    plane_grid, plane_batch, runner = _shrink_after_oom(model, plane_grid, plane_batch, runner, err)
            done += len(grid)
    return out


@contextmanager
def _restore_mode(model: UNet, training: bool):
    try:
        yield
    finally:
        model.train(training)


def _shrink_after_oom(model: UNet, grid: TileGrid, batch: int, runner: _Runner, err: BaseException):
    """Smaller batch, then smaller tiles, then the CPU, with a warning each time."""
    if runner.device.type == "cuda":
        torch.cuda.empty_cache()
    if batch > 1:
        warnings.warn(f"out of memory with {batch} tiles a batch; retrying with {batch // 2}", stacklevel=3)
        return grid, batch // 2, runner
    step = 2**model.depth
    smaller = tuple(max(step, (s // 2) // step * step) for s in grid.stride)
    if smaller != grid.stride:
        warnings.warn(f"out of memory with tiles of {grid.tile_shape}; retrying with smaller tiles", stacklevel=3)
        return TileGrid.for_stride(grid.image_shape, smaller, model.depth), 1, runner
    if runner.device.type != "cpu":
        warnings.warn(
            f"out of memory on {runner.device} even with the smallest tiles; continuing on the CPU", stacklevel=3
        )
        return grid, 1, _Runner(model, torch.device("cpu"), runner.precision, grid.tile_shape)
    raise err


def predict(
    model: UNet,
    image,
    *,
    axes: str | None = None,
    tile_shape: Sequence[int] | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    precision: str = "auto",
    out=None,
    progress: ProgressLike | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> np.ndarray:
    """Class probabilities of an image, computed tile by tile with mirror-extrapolated borders.

    Parameters
    ----------
    model : UNet
        A (trained) network; its saved normalisation is applied to the image.
    image : array-like
        numpy, dask or zarr array with axes ``axes``. Tiles are read lazily.
    axes : str, optional
        One letter per dimension among T, Z, C, Y, X (e.g. ``"YX"``, ``"CYX"``, ``"TZCYX"``; ``S`` counts as C).
        Every axis other than C, Y, X is iterated plane by plane. Default: inferred from the shape.
    tile_shape : (int, int), optional
        Input tile shape (valid for the network's depth, e.g. (572, 572)). Default: the largest tile that fits
        the device's memory, no larger than the image needs.
    batch_size : int, optional
        Tiles per forward pass. Default: 1 on CPU; on GPUs as many as fit the memory budget (at most 16).
    device : str or torch.device, optional
        ``"cuda"``, ``"cuda:1"``, ``"mps"``, ``"cpu"``; default CUDA, then MPS, then CPU.
    precision : {"auto", "fp32", "bf16", "fp16"}
        Autocast precision; ``auto`` is bf16 on CUDA, and on CPUs with native bf16 for tiles of 100+ GFLOP
        (where it is faster), fp32 elsewhere.
    out : array-like, optional
        Where to write the result (e.g. a zarr array), of shape ``(num_classes, *spatial)``.
    progress : callable or tqdm-like, optional
        Receives tiles done / total.
    should_stop : callable, optional
        Polled after each batch; when it returns true, :class:`~napari_seamless_unet.core.errors.Cancelled` is
        raised with the partial result (planes and tiles done so far) in ``.partial``.

    Returns
    -------
    numpy.ndarray (or ``out``)
        float32 probabilities of shape ``(num_classes, *spatial)``, where ``spatial`` is the image shape without
        its channel axis.
    """
    if out is None:
        # Allocated here, not in the generator, so that a stopped run can hand back what it finished.
        out = allocate_output(model, image, axes=axes, output="probabilities")
    gen = iter_predict(
        model,
        image,
        axes=axes,
        tile_shape=tile_shape,
        batch_size=batch_size,
        device=device,
        precision=precision,
        output="probabilities",
        out=out,
    )
    return run(gen, progress, should_stop, partial=lambda: out)


def allocate_output(model: UNet, image, *, axes: str | None = None, output: str = "probabilities") -> np.ndarray:
    """A zero-filled numpy array of the shape and dtype that :func:`predict` or :func:`segment` returns."""
    shape, _ = output_layout(model, _as_array(image).shape, axes, output)
    return np.zeros(shape, dtype=output_dtype(model, output))


def segment(
    model: UNet,
    image,
    *,
    axes: str | None = None,
    tile_shape: Sequence[int] | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    precision: str = "auto",
    out=None,
    min_size: int = 0,
    progress: ProgressLike | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> np.ndarray:
    """Label image of ``image``: class ids for a semantic model, instance labels for an instance model.

    Instances are the connected components of the foreground (class 1) in each plane; the weight map used in
    training keeps a gap between touching objects, which is what separates them. Takes the arguments of
    :func:`predict`; ``min_size`` removes instances smaller than that many pixels. The result has the image's
    shape without its channel axis; dtype uint8 for semantic models, int32 for instances.
    """
    if out is None:
        out = allocate_output(model, image, axes=axes, output="labels")
    return run(
        iter_segment(
            model,
            image,
            axes=axes,
            tile_shape=tile_shape,
            batch_size=batch_size,
            device=device,
            precision=precision,
            out=out,
            min_size=min_size,
        ),
        progress,
        should_stop,
        partial=lambda: out,
    )


def iter_segment(
    model: UNet, image, *, axes: str | None = None, out=None, min_size: int = 0, name: str = "image", **kwargs
) -> Generator[Progress, None, np.ndarray]:
    """Generator form of :func:`segment` (see :func:`iter_predict`)."""
    image = _as_array(image)
    labels = yield from iter_predict(model, image, axes=axes, output="labels", out=out, name=name, **kwargs)
    if model.task == "instances":
        resolved = ax.resolve_axes(image.shape, axes, model.in_channels, name)
        spatial = ax.spatial_axes(resolved)
        planes = list(ax.iter_planes(labels.shape, spatial))
        y_axis, x_axis = spatial.index("Y"), spatial.index("X")
        for i, plane in enumerate(planes):
            index = ax.image_index(spatial, plane, slice(None), slice(None))
            if isinstance(labels, np.ndarray) and labels.shape[y_axis] * labels.shape[x_axis] <= BLOCKWISE_PIXELS:
                labels[index] = labels_from_classes(labels[index], model.task, min_size)
            else:  # zarr outputs and huge planes: never hold a whole plane in memory
                prefix = ax.image_index(spatial, plane, None, None)
                label_foreground_blockwise(_PlaneView(labels, prefix, y_axis, x_axis), min_size=min_size)
            yield Progress(i + 1, len(planes), "label")
    return labels
