"""The work behind the widgets, free of Qt: a training job and a prediction job.

Each job is a generator (``run``) for a napari thread worker plus a thread-safe ``stop``/``cancel``; the widgets
own one job per run and only forward its events to the screen. A console script can drive the same jobs with
:func:`napari_seamless_unet.core.progress.run`.
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core import axes as ax
from ..core.instances import instances_from_foreground
from ..core.predict import allocate_output, iter_predict, iter_segment
from ..core.progress import Progress
from ._relabel import largest_id_outside


# -- training ----------------------------------------------------------------------------------------------------
@dataclass
class Preview:
    """A prediction of the model being trained, on the preview image, at ``step``."""

    step: int
    labels: np.ndarray


class TrainingJob:
    """Train on annotated planes, yielding ``Progress`` events and occasional :class:`Preview` events.

    Parameters
    ----------
    images, labels : list of arrays
        Training planes (see :func:`._layers.training_data`); empty when ``plan`` is given.
    config : TrainConfig
        Training configuration.
    plan : TrainingPlan, optional
        Layers to read the training planes from, in :meth:`run` (on the worker thread, not the GUI thread);
        then a first ``Progress`` event of stage ``"read"`` carries ``{"summary": ...}``.
    preview_image : array, optional
        A 2D plane (axes ``preview_axes``) segmented with a copy of the current model every ``preview_every``
        steps, on the worker thread. With ``preview_index``, the plane ``preview_image[preview_index]`` of a
        larger (lazy) array, read in :meth:`run`.
    """

    def __init__(
        self,
        images: Sequence,
        labels: Sequence,
        config,
        *,
        plan=None,
        preview_image=None,
        preview_index: tuple | None = None,
        preview_axes: str | None = None,
        preview_every: int = 0,
        names: Sequence[str] | None = None,
    ):
        self.images = list(images)
        self.names = list(names) if names is not None else None
        self.labels = list(labels)
        self.config = config
        self.plan = plan
        self.summary: str | None = None
        self.preview_image = preview_image
        self.preview_index = preview_index
        self.preview_axes = preview_axes
        self.preview_every = int(preview_every or 0)
        self._stop = threading.Event()
        self._checkpoint_mtime = None

    def stop(self) -> None:
        """Ask training to finish after the current step; the model so far is kept (and saved)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _read(self) -> bool:
        """Read the training planes and the preview plane (worker thread); False if stopped meanwhile."""
        if self.plan is not None:
            data = self.plan.load(should_stop=self._stop.is_set)
            if data is None:
                return False
            self.images, self.labels, self.names, self.summary = data.images, data.labels, data.names, data.summary
            self.plan = None
        if self.preview_image is not None and self.preview_index is not None:
            self.preview_image = np.asarray(self.preview_image[self.preview_index])
            self.preview_index = None
        return True

    def run(self) -> Generator[Progress | Preview, None, object]:
        """Generator for a thread worker: yields progress and previews, returns the ``TrainResult``.

        Returns None when stopped before training began (while reading the layers).
        """
        from ..core.train import iter_train

        reading = self.plan is not None
        if not self._read():
            return None
        if reading:
            yield Progress(0, int(self.config.steps), "read", {"summary": self.summary})
        gen = iter_train(self.images, self.labels, config=self.config, should_stop=self._stop.is_set, names=self.names)
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                return stop.value
            yield event
            step = int(event.done)
            if (
                self.preview_every > 0
                and self.preview_image is not None
                and step > 0
                and (step % self.preview_every == 0 or step == event.total)
                and not self._stop.is_set()
            ):
                preview = self._preview(event, step)
                if preview is not None:
                    yield preview

    def _current_model(self, event: Progress):
        """A copy of the network being trained: from the event if the trainer passes it, else the checkpoint."""
        info = event.info or {}
        model = info.get("model")
        if model is not None:
            # A copy, so that switching it to eval mode (and another device) does not touch the training.
            return copy.deepcopy(model)
        path = self.config.save_path
        if not path or not os.path.exists(path):
            return None
        mtime = os.path.getmtime(path)
        if mtime == self._checkpoint_mtime:
            return None
        self._checkpoint_mtime = mtime
        from ..core.model_io import load_model

        return load_model(path, device="cpu")

    def _preview(self, event: Progress, step: int) -> Preview | None:
        model = self._current_model(event)
        if model is None:
            return None
        out = allocate_output(model, self.preview_image, axes=self.preview_axes, output="labels")
        gen = iter_segment(model, self.preview_image, axes=self.preview_axes, out=out, device=self.config.device)
        for _ in gen:
            if self._stop.is_set():
                gen.close()
                return None
        return Preview(step, out)


