"""The "Segment with U-Net" dock widget: run a trained model on an image layer, plane by plane, in a thread."""

from __future__ import annotations

from pathlib import Path

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, SpinBox
from qtpy.QtWidgets import QProgressBar, QWidget

from ..core import axes as ax
from ..core.errors import UNetInputError
from ..core.instances import check_instance_options
from ..core.model_io import load_model
from ..core.predict import output_dtype
from . import _layers
from ._common import (
    JobRunner,
    SessionWidget,
    UserError,
    connect_layer_changes,
    device_choices,
    is_layer,
    layer_choices,
    notify_info,
    pick_default_layer,
    report_exception,
)
from ._dask_job import STAGES, DaskSegmentResult
from ._export import BioimageioExport
from ._measure import Measuring
from ._pixel import layer_voxel_size, refuse_lazy_rescaling, rescale_option, rescale_text
from ._predict_dask import LazySegmenting
from ._predict_job import PredictionJob, PredictionResult
from ._predict_options import InstanceOptions, Relabelling
from ._ui import ScrollingDock, compact_widgets, section, status_label

FROM_FILE = "from file (below)"
SCOPES = [("whole image / stack", "all"), ("current plane only", "plane")]


class PredictWidget(SessionWidget, ScrollingDock, LazySegmenting, JobRunner, Relabelling, Measuring, QWidget):
    """Segment an image layer with a trained U-Net.

    Attributes
    ----------
    viewer : napari.Viewer
    image : ComboBox
        The image layer (``.value`` is the layer).
    model : ComboBox
        A model of this session (see the Train widget) or ``FROM_FILE``.
    model_file : FileEdit
        The model file used when ``model`` is ``FROM_FILE``.
    scope, probabilities
        What to segment (``"all"`` or ``"plane"``) and whether to add the probability map.
    lazy : CheckBox
        Segment a dask, zarr or multiscale layer lazily (:class:`~._predict_dask.LazySegmenting`).
    options : QCollapsible
        The collapsed section of ``tile_size``, ``device`` and the post-processing of instance models
        (``instance_options``: ``threshold``, ``min_size``, ``fill_holes``, ``method``, ``restore_borders``,
        ``link_planes``, also attributes of the widget). Changing one after a run labels again from ``kept``.
    kept : Kept or None
        After a run of an instance model: its float32 foreground probabilities (of the whole run, or of the plane
        segmented), from which a change of the options labels again without the network. Dropped when the
        image, the model or the scope changes.
    job, worker
        The current or last run.
    last_model, last_labels, last_probabilities, last_layer
        The last run's model, label image (the whole stack's shape, also for a per-plane run), class probabilities
        ``(num_classes, *spatial)`` when asked for, and the Labels layer that received the result (or None).
    export : BioimageioExport
        The *Export for bioimage.io* button (``export.button``, in the Options section) and its run.
    """

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        self.viewer = viewer
        self.job: PredictionJob | None = None
        self.last_model = self.last_labels = self.last_probabilities = self.last_layer = None
        self._target = None

        self.image = ComboBox(label="image", choices=lambda _: layer_choices(viewer, "Image"), nullable=True)
        self.model = ComboBox(
            label="model", choices=lambda _: self._model_choices(), tooltip="a model of this session, or a file"
        )
        self.model_file = FileEdit(label="model file", mode="r", filter="*.pt *.zip")
        self.model_file.changed.connect(self._on_file_chosen)
        self.scope = ComboBox(label="segment", choices=SCOPES, value="all")
        self.probabilities = CheckBox(text="also add the probability map", value=False)
        widgets = [self.image, self.model, self.model_file, self.scope, self.probabilities, self._make_lazy_option()]
        self.form = compact_widgets(Container(widgets=widgets))
        self.form.margins = (0, 0, 0, 0)
        self.tile_size = SpinBox(
            label="tile size",
            min=0,
            max=8192,
            value=0,
            tooltip="input tile side in pixels; 0 = automatic (fits memory)",
        )
        self.device = ComboBox(label="device", choices=device_choices(), value="auto")
        self.tta = CheckBox(
            text="test-time augmentation (8x slower)",
            value=False,
            tooltip="average the 8 flips and quarter turns of every tile: smoother, more continuous boundaries",
        )
        self.rescale = rescale_option()
        self.instance_options = InstanceOptions()
        self.export = BioimageioExport(self)  # the chosen model as a bioimage.io package, in the Options section
        for name in InstanceOptions.NAMES:
            setattr(self, name, getattr(self.instance_options, name))
        self._make_measure_widgets()
        options = [self.tile_size, self.device, self.tta, self.rescale, *self.instance_options.widgets]
        self.options, _ = section(
            "Options",
            [*options, self.export.button, self.measure_objects],
            tooltip="tile size, device, test-time augmentation, pixel size; how an instance model's probabilities become "
            "objects (changing these after a run labels again without running the network); export for bioimage.io",
        )
        self.instance_options.connect(self._on_options_changed)
        for choice in (self.image, self.model, self.model_file, self.scope, self.lazy):
            choice.changed.connect(self._on_choice_changed)
        self.run_button, self.cancel_button, buttons = self._make_buttons(
            "Segment", "Cancel (keep done planes)", self.cancel
        )
        self.run_button.tooltip = "segment in the background; the viewer stays usable"
        self.progress_bar = QProgressBar()
        self.status = status_label("Choose an image and a model (train one, or pick a .unet.pt file).")

        layout = self._setup_scrolling()
        layout.addWidget(self.form.native)
        layout.addWidget(self.options)
        layout.addWidget(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status.native)
        layout.addWidget(self.measure_row.native)
        layout.addStretch()

        pick_default_layer(self.image, viewer, "Image")
        connect_layer_changes(viewer, self.reset_choices)
        self._attach_registry(viewer)
        self._on_registry_changed()
        self._on_choice_changed()

    # -- the session's models ------------------------------------------------------------------------------------
    def _connect_registry(self, registry):
        registry.changed.connect(self._on_registry_changed)

    def _disconnect_registry(self, registry):
        registry.changed.disconnect(self._on_registry_changed)

    def _drop_models(self, qt_alive: bool = True) -> None:
        if self.job is not None and self.running:
            self.job.cancel()
        self.last_model = None
        self._target = None
        self.drop_kept()
        if self.job is not None:
            self.job.model = None  # a running job keeps its own reference until its plane is done
        if not self.busy:
            self.job = self.worker = None
        if qt_alive:
            self.model.reset_choices()

    # -- choices -------------------------------------------------------------------------------------------------
    def _model_choices(self) -> list[str]:
        return [*(self.registry.names() if self.registry is not None else []), FROM_FILE]

    def reset_choices(self, *_):
        self.image.reset_choices()
        self.model.reset_choices()
        pick_default_layer(self.image, self.viewer, "Image")

    def _on_registry_changed(self):
        # Keep no reference to a model the registry dropped (replaced by a newer one of the same file, or cleared).
        if self.last_model is not None and not self.registry.holds(self.last_model):
            self.last_model = None
        if not self.busy:
            self._target = None
            if self.job is not None:
                self.job.model = None
        # A newly trained model becomes the default choice.
        self.model.reset_choices()
        names = self.registry.names()
        if names:
            self.model.value = names[0]

    def _on_choice_changed(self, *_):
        """Another image, model or scope: the kept probabilities no longer fit."""
        self.drop_kept()
        self._enable_options()

    def _enable_options(self) -> None:
        """The post-processing options for instance models only (or a model file not loaded yet); no per-plane scope
        for a 3D model (it segments whole volumes)."""
        model = self._chosen_model()
        ndim = getattr(model, "ndim", 2)
        if model is not None and ndim != self.instance_options.defaults_ndim:
            self.instance_options.use_defaults(ndim)  # once per change of dimensions: the user's values stay
        self.scope.enabled = ndim == 2 and not self.lazy_mode  # a lazy run: the whole image
        per_plane = self.scope.value == "plane" and self.scope.enabled
        self.instance_options.enable(getattr(model, "task", None) != "semantic", not (per_plane or self.lazy_mode))

    def _chosen_model(self):
        """The chosen model, or None when not known yet (a file not loaded)."""
        registry, name = self.registry, self.model.value
        if registry is None:
            return None
        if name != FROM_FILE and name in registry:
            return registry.get(name).model
        path = str(self.model_file.line_edit.value or "").strip()
        entries = [registry.get(n) for n in registry.names()]
        return next((e.model for e in entries if path and e.path == path), None)

    def _on_file_chosen(self, *_):
        if self.model_file.line_edit.value:
            self.model.value = FROM_FILE

    # -- inputs --------------------------------------------------------------------------------------------------
    def resolve_model(self):
        """The chosen model; a file is loaded (and listed for the session). Raises ``ModelFileError``."""
        registry = self.registry
        if registry is None:
            raise UNetInputError("this widget was closed: open 'Segment with U-Net' again.")
        if self.model.value != FROM_FILE and self.model.value in registry:
            return registry.get(self.model.value).model
        path = str(self.model_file.line_edit.value or "").strip()
        if not path or self.model.value != FROM_FILE:
            raise UNetInputError("choose a model: train one with 'Train U-Net', or pick a .unet.pt model file.")
        model = load_model(path, device="cpu")
        registry.changed.disconnect(self._on_registry_changed)
        try:
            registry.add(model, Path(path).name, path)
        finally:
            registry.changed.connect(self._on_registry_changed)
        self.model.reset_choices()
        return model

    def make_job(self):
        """A :class:`PredictionJob` for the current settings (a ``DaskSegmentJob`` when lazy); raises
        ``UNetInputError`` on mistakes."""
        layer = self.image.value
        if layer is None:
            raise UNetInputError("choose an image layer to segment (open an image, or File > Open Sample).")
        model = self.resolve_model()
        data = _layers.layer_data(layer)
        axes = _layers.image_axes(layer, model.in_channels)
        # Checked here, on the GUI thread, so that a wrong channel count is reported before any work starts.
        axes = ax.resolve_axes(data.shape, axes, model.in_channels, repr(layer.name))
        options = self.instance_options.values()
        check_instance_options(options["threshold"], options["min_size"], options["method"])
        name = self.registry.name_of(model) or "model"
        tile = int(self.tile_size.value)
        tile_shape = model.valid_input_shape((tile, tile)) if tile else None
        device = None if self.device.value == "auto" else self.device.value
        pixel = {"voxel_size": layer_voxel_size(layer, axes), "rescale": bool(self.rescale.value)}
        if self.lazy_mode:
            refuse_lazy_rescaling(model, pixel["voxel_size"], pixel["rescale"])
            self._target = (layer, axes, None, model, name)
            return self.make_dask_job(layer, model, data, axes, options, tile_shape, device)
        plane = None
        if self.scope.value == "plane" and model.ndim == 2 and ax.stack_axes(axes):  # a 3D model: whole volumes
            plane = _layers.current_plane(layer, self.viewer, axes)
        stack = None
        if plane is not None:  # the plane's ids come after those of the other planes of its Labels layer
            target = self._plane_target(
                layer, axes, {"source": layer.name, "model": name}, output_dtype(model, "labels")
            )
            stack = None if target is None else target.data
        # The job takes the plane (and reads everything) on its worker thread: nothing is read here.
        job = PredictionJob(
            model,
            data,
            axes,
            plane=plane,
            tile_shape=tile_shape,
            device=device,
            options=options,
            stack_labels=stack,
            probabilities=bool(self.probabilities.value),
            name=layer.name,
            tta=bool(self.tta.value),
            **pixel,
        )
        self._target = (layer, axes, plane, model, name)
        return job

    # -- running -------------------------------------------------------------------------------------------------
    def _buttons(self) -> tuple:
        return self.run_button, self.cancel_button

    def start(self):
        """Start segmenting in a thread worker; returns the worker (None if the settings are wrong)."""
        if self.busy:
            return self.worker
        try:
            job = self.make_job()
        except UNetInputError as err:
            self.status.value = report_exception(err, "Segmentation")
            return None
        self.drop_kept()  # the new run keeps its own
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(0)
        layer, _, plane, model, _ = self._target
        self.status.value = f"Segmenting {layer.name!r}" + (f" plane {plane}…" if plane else "…")
        if not isinstance(job, PredictionJob):
            self._lazy_started(job, layer)
        else:
            self._open_activity(f"Segmenting {layer.name}", 1000)  # napari's progress bar, beside the dock's
            self.status.value += rescale_text(model, job.voxel_size, job.rescale)
            if model.ndim == 3 and self.scope.value == "plane":
                self.status.value += " A 3D model segments whole volumes: 'current plane only' does not apply."
        return self._launch(job)

    def cancel(self):
        """Stop after the current batch of tiles; finished planes are still added."""
        if self.job is not None and self.running:
            self.job.cancel()
            self.status.value = "Cancelling…"

    def _on_yielded(self, event):
        if event.stage in STAGES:
            return self._on_lazy_yielded(event)
        self.progress_bar.setValue(int(event.done))
        self._show_activity(int(event.done))
        info = event.info or {}
        if event.stage == "label":
            self.status.value = "Labelling the objects…"
        elif info.get("planes", 1) > 1:
            self.status.value = f"{info.get('unit', 'plane')} {info['plane'] + 1} of {info['planes']}"

    def _on_returned(self, result: PredictionResult):
        if isinstance(result, UserError):
            self.status.value = report_exception(result.error, "Segmentation")
            return
        if isinstance(result, DaskSegmentResult):
            return self._on_lazy_returned(result)
        layer, axes, plane, model, model_name = self._target
        self._target, self.last_model = None, model
        name, transform, mark = _layers.labels_output(layer, axes, model, model_name)
        if plane is None:
            labels = result.labels
            self.last_layer = self.viewer.add_labels(labels, name=name, **transform)
            _layers.mark_output(self.last_layer, "prediction", **mark)
        else:
            labels = self._write_plane(layer, axes, plane, result.labels, name, transform, mark)
        self.last_labels = labels
        self.last_probabilities = result.probabilities
        if result.probabilities is not None and plane is None:
            self._add_probabilities(layer, model, model_name, result.probabilities, transform)
        done = len(result.planes_done)
        if result.cancelled:
            message = (
                f"Cancelled: {done} of {result.planes_total} plane(s) segmented and kept in {self.last_layer.name!r}."
            )
        else:
            n = result.objects if model.task == "instances" else None
            message = f"Segmented {layer.name!r}" + (f": {n} objects" if n is not None else "")
            message += f" in {self.last_layer.name!r}."
        self.status.value = message
        notify_info(message)
        self._enable_options()  # the model's task is known now
        self._keep(result, layer, self.last_layer, plane, ax.spatial_axes(axes))
        if not result.cancelled:
            self.measure_layer(self.last_layer, layer, axes, model)  # its features, in a worker

    def _plane_target(self, layer, axes, mark, dtype):
        """The plugin's Labels layer that per-plane runs on ``layer`` with this model write into, or None."""
        data = _layers.layer_data(layer)
        full_shape = tuple(n for n, a in zip(data.shape, axes) if a != "C")
        target = None
        for candidate in self.viewer.layers:
            info = _layers.output_info(candidate)
            if (
                is_layer(candidate, "Labels")
                and info.get("role") == "prediction"
                and info.get("source") == mark["source"]
                and info.get("model") == mark["model"]
                and not info.get("lazy")  # a dask array: not written into
                and tuple(candidate.data.shape) == full_shape
                and candidate.data.dtype == dtype
            ):
                target = candidate
        return target

    def _write_plane(self, layer, axes, plane, plane_labels, name, transform, mark):
        """Write one plane into the plugin's Labels layer for ``layer`` and this model (made on first use)."""
        spatial = ax.spatial_axes(axes)
        full_shape = tuple(n for n, a in zip(_layers.layer_data(layer).shape, axes) if a != "C")
        target = self._plane_target(layer, axes, mark, plane_labels.dtype)
        if target is None:
            target = self.viewer.add_labels(np.zeros(full_shape, plane_labels.dtype), name=name, **transform)
            _layers.mark_output(target, "prediction", **mark)
        target.data[ax.image_index(spatial, plane, slice(None), slice(None))] = plane_labels
        target.refresh()
        self.last_layer = target
        return target.data

    def _add_probabilities(self, layer, model, model_name, probabilities, transform):
        # The background probability is 1 minus the rest for two classes: show the foreground only.
        start = 1 if model.num_classes == 2 else 0
        for k in range(start, model.num_classes):
            what = "probabilities" if model.num_classes == 2 else f"probabilities of {model.class_names[k]}"
            added = self.viewer.add_image(
                probabilities[k],
                name=_layers.output_name(layer.name, what, model_name),
                colormap="magma",
                blending="additive",
                opacity=0.6,
                contrast_limits=(0.0, 1.0),
                **transform,
            )
            _layers.mark_output(added, "probabilities", source=layer.name, model=model_name, cls=model.class_names[k])

    def _on_errored(self, err):
        self.status.value = report_exception(err, "Segmentation", notify=False)
