"""The "Annotate next" dock: where the model is least sure, as an uncertainty layer and a few rectangles to correct.

*Propose regions* runs :class:`~._annotate_job.AnnotateJob` in a thread worker (the plane shown of a stack, or the
whole 2D image), then adds or updates the Image layer ``"<image> uncertainty"`` and the Shapes layer
``"<image> annotate next"`` (one rectangle per region, best first: ``features`` ``rank`` and ``score``, the rank as
text). Correct the labels inside a rectangle, select it, and press the Train dock's *+ add corrected region*.
"""

from __future__ import annotations

import napari
import numpy as np
from magicgui.widgets import ComboBox, Container, SpinBox
from qtpy.QtWidgets import QProgressBar, QWidget

from ..core import axes as ax
from ..core.errors import UNetInputError
from ..core.progress import Progress
from ..core.regions import PROPOSAL_MEASURE
from . import _layers
from ._annotate_job import AnnotateJob, Proposal
from ._common import (
    JobRunner,
    SessionWidget,
    UserError,
    connect_layer_changes,
    device_choices,
    layer_choices,
    pick_default_layer,
    report_exception,
)
from ._ui import ScrollingDock, compact_widgets, status_label

PROGRESS_MAX = 1000
#: how the dock chooses regions by default (``propose_regions(sampling=...)``)
DEFAULT_SAMPLING = "top"


