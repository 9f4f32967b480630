"""The Segment dock's post-processing options of instance models, and labelling again when they change.

:class:`InstanceOptions` are the widgets of the options of
:func:`~napari_seamless_unet.core.instances.instances_from_probabilities`. :class:`Relabelling` (mixed into the
dock) keeps what a run of an instance model needs to label again (:class:`Kept`: the float32 foreground
probabilities of what it segmented, half of the class probabilities), drops it when the image, the model or the
scope changes, and when an option changes makes the labels again from it in a thread worker
(:class:`~._relabel.RelabelJob`), without running the network.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, SpinBox

from ..core import axes as ax
from ..core.instances import default_options
from ..core.postprocess import DEFAULT_THRESHOLD, METHODS
from ._common import UserError, report_exception, start_worker
from ._relabel import RelabelJob, RelabelResult


class InstanceOptions:
    """The widgets of the post-processing options (``threshold``, ``min_size``, ``fill_holes``, ``method``,
    ``restore_borders``, ``link_planes``); :meth:`values` gives them as keywords of ``segment``."""

    NAMES = ("threshold", "min_size", "fill_holes", "method", "restore_borders", "link_planes")

    def __init__(self):
        self.threshold = FloatSpinBox(
            label="threshold",
            min=0.0,
            max=0.99,
            step=0.05,
            value=DEFAULT_THRESHOLD,
            tooltip="instance models: a pixel is foreground where its probability is above this (0.5: the more "
            "likely class); lower finds more and larger objects",
        )
        self.min_size = SpinBox(
            label="min object size",
            min=0,
            max=10_000_000,
            value=0,
            tooltip="instance models: pixels; smaller objects are removed",
        )
        self.fill_holes = CheckBox(text="fill holes", value=True, tooltip="instance models: fill each object's holes")
        self.method = ComboBox(
            label="method",
            choices=list(METHODS),
            value=METHODS[0],
            tooltip="instance models: components = connected foreground regions; watershed also splits objects "
            "joined by a neck; seeds = confident cores grown over the foreground (3D default)",
        )
        self.restore_borders = CheckBox(
            text="give borders back",
            value=True,
            tooltip="instance models: give the thin gap the network leaves between touching objects back to them",
        )
        self.link_planes = CheckBox(
            text="link objects across planes",
            value=False,
            tooltip="instance models, whole stacks: an object keeps its id from plane to plane where it overlaps",
        )
        self.widgets = [getattr(self, name) for name in self.NAMES]
        self.defaults_ndim = 2  # the model dimensions whose defaults the options were last set to

    def use_defaults(self, ndim: int) -> None:
        """Set threshold, method and minimum size to the core's defaults for a model of ``ndim`` dimensions (a 3D
        model's objects touch across surfaces: seeds, 0.3, 30 voxels; ``instances.default_options``)."""
        for name, value in default_options(ndim).items():
            getattr(self, name).value = value
        self.defaults_ndim = int(ndim)

    def values(self) -> dict:
        """The options as keywords of ``segment`` and ``instances_from_probabilities``."""
        return {
            "threshold": float(self.threshold.value),
            "min_size": int(self.min_size.value),
            "fill_holes": bool(self.fill_holes.value),
            "method": str(self.method.value),
            "restore_borders": bool(self.restore_borders.value),
            "link_planes": bool(self.link_planes.value),
        }

    def connect(self, callback) -> None:
        for widget in self.widgets:
            widget.changed.connect(callback)

    def enable(self, instances: bool, whole: bool) -> None:
        """Options apply to instance models only; linking planes to a whole stack only."""
        for widget in self.widgets:
            widget.enabled = instances
        self.link_planes.enabled = instances and whole


@dataclass
class Kept:
    """What labelling again needs, kept after a run of an instance model."""

    foreground: np.ndarray  # float32 foreground probabilities of what was segmented (a plane, or everything)
    axes: str  # their axes (no C)
    options: dict  # the options of the labels shown
    labels_layer: object  # the Labels layer that shows them
    image_layer: object
    image_data: object  # the image layer's data when segmented: other data drops what was kept
    plane: dict | None = None  # the plane of a per-plane run, in the axes ``stack_axes`` of ``labels_layer``
    stack_axes: str | None = None
    classes: int = 2  # the model's classes (3: ``foreground`` holds interior and border)
    ndim: int = 2  # the model's (3: labelled volume by volume)
    spacing: tuple | None = None  # a 3D model's voxel size


