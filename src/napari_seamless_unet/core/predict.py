"""Overlap-tile prediction: probabilities and label images for images of any size, stacks and time-lapses."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from . import axes as ax
from . import shapes
from .devices import memory_budget, resolve_device
from .errors import UNetInputError
from .inference import (  # noqa: F401  (choose_tile_shape, estimate_tile_memory, predict_tiles: importable from here)
    TileRunner,
    choose_tile_shape,
    estimate_tile_memory,
    predict_tiles,
    shrink_after_oom,
)
from .instances import ForegroundSink, StackLabeller, default_options
from .model import UNet
from .normalization import normalise_tile
from .outputs import (  # noqa: F401  (output_layout, output_dtype, check_out: importable from here, as before)
    _as_array,
    _output_array,
    allocate_output,
    check_out,
    output_dtype,
    output_layout,
)
from .progress import Progress, ProgressLike, run
from .rescale import iter_rescaled, labelling_spacing, zoom_factors
from .tiling import Tile, TileGrid, read_mirrored

OUTPUTS = ("probabilities", "labels")


# -- the prediction loop -----------------------------------------------------------------------------------------
def _check_image(model: UNet, image, axes: str | None, name: str) -> str:
    ax.check_image_dtype(image, name)
    axes = ax.resolve_axes(image.shape, axes, model.in_channels, name)
    if model.ndim == 3 and "Z" not in axes:
        raise UNetInputError(
            f"the model is a 3D network, but {name} of shape {tuple(image.shape)} with axes {axes!r} has no Z axis; "
            f"give it a volume (axes with Z, e.g. 'ZYX'), or use a 2D model for single planes."
        )
    # Mirroring the plane cannot stand in for missing context in Y and X; a thin z-stack (fewer planes than a
    # 3D network's z context) is mirrored as often as needed, which is what the 3D U-Net papers do.
    shapes.check_context((image.shape[axes.index("Y")], image.shape[axes.index("X")]), model.depth, name, trained=True)
    return axes


def _write(out, output: str, axes: str, plane: dict, tile: Tile, values: np.ndarray) -> None:
    where = [slice(a, b) for a, b in zip(tile.out_start, tile.out_stop)]  # (Z,) Y, X
    index = ax.output_index(axes, plane, *where[-2:], *where[:-2])
    crop = tuple(slice(0, b - a) for a, b in zip(tile.out_start, tile.out_stop))
    if output == "probabilities":
        out[(slice(None), *index)] = values[(slice(None), *crop)]
    else:
        out[index] = values[crop]


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
    tta: bool = False,
    voxel_size: Sequence[float] | float | None = None,
    rescale: bool = True,
    view_entropy: bool = False,
) -> Generator[Progress, None, np.ndarray]:
    """Generator form of :func:`predict`: yields :class:`Progress` per batch of tiles, returns the result.

    ``output="labels"`` writes class ids (argmax) instead of probabilities, so a whole-image probability map is
    never held. Closing the generator early keeps the tiles (planes, when rescaled) already written to ``out``.
    ``view_entropy`` (with ``tta``; for :func:`~napari_seamless_unet.core.uncertainty.uncertainty`) writes one
    more channel after the probabilities: the views' mean normalised entropy (``TileRunner``).
    """
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    image = _as_array(image)
    axes = _check_image(model, image, axes, name)
    out, _ = _output_array(out, model, image.shape, axes, output, name)
    zoom = zoom_factors(model, voxel_size, rescale)
    if zoom is not None:  # another pixel size than the model's: plane by plane at the model's (core/rescale.py)
        options = {"tile_shape": tile_shape, "batch_size": batch_size, "device": device, "precision": precision}
        return (
            yield from iter_rescaled(
                iter_predict,
                model,
                image,
                axes,
                zoom,
                output=output,
                out=out,
                name=name,
                tta=tta,
                view_entropy=view_entropy,
                **options,
            )
        )

    dev = resolve_device(device)
    unit = ax.unit_axes(model.ndim)  # what one network input covers: a plane (YX) or a volume (ZYX)
    plane_shape = tuple(image.shape[axes.index(a)] for a in unit)
    if tile_shape is None:
        tile_shape = choose_tile_shape(model, plane_shape, dev)
    grid = TileGrid.for_tile_shape(plane_shape, tile_shape, model.geometry)
    if batch_size is None:
        # On a CPU a batch runs no faster than its tiles one by one (each convolution already uses every core),
        # so it would only multiply memory; on a GPU small tiles need batching to fill the device.
        fits = max(1, memory_budget(dev) // max(1, estimate_tile_memory(model, grid.tile_shape)))
        batch_size = 1 if dev.type == "cpu" else int(min(len(grid), fits, 16))
    if int(batch_size) < 1:
        raise UNetInputError(f"batch_size must be >= 1, got {batch_size}")

    # a copy of the network: the caller's model is never changed
    runner = TileRunner(model, dev, precision, grid.tile_shape, tta, view_entropy)
    planes = list(ax.iter_planes(image.shape, axes, unit))
    tiles_per_plane = len(grid)  # progress counts tiles of the first grid, whatever an out-of-memory error changes
    total = len(planes) * tiles_per_plane
    done = 0
    unit_positions = [axes.index(a) for a in unit]

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
            indices = tile_grid.input_indices(tile)
            prefix = ax.image_index(axes, plane, None, None)
            block = ax.to_cyx(read_mirrored(image, prefix, *indices, *unit_positions), axes, unit)
            blocks.append(normalise_tile(block, *stats, name, plane))
        return np.stack(blocks)

    # Read and normalise the next batch on a worker thread while the network runs on the current one. After an
    # out-of-memory error the smaller batch or tile is kept for the planes that follow.
    batch_size = int(batch_size)
    with ThreadPoolExecutor(max_workers=1) as reader:
        for plane in planes:
            stats = plane_statistics(plane)  # read by load() on the reader thread
            while True:
                try:
                    tiles = list(grid)
                    batches = [tiles[i : i + batch_size] for i in range(0, len(tiles), batch_size)]
                    pending = reader.submit(load, plane, batches[0], grid)
                    plane_done = 0
                    for k, batch_tiles in enumerate(batches):
                        batch = pending.result()
                        if k + 1 < len(batches):
                            pending = reader.submit(load, plane, batches[k + 1], grid)
                        values = runner(batch, output)
                        for tile, value in zip(batch_tiles, values):
                            _write(out, output, axes, plane, tile, value)
                        plane_done += len(batch_tiles)
                        yield Progress(done + plane_done * tiles_per_plane // len(grid), total, "predict")
                    break
                except (RuntimeError, MemoryError) as err:
                    grid, batch_size, runner = shrink_after_oom(model, grid, batch_size, runner, err)
            done += tiles_per_plane
    return out


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
    tta: bool = False,
    voxel_size: Sequence[float] | float | None = None,
    rescale: bool = True,
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
    tta : bool
        Test-time augmentation: average the 8 flips and quarter turns of every tile (8x the time). Smoother,
        more continuous boundaries; on ISBI 2012 it lowered the Rand error markedly (benchmarks/README.md).
    voxel_size : sequence of float or float, optional
        The image's physical pixel size (Y, X; a ZYX size gives its last axes to a 2D model) or voxel size (Z, Y, X),
        in micrometres, as the model's ``voxel_size`` records its training data's. Where both are known and differ
        by more than 1%, each plane (volume) is resampled to the model's size, predicted, and its probabilities
        resampled back to the image's grid (:mod:`~napari_seamless_unet.core.rescale`; one plane held at both
        sizes at a time). None: unknown, no resampling.
    rescale : bool
        False: predict at the image's own pixel size whatever ``voxel_size`` says.
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
        tta=tta,
        voxel_size=voxel_size,
        rescale=rescale,
    )
    return run(gen, progress, should_stop, partial=lambda: out)


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
    min_size: int | None = None,
    threshold: float | None = None,
    fill_holes: bool = True,
    method: str | None = None,
    restore_borders: bool = True,
    link_planes: bool = False,
    tta: bool = False,
    voxel_size: Sequence[float] | float | None = None,
    rescale: bool = True,
    progress: ProgressLike | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> np.ndarray:
    """Label image of ``image``: class ids for a semantic model, instance labels for an instance model.

    Takes the arguments of :func:`predict` (``tta``, ``voxel_size`` and ``rescale`` included: labels are made on the
    image's grid from the probabilities resampled back, ``min_size`` counts the image's pixels). For an instance
    model, the foreground probability of each plane is turned into objects as soon as the plane is predicted,
    exactly as ``instances_from_probabilities(predict(model, image), ...)`` would (only one plane of probabilities
    is held): ``threshold``, ``min_size``, ``fill_holes``, ``method``, ``restore_borders`` and ``link_planes`` are
    those of :func:`~napari_seamless_unet.core.instances.instances_from_probabilities`. The weight map used in
    training keeps a gap between touching objects, which is what separates them; ``restore_borders`` gives that gap
    back to the objects. ``threshold``, ``method`` and ``min_size`` left None take the model's defaults
    (:func:`~napari_seamless_unet.core.instances.default_options`): 0.7, components and 0 for a 2D model; 0.5, a
    watershed in physical units and 30 voxels for a 3D one, whose objects touch across surfaces. A three-class
    instance model (background, interior, border) separates them by its border class instead: the objects grow from
    the interior and take their border back. Ids are unique across a stack. These options do nothing for a semantic
    model (the argmax class of each pixel).

    Returns
    -------
    numpy.ndarray (or ``out``)
        The image's shape without its channel axis; int32 for instances, uint8 class ids for semantic models.
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
            threshold=threshold,
            fill_holes=fill_holes,
            method=method,
            restore_borders=restore_borders,
            link_planes=link_planes,
            tta=tta,
            voxel_size=voxel_size,
            rescale=rescale,
        ),
        progress,
        should_stop,
        partial=lambda: out,
    )


