"""The docks' pixel size: a layer's ``scale`` as the physical pixel (voxel) size of its data, which the Train dock
records with the model and the Segment dock rescales to the model's (the core's ``voxel_size``,
:mod:`~napari_seamless_unet.core.rescale`); the Segment dock's *rescale to the model's pixel size* option.

A scale of 1 along every axis is napari's default, which most readers leave as it is: it counts as unknown (no
size recorded, no rescaling), never as "1 micrometre".
"""

from __future__ import annotations

from magicgui.widgets import CheckBox

from ..core.errors import UNetInputError
from ..core.rescale import image_voxel_size, zoom_factors
from . import _layers


def layer_voxel_size(layer, axes: str | None = None, ndim: int | None = None) -> tuple[float, ...] | None:
    """The layer's scale along Z, Y, X (Y, X without Z; its last ``ndim`` of them), None where every one is 1."""
    size = _layers.voxel_size(layer, axes)
    if ndim:
        size = size[-int(ndim) :]
    return None if all(v == 1 for v in size) else tuple(size)


def rescale_option() -> CheckBox:
    """The Segment dock's checkbox: resample an image of another pixel size than the model's to it (on)."""
    return CheckBox(
        text="rescale to the model's pixel size",
        value=True,
        tooltip="an image whose layer scale (its pixel size) differs from the pixel size the model was trained at is "
        "resampled to the model's, segmented, and labelled on its own grid; a scale of 1 (napari's default) counts "
        "as unknown and is not rescaled",
    )


def _sizes(values) -> str:
    return " x ".join(f"{v:g}" for v in values)


def rescale_text(model, size, rescale: bool) -> str:
    """What a run does about pixel sizes, for the status line ('' when there is nothing to say)."""
    if not rescale or getattr(model, "voxel_size", None) is None:
        return ""
    if size is None:
        if all(v == 1 for v in model.voxel_size):
            return ""  # a scale of 1 is the model's too, whether or not it is known
        known = _sizes(model.voxel_size)
        return f" The layer's scale is 1 (unknown): segmented at its own pixel size, not the model's {known}."
    if zoom_factors(model, size) is None:
        return ""
    return (
        f" Pixel size {_sizes(image_voxel_size(model.ndim, size))} resampled to the model's {_sizes(model.voxel_size)}."
    )


def refuse_lazy_rescaling(model, size, rescale: bool) -> None:
    """A lazy (dask) run predicts at the image's own pixel size: refuse one that would have to be resampled."""
    if rescale and zoom_factors(model, size) is not None:
        raise UNetInputError(
            f"the layer's pixel size {_sizes(image_voxel_size(model.ndim, size))} is not the model's "
            f"{_sizes(model.voxel_size)}, and 'lazy (dask)' does not resample: untick 'rescale to the model's pixel "
            f"size' (Options) to segment at the layer's own pixel size, or 'lazy (dask)'."
        )