class Relabelling:
    """Mixin of the Segment dock: labels made again from :attr:`kept` when an option changes (no network)."""

    kept: Kept | None = None
    relabel_worker = None
    _relabel_again = False

    def drop_kept(self, *_) -> None:
        """Forget the kept probabilities: the next change of the options waits for the next Segment."""
        self.kept = None

    def _keep(self, result, image_layer, labels_layer, plane, stack_axes: str) -> None:
        """Keep what ``result`` (a :class:`~._predict_job.PredictionResult`) needs to be labelled again; ``stack_axes``
        are those of ``labels_layer``."""
        if result.foreground is None or result.cancelled:
            self.kept = None  # semantic model, or a partial run: Segment again
            return
        axes = stack_axes if plane is None else "YX"
        self.kept = Kept(
            result.foreground,
            axes,
            dict(result.options),
            labels_layer,
            image_layer,
            image_layer.data,
            plane,
            stack_axes,
            result.classes,
            result.ndim,
            result.spacing,
        )
        if self.instance_options.values() != self.kept.options:  # changed while the network ran
            self.relabel()

    def _on_options_changed(self, *_) -> None:
        if self.kept is None or self.busy:  # nothing kept, or a Segment run that will label with the new options
            return
        if self.relabel_worker is not None:
            self._relabel_again = True  # once the running one is done
            return
        self.relabel()

    def _kept_still_valid(self) -> bool:
        kept = self.kept
        if kept.labels_layer not in self.viewer.layers or kept.image_layer not in self.viewer.layers:
            reason = "its labels layer or image was removed"
        elif kept.image_layer.data is not kept.image_data:
            reason = "the image changed"
        else:
            return True
        self.kept = None
        self.status.value = f"The kept probabilities were dropped ({reason}): press Segment to apply the options."
        return False

    def relabel(self):
        """Make the labels again from the kept probabilities with the current options, in a thread worker.

        Returns the worker, or None when there is nothing to do (nothing kept, or the same options).
        """
        options = self.instance_options.values()
        if self.kept is None or options == self.kept.options or not self._kept_still_valid():
            return None
        kept = self.kept
        stack = kept.labels_layer.data if kept.plane is not None else None
        job = RelabelJob(
            kept.foreground,
            kept.axes,
            options,
            plane=kept.plane,
            stack_labels=stack,
            stack_axes=kept.stack_axes,
            num_classes=kept.classes,
            ndim=kept.ndim,
            spacing=kept.spacing,
        )
        self.status.value = "Re-labelling from the kept probabilities (the network is not run again)…"
        self.progress_bar.setRange(0, 0)  # busy
        self.relabel_worker = start_worker(
            job.run,
            yielded=lambda _: None,
            returned=functools.partial(self._on_relabelled, kept),
            errored=self._on_relabel_errored,
            finished=self._on_relabel_finished,
        )
        return self.relabel_worker

    def _on_relabelled(self, kept: Kept, result: RelabelResult | UserError) -> None:
        if isinstance(result, UserError):
            self.status.value = report_exception(result.error, "Re-labelling")
            return
        if self.kept is not kept or not self._kept_still_valid():
            return  # dropped (a new Segment run, another image or model) while this ran
        layer = kept.labels_layer
        if kept.plane is None:
            layer.data = result.labels
        else:
            layer.data[ax.image_index(kept.stack_axes, kept.plane, slice(None), slice(None))] = result.labels
            layer.refresh()
        kept.options = result.options
        self.last_labels = layer.data
        self.measure_again(layer)  # the features follow the new labels
        where = f" of plane {kept.plane}" if kept.plane else ""
        self.status.value = (
            f"Re-labelled from the kept probabilities: {result.objects} objects{where} in {layer.name!r} "
            "(the network was not run again)."
        )

    def _on_relabel_errored(self, err) -> None:
        self.status.value = report_exception(err, "Re-labelling", notify=False)

    def _on_relabel_finished(self) -> None:
        self.relabel_worker = None
        if self.registry is None:  # the dock was closed meanwhile
            return
        if not self.busy:  # a Segment run shows its own progress
            self.progress_bar.setRange(0, 1000)
            self.progress_bar.setValue(1000)
        if self._relabel_again:
            self._relabel_again = False
            self._on_options_changed()