def iter_segment(
    model: UNet,
    image,
    *,
    axes: str | None = None,
    out=None,
    min_size: int | None = None,
    threshold: float | None = None,
    fill_holes: bool = True,
    method: str | None = None,
    restore_borders: bool = True,
    link_planes: bool = False,
    name: str = "image",
    **kwargs,
) -> Generator[Progress, None, np.ndarray]:
    """Generator form of :func:`segment` (see :func:`iter_predict`); planes are labelled as they are finished."""
    image = _as_array(image)
    if model.task != "instances":
        return (yield from iter_predict(model, image, axes=axes, output="labels", out=out, name=name, **kwargs))
    axes = _check_image(model, image, axes, name)
    out, spatial = _output_array(out, model, image.shape, axes, "labels", name)
    defaults = default_options(model.ndim)
    threshold = defaults["threshold"] if threshold is None else threshold
    method = defaults["method"] if method is None else method
    min_size = defaults["min_size"] if min_size is None else min_size
    labeller = StackLabeller(
        out,
        spatial,
        threshold=threshold,
        min_size=min_size,
        fill_holes=fill_holes,
        method=method,
        restore_borders=restore_borders,
        link_planes=link_planes,
        num_classes=model.num_classes,
        ndim=model.ndim,
        spacing=labelling_spacing(model, kwargs.get("voxel_size"), kwargs.get("rescale", True)),
    )
    sink = ForegroundSink(labeller, model.num_classes)
    yield from iter_predict(model, image, axes=axes, output="probabilities", out=sink, name=name, **kwargs)
    return out
