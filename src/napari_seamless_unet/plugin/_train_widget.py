"""The "Train U-Net" dock widget: pick annotated layers and a few settings, train in a thread, watch the loss."""

from __future__ import annotations

import datetime
import os
import time
from pathlib import Path

import napari
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, Label, PushButton, SpinBox
from qtpy.QtWidgets import QProgressBar, QWidget

from ..core.errors import UNetInputError
from ..core.progress import Progress
from ..core.regions import IGNORE
from . import _layers
from ._common import (
    JobRunner,
    SessionWidget,
    UserError,
    connect_layer_changes,
    notify_info,
    pick_default_layer,
    report_exception,
)
from ._corrections import CorrectedRegions, context_for, corrected_region, selected_rectangle
from ._jobs import Preview, TrainingJob, format_duration, stop_reason, training_outcome
from ._pixel import layer_voxel_size
from ._plot import LossPlot
from ._start_from import StartFrom
from ._train_pairs import _PairRow
from ._train_settings import PRESETS, AdvancedSettings  # noqa: F401  (PRESETS: importable from here)
from ._ui import ScrollingDock, compact_widgets, status_label

TASKS = [("instances (separate touching objects)", "instances"), ("semantic (label value = class)", "semantic")]
PROGRESS_MAX = 1000
UNLABELLED = [("background", "background"), ("ignored (sparse annotation; 1 = background)", "ignore")]


