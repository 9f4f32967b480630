"""Label images as a lazy dask array: :func:`segment_dask`, the block-wise twin of ``segment``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from . import axes as ax
from . import dask_labels
from .dask_holes import fill_holes_global
from .dask_predict import as_dask_array, build_graph, check_image, image_axes
from .instances import check_instance_options, default_options
from .model import UNet
from .postprocess import label_plane


def segment_dask(
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
    threshold: float | None = None,
    min_size: int | None = None,
    fill_holes: bool = True,
    method: str | None = None,
    restore_borders: bool = True,
):
    """Label image of ``image`` as a lazy dask array, computed block by block on any dask scheduler.

    A semantic model's class ids are computed block by block, each on its own. An instance model's objects are
    global: ids never collide between blocks and an object cut by a block border gets one id, so that
    ``segment_dask(...).compute()`` gives the same objects as :func:`~napari_seamless_unet.segment` (the ids may
    differ). The foreground is labelled block by block and merged across block faces
    (:mod:`~napari_seamless_unet.core.dask_labels`); ``min_size``, ``restore_borders`` and ``fill_holes`` work
    on the merged objects. ``method="watershed"`` and ``method="seeds"`` (the default of 3D models) split whole
    objects, so they label each plane (a 3D network's volume) in one task: the plane must fit in a worker's memory.

    Parameters are those of :func:`~napari_seamless_unet.core.dask_predict.predict_dask` and of ``segment``
    (``threshold``, ``min_size``, ``fill_holes``, ``method``, ``restore_borders``, left None: the model's
    defaults). Planes of a stack are labelled on their own, with ids unique across the stack (``segment``'s
    ``link_planes`` has no block-wise form: link the computed labels with ``instances.link_planes``).

    Returns
    -------
    dask.array.Array
        The image's shape without C: int32 instance ids (not consecutive), or uint8 class ids; chunks as
        :func:`predict_dask`'s.
    """
    options = {
        "axes": axes,
        "chunks": chunks,
        "tile_shape": tile_shape,
        "batch_size": batch_size,
        "device": device,
        "precision": precision,
        "tta": tta,
        "name": name,
    }
    if model.task != "instances":
        return build_graph(model, image, output="labels", **options)
    defaults = default_options(model.ndim)
    threshold = defaults["threshold"] if threshold is None else float(threshold)
    method = defaults["method"] if method is None else method
    min_size = defaults["min_size"] if min_size is None else int(min_size)
    check_instance_options(threshold, min_size, method)
    if axes is None:
        axes = image_axes(image)
    source = as_dask_array(image)
    options["axes"] = axes = check_image(model, source, axes, name)
    out_axes = ax.spatial_axes(axes)
    foreground = build_graph(model, source, output="foreground", **options)
    return label_foreground(
        foreground,
        unit=tuple(out_axes.index(a) for a in ax.unit_axes(model.ndim)),
        threshold=threshold,
        min_size=min_size,
        fill_holes=fill_holes,
        method=method,
        restore_borders=restore_borders,
        three_classes=model.num_classes == 3,
        spacing=model.voxel_size,
    )


def label_foreground(
    foreground,
    *,
    unit: tuple[int, ...],
    threshold: float,
    min_size: int = 0,
    fill_holes: bool = True,
    method: str = "components",
    restore_borders: bool = True,
    three_classes: bool = False,
    spacing=None,
):
    """Global instance labels of a dask array of foreground probabilities (``three_classes``: interior and border
    on a leading axis of length 2), as ``postprocess.label_plane`` gives plane by plane: lazy int32.

    ``unit`` are the positions of the axes one plane (volume) spans among the spatial axes; the other axes are
    planes of a stack, labelled on their own.
    """

    interior = foreground[0] if three_classes else foreground
    if method in ("watershed", "seeds"):
        lead = 1 if three_classes else 0
        options = {
            "threshold": threshold,
            "min_size": min_size,
            "fill_holes": fill_holes,
            "method": method,
            "restore_borders": restore_borders,
        }
        return _label_whole_planes(foreground, unit, lead, options, spacing)
    if three_classes:
        seeds = interior > threshold
        labels = first = dask_labels.global_components(seeds, unit)
        if restore_borders:
            outside = (foreground[0] + foreground[1]) > threshold
            labels = dask_labels.grow_into_borders_global(labels, outside, unit, spacing)
        if min_size > 0:
            labels = dask_labels.remove_small_global(labels, min_size)
    else:
        labels = first = dask_labels.global_components(interior > threshold, unit, min_size=min_size)
        if restore_borders:
            labels = dask_labels.restore_borders_global(labels, unit, spacing)
    if fill_holes:
        labels = fill_holes_global(labels, unit, order=first)
    return labels


def _label_whole(block, unit, lead: int, options: dict) -> np.ndarray:
    """One plane (volume) labelled in memory by ``label_plane``; ids 1..n."""
    spatial = block.shape[lead:]
    values = block.reshape(block.shape[:lead] + tuple(spatial[a] for a in unit))
    labels = label_plane(values, **options)
    return labels.reshape(spatial).astype(np.int64)


def _label_whole_planes(foreground, unit, lead, options: dict, spacing):
    """Every plane (volume) of ``foreground`` labelled in one task by ``label_plane`` with ``options``, ids offset
    to be unique across the stack."""

    whole = foreground.rechunk({a + lead: -1 for a in unit} | ({0: -1} if lead else {}))
    options = {**options, "spacing": spacing, "ndim": len(unit)}
    local = whole.map_blocks(_label_whole, unit, lead, options, drop_axis=[0] if lead else [], dtype=np.int64)
    labels = dask_labels.offset_ids(local)[0].astype(np.int32)
    return labels.rechunk(foreground.chunks[lead:])