STOP_REASONS = ("steps", "time_budget", "stopped", "diverged")


def stop_reason(history: dict, config) -> str:
    """Why training ended: ``history["stop_reason"]`` when the trainer says, else inferred from the history.

    One of ``"steps"`` (all steps done), ``"time_budget"`` (the time limit ended it), ``"stopped"`` (the user
    stopped it) and ``"diverged"`` (the loss became NaN or infinite).
    """
    reason = history.get("stop_reason")
    if reason in STOP_REASONS:
        return reason
    if history.get("diverged"):
        return "diverged"
    if history.get("stopped"):
        return "stopped"
    steps = history.get("step") or [0]
    planned = getattr(config, "steps", None)
    if planned is not None and steps[-1] < int(planned) and getattr(config, "time_budget", None):
        return "time_budget"
    return "steps"


def format_duration(seconds: float) -> str:
    """``45 s``, ``1.5 s``, ``2 min``, ``1 h 30 min``."""
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.3g} s"
    minutes = seconds / 60
    if minutes < 120:
        return f"{minutes:.3g} min"
    hours, rest = divmod(round(minutes), 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def training_outcome(history: dict, config, path: str | os.PathLike | None) -> str:
    """What the user is told when training ends: why it ended, and which file holds which model.

    E.g. "Finished: 113 steps in the 60 s time limit. Saved cells.unet.pt (last step) and cells.best.unet.pt
    (best validation score, step 100) in /data/models."
    """
    from ..core.train import best_path

    reason = stop_reason(history, config)
    last = (history.get("step") or [0])[-1]
    if reason == "diverged":
        message = (
            f"Stopped at step {last + 1}: the loss diverged; kept the weights of step {last} — lower the learning rate."
        )
    elif reason == "stopped":
        message = f"Stopped by you at step {last}" + (" (model saved)." if path else ".")
    elif reason == "time_budget":
        budget = getattr(config, "time_budget", None) or history.get("elapsed_seconds") or 0
        message = f"Finished: {last} steps in the {format_duration(budget)} time limit."
    else:
        message = f"Finished: {last} steps."
    settings = settings_text(history.get("settings"))
    if not path:
        return message + " Not saved: no file name given (the model is kept for this session)." + settings
    path = Path(path)
    what = f"weights of step {last}" if reason == "diverged" else "last step"
    files = f"Saved {path.name} ({what})"
    best, best_step = best_path(path), history.get("best_step")
    if best_step is not None and best.exists():
        files += f" and {best.name} (best validation score, step {best_step})"
    return f"{message} {files} in {path.parent}.{settings}"


def settings_text(settings: dict | None) -> str:
    """' Network: 16 channels, depth 2, tiles of 104 px, batch 1, learning rate 0.003 (chosen for cpu).'"""
    if not settings or "base_channels" not in settings:
        return ""
    chosen = " (chosen for " + str(settings.get("device", "the device")) + ")" if settings.get("automatic") else ""
    return (
        f" Network: {settings['base_channels']} channels, depth {settings['depth']}, tiles of "
        f"{settings['tile_size']} px, batch {settings['batch_size']}, learning rate {settings['learning_rate']:g}"
        f"{chosen}."
    )


# -- prediction --------------------------------------------------------------------------------------------------
@dataclass
class PredictionResult:
    """Labels (and probabilities) of the planes finished; ``cancelled`` when the run stopped early.

    For an instance model, ``foreground`` holds the float32 foreground probabilities of what was segmented (a
    view of ``probabilities`` when those were asked for), so that the labels can be made again with other
    ``options`` without the network (:class:`._relabel.RelabelJob`); ``offset`` is the largest id of the stack outside
    the plane segmented, after which the plane's ids start.
    """

    labels: np.ndarray
    probabilities: np.ndarray | None
    planes_done: list = field(default_factory=list)
    planes_total: int = 0
    cancelled: bool = False
    max_label: int = 0  # the largest label (the number of objects of an instance model), found on the worker
    foreground: np.ndarray | None = None
    options: dict = field(default_factory=dict)
    offset: int = 0
    classes: int = 2  # the model's classes: ``foreground`` has a class axis (interior, border) when there are 3

    @property
    def objects(self) -> int:
        """The number of objects of an instance model's labels (ids ``offset + 1 .. max_label``)."""
        return max(0, self.max_label - self.offset)


class _ForegroundOut:
    """The ``out`` of ``iter_predict`` for one plane (``out_index`` of ``foreground``) that keeps only the classes
    after the background: class 1 (``foreground`` without a class axis), or classes 1.. (with one)."""

    def __init__(self, foreground: np.ndarray, out_index: tuple, num_classes: int):
        self.plane = foreground[(..., *out_index)]  # a view
        self.shape, self.dtype = (num_classes, *self.plane.shape[-2:]), foreground.dtype
        self.num_classes = num_classes

    def __setitem__(self, index: tuple, values: np.ndarray) -> None:
        if self.num_classes == 2:
            self.plane[index[1:]] = values[1]
        else:
            self.plane[(slice(None), *index[1:])] = values[1:]


class PredictionJob:
    """Segment an image plane by plane, so that a cancelled run keeps every finished plane.

    Parameters
    ----------
    model : UNet
        The network.
    image : array-like
        numpy, dask or zarr array with axes ``axes``; read lazily.
    planes : list of dict, optional
        Planes to segment (``{axis: index}``); default all. Outputs always have the whole image's shape.
    plane : dict, optional
        Segment only this plane (``{axis: index}`` of every axis but C, Y, X) of ``image``; the outputs have the
        plane's shape. The plane is taken from ``image`` in :meth:`run`, on the worker thread (slicing a zarr
        array reads it).
    options : dict, optional
        Post-processing of an instance model: keywords of
        :func:`~napari_seamless_unet.core.instances.instances_from_probabilities` (``threshold``, ``min_size``,
        ``fill_holes``, ``method``, ``restore_borders``, ``link_planes``); ignored by semantic models. The
        foreground probability of every plane is kept, and the labels are made from it once all planes are
        done (or the run is cancelled), with ids unique across the stack as ``segment`` gives them.
    stack_labels : array-like, optional
        With ``plane``: the label stack the plane will be written into (read on the worker thread); the plane's
        ids start after the largest id of its other planes.
    probabilities : bool
        Also return the class probabilities (``(num_classes, *spatial)`` float32).
    """

    def __init__(
        self,
        model,
        image,
        axes: str,
        *,
        planes: Sequence[dict] | None = None,
        plane: dict | None = None,
        tile_shape: Sequence[int] | None = None,
        device: str | None = None,
        options: dict | None = None,
        stack_labels=None,
        probabilities: bool = False,
        name: str = "image",
    ):
        self.model = model
        self.image = image
        full_axes = ax.resolve_axes(image.shape, axes, model.in_channels, name)
        self.plane, self.plane_index, self.stack_axes = plane, None, ax.spatial_axes(full_axes)
        if plane is not None:
            self.plane_index = ax.image_index(full_axes, plane, slice(None), slice(None))
            self.axes = "".join(a for a in full_axes if a in "CYX")
            shape = tuple(n for n, a in zip(image.shape, full_axes) if a in "CYX")
        else:
            self.axes, shape = full_axes, tuple(image.shape)
        self.planes = list(planes) if planes is not None else list(ax.iter_planes(shape, self.axes))
        self.tile_shape = tile_shape
        self.device = device
        self.options = dict(options or {})
        self.stack_labels = stack_labels
        self.probabilities = bool(probabilities)
        self.name = name
        self._cancel = threading.Event()

    def cancel(self) -> None:
        """Stop after the current batch of tiles; finished planes are kept."""
        self._cancel.set()

    def run(self) -> Generator[Progress, None, PredictionResult]:
        # A local reference: the widget may drop ``self.model`` (its registry was emptied) while this runs.
        model = self.model
        instances = model.task == "instances"
        image = self.image if self.plane_index is None else self.image[self.plane_index]
        labels = allocate_output(model, image, axes=self.axes, output="labels")
        probs = allocate_output(model, image, axes=self.axes, output="probabilities") if self.probabilities else None
        foreground = None
        if instances:  # the classes after the background: the foreground, or a three-class model's interior, border
            kept_classes = 1 if model.num_classes == 2 else slice(1, None)
            if probs is not None:
                foreground = probs[kept_classes]
            else:
                extra = () if model.num_classes == 2 else (model.num_classes - 1,)
                foreground = np.zeros((*extra, *labels.shape), np.float32)
        kept = "".join(a for a in self.axes if a in "CYX")
        result = PredictionResult(
            labels, probs, [], len(self.planes), foreground=foreground, options=self.options, classes=model.num_classes
        )
        n = len(self.planes)
        for i, plane in enumerate(self.planes):
            image_plane = image[ax.image_index(self.axes, plane, slice(None), slice(None))]
            out_index = ax.output_index(self.axes, plane, slice(None), slice(None))
            name = f"{self.name} (plane {plane})" if plane else self.name
            kwargs = {"axes": kept, "tile_shape": self.tile_shape, "device": self.device, "name": name}
            if probs is not None:
                gen = iter_predict(model, image_plane, out=probs[(slice(None), *out_index)], **kwargs)
            elif instances:
                gen = iter_predict(
                    model, image_plane, out=_ForegroundOut(foreground, out_index, model.num_classes), **kwargs
                )
            else:
                gen = iter_segment(model, image_plane, out=labels[out_index], **kwargs)
            for event in gen:
                fraction = event.done / max(1, event.total) if event.stage == "predict" else 1.0
                yield Progress(int(1000 * (i + fraction) / n), 1000, "predict", {"plane": i, "planes": n})
                if self._cancel.is_set():
                    gen.close()
                    # The unfinished plane holds some tiles only: clear it.
                    labels[out_index] = 0
                    if probs is not None:
                        probs[(slice(None), *out_index)] = 0
                    if foreground is not None:
                        foreground[(..., *out_index)] = 0
                    result.cancelled = True
                    break
            if result.cancelled:
                break
            if probs is not None and not instances:
                labels[out_index] = probs[(slice(None), *out_index)].argmax(axis=0)
            result.planes_done.append(plane)
        if instances:
            yield Progress(1000, 1000, "label", {"plane": n - 1, "planes": n})
            if self.plane is not None and self.stack_labels is not None:
                result.offset = largest_id_outside(self.stack_labels, self.stack_axes, self.plane)
            spatial = ax.spatial_axes(self.axes)
            instances_from_foreground(
                foreground,
                axes=spatial,
                offset=result.offset,
                out=labels,
                num_classes=model.num_classes,
                **self.options,
            )
        result.max_label = int(labels.max()) if labels.size else 0
        return result