class AnnotateWidget(SessionWidget, ScrollingDock, JobRunner, QWidget):
    """Propose the regions to annotate next.

    Attributes
    ----------
    model, image, size, count, choose, exclude, device : magicgui widgets
        The model (of this session's registry), the image layer, the region side (px), how many regions, how they
        are chosen (``propose_regions(sampling=...)``), a Labels layer whose painted pixels are not proposed again
        (optional), the device.
    last_proposal : Proposal or None
    uncertainty_layer, shapes_layer : the layers of the last run
    """

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        self.viewer = viewer
        self.job: AnnotateJob | None = None
        self.last_proposal: Proposal | None = None
        self.uncertainty_layer = self.shapes_layer = None
        self._target = None
        self.model = ComboBox(label="model", choices=lambda _: self._model_choices(), tooltip="a model of this session")
        self.image = ComboBox(label="image", choices=lambda _: layer_choices(viewer, "Image"), nullable=True)
        self.size = SpinBox(label="region size", min=8, max=4096, value=128, tooltip="side of each region in pixels")
        self.count = SpinBox(label="regions", min=1, max=100, value=4, tooltip="how many regions to propose")
        self.choose = ComboBox(
            label="choose",
            choices=[("most uncertain", "top"), ("drawn by uncertainty", "power")],
            value=DEFAULT_SAMPLING,
            tooltip="most uncertain: the regions of highest mean uncertainty. Drawn by uncertainty: at random, the more "
            "uncertain the likelier, so that the regions are not all alike",
        )
        self.measure = ComboBox(
            label="uncertainty",
            choices=[("entropy", "entropy"), ("views disagree", "disagreement")],
            value=PROPOSAL_MEASURE,
            tooltip="entropy: high wherever the model hesitates, along every boundary too. Views disagree: high only "
            "where the 8 flipped and turned views of the image contradict each other (what the model has not learnt)",
        )
        self.exclude = ComboBox(
            label="skip annotated",
            choices=lambda _: layer_choices(viewer, "Labels"),
            nullable=True,
            value=None,
            tooltip="no region overlaps the painted pixels of this Labels layer (optional)",
        )
        self.device = ComboBox(label="device", choices=device_choices(), value="auto")
        widgets = [self.model, self.image, self.size, self.count, self.choose, self.measure, self.exclude, self.device]
        self.form = compact_widgets(Container(widgets=widgets))
        self.form.margins = (0, 0, 0, 0)
        self.run_button, self.cancel_button, buttons = self._make_buttons("Propose regions", "Cancel", self.cancel)
        self.run_button.tooltip = "the uncertainty of the plane shown, and the regions to annotate first"
        self.progress_bar = QProgressBar()
        self.status = status_label("Train a model (or load one in Segment), then Propose regions.")
        layout = self._setup_scrolling()
        layout.addWidget(self.form.native)
        layout.addWidget(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status.native)
        layout.addStretch()
        pick_default_layer(self.image, viewer, "Image")
        connect_layer_changes(viewer, self.reset_choices)
        self._attach_registry(viewer)
        self._on_registry_changed()

    # -- choices -------------------------------------------------------------------------------------------------
    def _model_choices(self) -> list[str]:
        return self.registry.names() if self.registry is not None else []

    def _connect_registry(self, registry):
        registry.changed.connect(self._on_registry_changed)

    def _disconnect_registry(self, registry):
        registry.changed.disconnect(self._on_registry_changed)

    def _on_registry_changed(self):
        self.model.reset_choices()
        names = self._model_choices()
        if names and self.model.value not in names:
            self.model.value = names[0]

    def reset_choices(self, *_):
        for choice in (self.model, self.image, self.exclude):
            choice.reset_choices()
        pick_default_layer(self.image, self.viewer, "Image")

    def _drop_models(self, qt_alive: bool = True) -> None:
        if self.job is not None and self.running:
            self.job.cancel()
        self.job = None

    # -- running -------------------------------------------------------------------------------------------------
    def _buttons(self) -> tuple:
        return self.run_button, self.cancel_button

    def make_job(self) -> AnnotateJob:
        """The job the settings describe (the plane shown of a stack); raises UNetInputError on mistakes."""
        name, layer = self.model.value, self.image.value
        if self.registry is None or not name or name not in self.registry:
            raise UNetInputError("no model: train one in 'Train U-Net' (or load a file in 'Segment with U-Net').")
        if layer is None:
            raise UNetInputError("choose an image layer to propose regions on.")
        model = self.registry.get(name).model
        axes = _layers.image_axes(layer, model.in_channels)
        if model.ndim != 2:
            raise UNetInputError(f"{name!r} is a 3D network: proposing regions needs a 2D one.")
        plane = _layers.current_plane(layer, self.viewer, axes)
        spatial = ax.spatial_axes(axes)
        lead = tuple(plane[a] for a in spatial[:-2])
        exclude = None
        if self.exclude.value is not None:
            labels = _layers.layer_data(self.exclude.value)
            if tuple(labels.shape[-2:]) != tuple(_layers.layer_data(layer).shape[-2:]):
                raise UNetInputError(f"{self.exclude.value.name!r} does not cover the image's pixels: skip none.")
            exclude = np.asarray(labels[lead] if labels.ndim > 2 else labels) > 0
        self._target = (layer, axes, lead)
        device = None if self.device.value == "auto" else self.device.value
        return AnnotateJob(
            model,
            _layers.layer_data(layer),
            axes=_layers.in_plane_axes(axes),
            index=_layers.plane_index(axes, plane) if lead else (),
            plane=lead,
            size=int(self.size.value),
            count=int(self.count.value),
            exclude=exclude,
            device=device,
            sampling=self.choose.value,
            measure=self.measure.value,
        )

    def start(self):
        """Run the proposal in a thread worker; returns the worker (None when the settings are wrong)."""
        if self.busy:
            return self.worker
        try:
            job = self.make_job()
        except UNetInputError as err:
            self.status.value = report_exception(err, "Proposing regions")
            return None
        self.progress_bar.setRange(0, PROGRESS_MAX)
        self.progress_bar.setValue(0)
        self.status.value = "Measuring the model's uncertainty (8 views of every tile)…"
        self._open_activity("Annotate next", 0)
        return self._launch(job)

    def cancel(self):
        if self.job is not None and self.running:
            self.job.cancel()
            self.status.value = "Cancelling…"

    def _on_yielded(self, event):
        if isinstance(event, Progress) and event.total:
            self.progress_bar.setValue(min(PROGRESS_MAX, int(PROGRESS_MAX * event.done / event.total)))
            self._show_activity(event.done, event.total)

    def _on_errored(self, err):
        self.status.value = report_exception(err, "Proposing regions", notify=False)

    def _on_returned(self, result):
        if isinstance(result, UserError):
            self.status.value = report_exception(result.error, "Proposing regions")
            return
        if result is None:
            self.status.value = "Cancelled: no regions proposed."
            return
        self.last_proposal = result
        self.progress_bar.setValue(PROGRESS_MAX)
        self._show(result)
        n = len(result.regions)
        drawn = self.job is not None and self.job.sampling == "power"
        order = "in the order drawn" if drawn else "most uncertain first"
        self.status.value = (
            f"{n} region(s) to annotate next, {order} (rank 1). Correct the labels inside one, select "
            f"its rectangle, and press '+ add corrected region' in 'Train U-Net'."
        )

    # -- layers --------------------------------------------------------------------------------------------------
    def _show(self, proposal: Proposal) -> None:
        layer, axes, lead = self._target
        transform = _layers.spatial_transform(layer, axes)
        spatial_shape = tuple(n for n, a in zip(_layers.layer_data(layer).shape, axes) if a != "C")
        name = f"{layer.name} uncertainty"
        old = self.uncertainty_layer
        if old is not None and old in self.viewer.layers and old.data.shape == spatial_shape:
            old.data[lead] = proposal.uncertainty
            old.refresh()
        else:
            data = np.zeros(spatial_shape, dtype=np.float32)
            data[lead] = proposal.uncertainty
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
            self.uncertainty_layer = self.viewer.add_image(
                data,
                name=name,
                colormap="magma",
                contrast_limits=(0.0, 1.0),
                opacity=0.6,
                blending="additive",
                **transform,
            )
        rectangles = [np.array([(*lead, *row[-2:]) for row in r.corners()]) for r in proposal.regions]
        features = {"rank": [r.rank for r in proposal.regions], "score": [float(r.score) for r in proposal.regions]}
        shapes_name = f"{layer.name} annotate next"
        if shapes_name in self.viewer.layers:
            self.viewer.layers.remove(shapes_name)
        self.shapes_layer = self.viewer.add_shapes(
            rectangles,
            ndim=len(spatial_shape),
            shape_type="rectangle",
            name=shapes_name,
            features=features,
            text={"string": "{rank}", "color": "yellow", "size": 12, "anchor": "upper_left"},
            edge_color="yellow",
            edge_width=max(1.0, min(spatial_shape[-2:]) / 200),
            face_color="transparent",
            **transform,
        )