class TrainWidget(SessionWidget, ScrollingDock, JobRunner, QWidget):
    """Train a U-Net on image layers and their Labels layers.

    Attributes
    ----------
    viewer : napari.Viewer
    form : magicgui Container
        The main settings (``task``, ``dimensions``: 2 or 3, ``unlabelled``, ``steps``, ``time_budget``,
        ``save_path``); set their ``.value`` from a script. 3D is enabled when every image chosen has a Z axis.
    sections : dict[str, QCollapsible]
        The collapsed sections of advanced settings: ``"network"`` (``preset``, ``device``), ``"augmentation"``
        (``elastic``, ``flips``, ``rotation``, ``intensity``), ``"schedule"`` (``learning_rate``, ``batch_size``,
        ``tile_size``) and ``"validation"`` (``validation_share``, ``val_every``, ``preview_on``,
        ``preview_every``); every setting is also an attribute of the widget.
    pairs : list of (Image, Labels)
        The training pairs chosen (see :meth:`set_pairs`).
    job : TrainingJob or None
        The current or last training job.
    worker : napari thread worker or None
        The worker running ``job``.
    last_model : UNet or None
        The last trained model (also listed in the Segment widget); dropped when the widget closes.
    last_history : dict or None
        Its training history (``"step"``, ``"loss"``, ``"val_step"``, ...).
    last_path : Path or None
        Where it was saved (the best model by validation score is beside it, see ``core.train.best_path``).
    last_stop_reason : str or None
        Why the last training ended: "steps", "time_budget", "stopped" or "diverged".
    plot : LossPlot
        The live loss plot.
    registry : ModelRegistry
        The models of this viewer's session (see :func:`napari_seamless_unet.plugin.current_model`).
    """

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        self.viewer = viewer
        self.job: TrainingJob | None = None
        self.last_model = None
        self.last_history = None
        self.last_path: Path | None = None
        self.last_stop_reason: str | None = None
        self._started = time.monotonic()
        self.preview_layer = None
        self._image_name = "image"

        self._pair_rows: list[_PairRow] = []
        self._rows = Container(widgets=[], labels=False)
        self._rows.margins = (0, 0, 0, 0)
        self.add_pair_button = PushButton(text="+ add a pair", tooltip="train on several images at once")
        self.add_pair_button.changed.connect(lambda *_: self.add_pair())

        # The main settings: always shown.
        self.task = ComboBox(label="task", choices=TASKS, value="instances")
        self.unlabelled = ComboBox(
            label="unlabelled",
            choices=UNLABELLED,
            value="background",
            tooltip="what unpainted pixels (label 0) are: background, or unknown (sparse annotation)",
        )
        self.steps = SpinBox(label="steps", min=1, max=1_000_000, value=200)
        self.time_budget = FloatSpinBox(
            label="time limit",
            min=0.0,
            max=100_000.0,
            value=0.0,
            step=1.0,
            tooltip="training ends after the steps or this time, whichever comes first; 0 = no limit",
        )
        self.save_path = FileEdit(label="save as", mode="w", filter="*.unet.pt", value=self._default_path())
        self.time_budget.native.setSuffix(" min")
        self.time_budget.native.setSpecialValueText("no limit")
        self.save_path.tooltip = (
            "the model file; the best one by validation score goes beside it as <name>.best.unet.pt"
        )
        self.advanced = AdvancedSettings()  # collapsed sections; their widgets are attributes of this widget too
        for name in AdvancedSettings.WIDGETS:
            setattr(self, name, getattr(self.advanced, name))
        self.sections = self.advanced.sections
        self.start_from = StartFrom(lambda: self.registry)  # random weights, or a model to fine-tune
        # First in the network section: in the main form it pushed Train below a laptop screen (test_screen.py).
        start = compact_widgets(Container(widgets=[self.start_from.choice, self.start_from.file]))
        self.sections["network"].content().layout().insertWidget(0, start.native)
        self.regions = CorrectedRegions(self.add_corrected_region)
        main = [self.task, self.dimensions, self.unlabelled, self.steps, self.time_budget, self.save_path]
        self.form = compact_widgets(Container(widgets=main))
        self.form.margins = (0, 0, 0, 0)

        self.train_button, self.stop_button, buttons = self._make_buttons("Train", "Stop (keep model)", self.stop)
        self.train_button.tooltip = "train in the background; the viewer stays usable"
        self.progress_bar = QProgressBar()
        self.progress_bar.setValue(0)
        self.status = status_label("Choose an image and its Labels layer, then Train.")
        self.plot = LossPlot()

        layout = self._setup_scrolling()
        pairs_label = Label(value="<b>Training data</b>: image → its labels")
        layout.addWidget(pairs_label.native)
        layout.addWidget(self._rows.native)
        self.regions.container[0].insert(0, self.add_pair_button)  # one row: a laptop screen shows the Train button
        layout.addWidget(self.regions.container.native)
        layout.addWidget(self.form.native)
        for collapsible in self.sections.values():
            layout.addWidget(collapsible)
        layout.addWidget(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status.native)
        layout.addWidget(self.plot, stretch=1)

        self.add_pair()
        connect_layer_changes(viewer, self.reset_choices)
        self._attach_registry(viewer)

    # -- configuration -------------------------------------------------------------------------------------------
    @staticmethod
    def _default_path() -> Path:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        return Path.home() / "unet-models" / f"unet-{stamp}.unet.pt"

    def reset_choices(self, *_):
        """Refresh the layer choices (napari calls this when layers change)."""
        for row in self._pair_rows:
            row.image.reset_choices()
            row.labels.reset_choices()
            pick_default_layer(row.image, self.viewer, "Image")
            if row.labels.value is None:
                row._guess_labels()
        self.start_from.reset_choices()
        self._enable_dimensions()

    def add_pair(self, image=None, labels=None) -> _PairRow:
        """Add a row for one more (image, labels) pair."""
        row = _PairRow(self)
        row.remove.changed.connect(lambda *_: self._remove_row(row))
        row.image.changed.connect(self._enable_dimensions)
        if image is not None:
            row.image.value = image
        if labels is not None:
            row.labels.value = labels
        self._pair_rows.append(row)
        self._rows.append(row.container)
        self._enable_dimensions()
        return row

    def _remove_row(self, row):
        if len(self._pair_rows) > 1:
            self._pair_rows.remove(row)
            self._rows.remove(row.container)
            self._enable_dimensions()

    def _enable_dimensions(self, *_):
        """3D only when every chosen image is a volume (has a Z axis); else back to 2D."""
        images = [row.image.value for row in self._pair_rows]
        volumes = bool(images) and all(_layers.has_z(image) for image in images)
        if not volumes:
            self.dimensions.value = 2
        self.dimensions.enabled = volumes

    def set_pairs(self, pairs) -> None:
        """Replace the training pairs, e.g. ``set_pairs([(viewer.layers['cells'], viewer.layers['cells labels'])])``."""
        while self._pair_rows:
            self._pair_rows.pop()
            self._rows.pop()
        for image, labels in pairs:
            self.add_pair(image, labels)

    @property
    def pairs(self) -> list[tuple]:
        return [(row.image.value, row.labels.value) for row in self._pair_rows]

    def make_config(self, **overrides):
        """The :class:`TrainConfig` the current settings describe (``overrides`` replace fields)."""
        from ..core.train import TrainConfig

        # FileEdit resolves an empty entry to the working directory: read the text instead.
        path = os.path.expanduser(str(self.save_path.line_edit.value or "").strip())
        steps = int(self.steps.value)
        values = {
            "task": self.task.value,
            "unlabelled": self.unlabelled.value,
            "steps": steps,
            "time_budget": float(self.time_budget.value) * 60 or None,
            "save_path": path or None,
            "checkpoint_every": max(1, min(50, steps // 4)),
            **self.advanced.config_values(self.task.value),
        }
        values.update(overrides)
        return TrainConfig(**values)

    def _preview_steps(self) -> int:
        return int(self.preview_every.value) if self.preview_on.value else 0

    def make_job(self, **overrides) -> TrainingJob:
        """Collect the layers and settings into a :class:`TrainingJob`; raises ``UNetInputError`` on mistakes.

        Only shapes and names are looked at here (on the GUI thread): the job reads the layers' data in its worker.
        """
        plan = _layers.plan_training(self.pairs, self.unlabelled.value, int(self.dimensions.value))
        init, init_name = self.start_from.resolve()
        if init is not None:  # the model's task and classes, not the dock's
            overrides = {"task": "instances", "instance_classes": 2, **overrides}
        if self.regions.pairs:
            if plan.ndim == 3:
                raise UNetInputError("corrected regions are planes: train a 2D network with them, or clear them.")
            overrides = {"ignore_label": IGNORE, **overrides}
        image_layer = self.pairs[0][0]
        # The size recorded with the model: the image layer's scale along Z, Y, X (a 3D network is shaped by it), or
        # Y, X for a 2D one (unchanged by it), where napari's default scale of 1s records nothing.
        size = _layers.voxel_size(image_layer) if plan.ndim == 3 else layer_voxel_size(image_layer, ndim=2)
        if size is not None:
            overrides = {"voxel_size": size, **overrides}
        config = self.make_config(axes=plan.axes, **overrides)
        preview, index, preview_axes = None, None, None
        # Previews copy the live network from the progress events; of a 2D network only (one plane of the image).
        every = self._preview_steps() if plan.ndim == 2 else 0
        if every:
            axes = _layers.image_axes(image_layer)
            plane = _layers.current_plane(image_layer, self.viewer, axes)
            preview, index = _layers.layer_data(image_layer), _layers.plane_index(axes, plane)
            preview_axes = _layers.in_plane_axes(axes)
            self._preview_target = (image_layer, axes, plane)
        self._image_name = image_layer.name
        return TrainingJob(
            [],
            [],
            config,
            plan=None if self.regions.pairs and self.regions.only.value else plan,
            preview_image=preview,
            preview_index=index,
            preview_axes=preview_axes,
            preview_every=every,
            init=init,
            init_name=init_name,
            regions=self.regions.pairs,
        )

    # -- running -------------------------------------------------------------------------------------------------
    def _buttons(self) -> tuple:
        return self.train_button, self.stop_button

    def start(self):
        """Start training in a thread worker; returns the worker (None if the settings are wrong)."""
        if self.busy:
            return self.worker
        try:
            job = self.make_job()
        except UNetInputError as err:
            report_exception(err, "Training")
            return None
        self.plot.clear()
        self.progress_bar.setRange(0, PROGRESS_MAX)
        self.progress_bar.setValue(0)
        self._started = time.monotonic()
        self.status.value = "Reading the annotated planes…"
        self._open_activity("Training U-Net", 0)  # napari's progress bar, beside the dock's
        worker = self._launch(job)
        # On a small screen the dock scrolls: bring the progress, the status and the plot into view.
        self.scroll_area.ensureWidgetVisible(self.plot, 0, 0)
        return worker

    def stop(self):
        """Stop after the current step, keeping (and saving) the model trained so far."""
        if self.job is not None and self.running:
            self.job.stop()
            self.status.value = "Stopping after the current step…"

    def _on_yielded(self, event):
        if isinstance(event, Preview):
            self._show_preview(event)
            return
        if not isinstance(event, Progress):
            return
        info = event.info or {}
        if event.stage == "read":
            self._started = time.monotonic()  # the time limit counts from here (about)
            self.status.value = f"Training ({info.get('dimensions', '2D network')}) on {info.get('summary')}…"
            return
        step = info.get("step", event.done)
        text = self._show_progress(step, event.total)
        if info.get("loss") is not None:
            self.plot.add_point("loss", step, info["loss"])
            text += f"   loss {info['loss']:.4f}"
        val = info.get("val")
        if isinstance(val, dict):
            if val.get("loss") is not None:
                self.plot.add_point("val loss", step, val["loss"])
            for key, name in (("ap50", "val AP50"), ("iou", "val IoU")):
                if val.get(key) is not None:
                    self.plot.metric_name = name
                    self.plot.add_point("val metric", step, val[key])
                    text += f"   {name} {val[key]:.3f}"
                    break
        if self.job is not None and self.job.stopping:
            text += "   (stopping…)"
        self.status.value = text

    def _show_preview(self, preview: Preview):
        image_layer, axes, _plane = self._preview_target
        name = _layers.output_name(image_layer.name, "preview", "training")
        layer = self.preview_layer
        if layer is not None and layer in self.viewer.layers and layer.data.shape == preview.labels.shape:
            layer.data = preview.labels
        else:
            transform = _layers.spatial_transform(image_layer, axes)
            # A 2D preview of the plane shown: keep only the Y, X part of the image's transform.
            self.preview_layer = self.viewer.add_labels(
                preview.labels,
                name=name,
                scale=transform["scale"][-2:],
                translate=transform["translate"][-2:],
                opacity=0.5,
            )
        _layers.mark_output(self.preview_layer, "preview", source=image_layer.name, step=preview.step)

    def _on_returned(self, result):
        if isinstance(result, UserError):
            self.status.value = report_exception(result.error, "Training")
            return
        if result is None:
            self.status.value = "Stopped before training began: nothing was trained."
            return
        model, history = result
        history = history or {}
        self.last_model = model
        self.last_history = history
        config = self.job.config if self.job is not None else None
        path = config.save_path if config is not None else None
        self.last_path = Path(path) if path else None
        # Listed under its file name (retraining the same file replaces it), else the image's name and the time.
        name = Path(path).name if path else f"{self._image_name} model ({datetime.datetime.now():%H:%M:%S})"
        if self.registry is not None:  # None once the widget was closed while training
            name = self.registry.add(model, name, path)
        self.last_stop_reason = stop_reason(history, config)
        if self.last_stop_reason in ("steps", "time_budget"):
            self.progress_bar.setValue(PROGRESS_MAX)  # a normal end: whichever limit ended it is reached
        self.start_from.set_trained(model, name)  # Train again: continues from this model
        message = training_outcome(history, config, path, getattr(self.job, "init_name", None))
        if not path:
            message += f" It is listed as {name!r} in 'Segment with U-Net'."
        self.status.value = message
        notify_info(message)

    def _show_progress(self, step: int, total: int) -> str:
        """Move the progress bar after ``step`` of ``total``; returns the status text.

        With a time limit the bar follows whichever limit comes first (steps done or time elapsed); it reaches
        100 % only when training ends normally.
        """
        fraction = step / max(1, total)
        text = f"step {step}/{total}"
        budget = self.job.config.time_budget if self.job is not None else None
        if budget:
            elapsed = time.monotonic() - self._started
            fraction = max(fraction, elapsed / budget)
            text += f" ({format_duration(max(0.0, budget - elapsed))} left)"
        self.progress_bar.setValue(min(PROGRESS_MAX - 1, int(PROGRESS_MAX * fraction)))
        self._show_activity(step, total)
        return text

    def _on_errored(self, err):
        self.status.value = report_exception(err, "Training", notify=False)

    def _drop_models(self, qt_alive: bool = True) -> None:
        if self.job is not None and self.running:
            self.job.stop()  # the model trained so far is saved
        self.last_model = None
        self.start_from.drop()

    def add_corrected_region(self):
        """*+ add corrected region* (see ``_corrections``); returns the number of regions (None on an error)."""
        image, labels = self.pairs[0]
        try:
            context = context_for(self.start_from.resolve()[0], self.preset.value)
            rect = selected_rectangle(self.viewer)
            self.regions.append(*corrected_region(image, labels, self.viewer, context=context, rectangle=rect))
        except UNetInputError as err:
            self.status.value = report_exception(err, "Adding a corrected region")
            return None
        self.status.value = f"Added {self.regions.names[-1]}: {self.regions.count.value} to train on."
        return len(self.regions.pairs)
