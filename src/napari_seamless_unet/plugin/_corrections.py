"""Corrected regions as training pairs in one click: the Train dock's *+ add corrected region*.

:func:`corrected_region` takes the plane shown of an (image, labels) pair, or only the selected rectangle of a
Shapes layer (e.g. the Annotate next dock's proposals), and makes it a pair with
:func:`~napari_seamless_unet.core.regions.region_pair`: the image around the region as context, the labels outside
it ``IGNORE`` (left out of the loss with ``TrainConfig(ignore_label=IGNORE)``). :class:`CorrectedRegions` holds
them as arrays in the dock.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import CheckBox, Container, Label, PushButton

from ..core import axes as ax
from ..core import shapes
from ..core.errors import UNetInputError
from ..core.presets import NETWORK_PRESETS
from ..core.regions import IGNORE, region_pair
from . import _layers


def selected_rectangle(viewer):
    """``(shapes layer, index)`` of the selected rectangle of the active Shapes layer (else of any Shapes layer
    with one selected), or None."""
    layers = [layer for layer in viewer.layers if type(layer).__name__ == "Shapes"]
    active = viewer.layers.selection.active
    layers.sort(key=lambda layer: layer is not active)
    for layer in layers:
        for index in sorted(layer.selected_data):
            if layer.shape_type[index] == "rectangle":
                return layer, index
    return None


def _rectangle_box(shapes, index: int, labels_layer) -> tuple[tuple[int, ...], tuple[int, int, int, int]]:
    """The rectangle as (plane index, (y0, x0, y1, x1)) in the pixels of ``labels_layer`` (through world
    coordinates, so layers of different scales agree)."""
    vertices = np.asarray(shapes.data[index], dtype=float)
    points = np.array([labels_layer.world_to_data(shapes.data_to_world(v)) for v in vertices])
    shape = _layers.layer_data(labels_layer).shape
    lead = tuple(int(np.clip(round(float(np.mean(points[:, i]))), 0, shape[i] - 1)) for i in range(len(shape) - 2))
    lo, hi = np.floor(points[:, -2:].min(axis=0)), np.ceil(points[:, -2:].max(axis=0))
    y0, x0 = (int(max(0, v)) for v in lo)
    y1, x1 = int(min(shape[-2], hi[0])), int(min(shape[-1], hi[1]))
    if y1 <= y0 or x1 <= x0:
        raise UNetInputError(
            f"the selected rectangle of {shapes.name!r} lies outside {labels_layer.name!r}: select one on the image."
        )
    return lead, (y0, x0, y1, x1)


def context_for(init, preset: str | None) -> int:
    """Pixels of context to keep around a corrected region: the halo of the network to be trained (the model to
    start from, the preset's depth, else the deepest default, depth 4)."""
    halo = getattr(init, "halo", None)
    if isinstance(halo, int):
        return halo
    depth = NETWORK_PRESETS[preset][1] if preset in NETWORK_PRESETS else 4
    return shapes.halo(depth)


def corrected_region(image_layer, labels_layer, viewer, *, context: int = 0, rectangle=None):
    """One corrected region as ``(image_crop, labels_crop, description)``.

    ``rectangle`` (``(shapes layer, index)``, see :func:`selected_rectangle`) limits it to that rectangle of its
    plane; without it, the whole plane the viewer shows. ``context``: pixels of image kept around it (the
    network's halo). Reads one plane (the GUI thread: a plane is small).
    """
    if image_layer is None or labels_layer is None:
        raise UNetInputError("choose an image and its corrected Labels layer in the first pair row first.")
    plan = _layers.plan_training([(image_layer, labels_layer)])  # the pair's checks: shapes, channels
    axes = plan.sources[0].axes
    spatial = ax.spatial_axes(axes)
    if rectangle is not None:
        lead, box = _rectangle_box(*rectangle, labels_layer)
        plane = dict(zip(spatial[:-2], lead))
    else:
        plane = _layers.current_plane(image_layer, viewer, axes)
        box = None
    labels = np.asarray(_layers.layer_data(labels_layer)[ax.image_index(spatial, plane, slice(None), slice(None))])
    image = np.asarray(_layers.layer_data(image_layer)[_layers.plane_index(axes, plane)])
    if "C" in axes:
        image = ax.to_cyx(image, axes, "YX")
        if plan.channels == 1:
            image = image[0]
    box = box or (0, 0, *labels.shape)
    if not labels[box[0] : box[2], box[1] : box[3]].any():
        raise UNetInputError(
            f"the region {box} (y0, x0, y1, x1) of {labels_layer.name!r} has no labels: paint (correct) it first."
        )
    image_crop, labels_crop = region_pair(image, labels.astype(np.int32), box, context=context, ignore_label=IGNORE)
    where = f" plane {plane}" if plane else ""
    return image_crop, labels_crop, f"{labels_layer.name}{where} {box}"


class CorrectedRegions:
    """The dock's corrected regions: an *+ add corrected region* button, their count with *clear*, and *train on
    the regions only* (else the layers' planes too). ``pairs``: the (image, labels) arrays."""

    def __init__(self, add):
        self.pairs: list[tuple[np.ndarray, np.ndarray]] = []
        self.names: list[str] = []
        self.add_button = PushButton(
            text="+ add corrected region",
            tooltip="the plane shown of the first pair (or only the selected rectangle of a Shapes layer) as a "
            "training pair; unlabelled pixels around it are ignored",
        )
        self.add_button.changed.connect(lambda *_: add())
        self.count = Label(value="")
        self.clear_button = PushButton(text="clear", visible=False)
        self.clear_button.changed.connect(lambda *_: self.clear())
        self.only = CheckBox(text="train on the regions only", value=False, visible=False)
        row = Container(widgets=[self.add_button, self.count, self.clear_button], layout="horizontal", labels=False)
        row.margins = (0, 0, 0, 0)
        self.container = Container(widgets=[row, self.only], labels=False)
        self.container.margins = (0, 0, 0, 0)

    def append(self, image, labels, name: str) -> None:
        self.pairs.append((image, labels))
        self.names.append(name)
        self._show()

    def clear(self) -> None:
        self.pairs, self.names = [], []
        self._show()

    def _show(self) -> None:
        n = len(self.pairs)
        self.count.value = f"{n} corrected region{'s' if n != 1 else ''}" if n else ""
        self.clear_button.visible = self.only.visible = bool(n)
