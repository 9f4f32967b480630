"""The work behind the Train dock, free of Qt (the Segment dock's job is in ``_predict_job``).

Each job is a generator (``run``) for a napari thread worker plus a thread-safe ``stop``/``cancel``; the widgets
own one job per run and only forward its events to the screen. A console script can drive the same jobs with
:func:`napari_seamless_unet.core.progress.run`.
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.predict import allocate_output, iter_segment
from ..core.progress import Progress


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
    init : UNet, str or path, optional
        The model to start from (``core.train.train``'s ``init``); ``init_name`` says which, for the outcome text.
    regions : list of (image, labels), optional
        Corrected regions (:func:`~napari_seamless_unet.core.regions.region_pair`) trained on besides the layers'
        planes; their labels are ``config.ignore_label`` outside the region.
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
        init=None,
        init_name: str | None = None,
        regions: Sequence[tuple] = (),
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
        self.init = init
        self.init_name = init_name
        self.regions = list(regions)
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
        if self.regions:
            names = self.names if self.names is not None else [f"pair {i + 1}" for i in range(len(self.images))]
            self.names = [*names, *(f"corrected region {i + 1}" for i in range(len(self.regions)))]
            self.images = [*self.images, *(image for image, _ in self.regions)]
            self.labels = [*self.labels, *(labels for _, labels in self.regions)]
            self.summary = ", ".join(filter(None, [self.summary, f"{len(self.regions)} corrected region(s)"]))
        if self.preview_image is not None and self.preview_index is not None:
            self.preview_image = np.asarray(self.preview_image[self.preview_index])
            self.preview_index = None
        return True

    def run(self) -> Generator[Progress | Preview, None, object]:
        """Generator for a thread worker: yields progress and previews, returns the ``TrainResult``.

        Returns None when stopped before training began (while reading the layers).
        """
        from ..core.train import iter_train

        reading = self.plan is not None or bool(self.regions)
        if not self._read():
            return None
        if reading:
            info = {"summary": self.summary, "dimensions": dimensions_text(self.config)}
            yield Progress(0, int(self.config.steps), "read", info)
        gen = iter_train(
            self.images,
            self.labels,
            config=self.config,
            should_stop=self._stop.is_set,
            names=self.names,
            init=self.init,
        )
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


def training_outcome(history: dict, config, path: str | os.PathLike | None, init_name: str | None = None) -> str:
    """What the user is told when training ends: why it ended, what it started from (``init_name``; nothing
    said for random weights), and which file holds which model.

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
    message += f" Started from {init_name}." if init_name else ""
    settings = settings_text(history.get("settings"), config)
    if not path:
        return message + " Not saved: no file name given (the model is kept for this session)." + settings
    path = Path(path)
    what = f"weights of step {last}" if reason == "diverged" else "last step"
    files = f"Saved {path.name} ({what})"
    best, best_step = best_path(path), history.get("best_step")
    if best_step is not None and best.exists():
        files += f" and {best.name} (best validation score, step {best_step})"
    return f"{message} {files} in {path.parent}.{settings}"


def dimensions_text(config) -> str:
    """'2D network' ('2D network, pixels 0.5 x 0.5' with a pixel size), '3D network, voxels 3 x 1 x 1' or '3D network,
    isotropic voxels', from a TrainConfig."""
    ndim, spacing = int(getattr(config, "ndim", 2) or 2), getattr(config, "voxel_size", None)
    if ndim != 3:
        return "2D network" + (f", pixels {' x '.join(f'{v:g}' for v in spacing)}" if spacing else "")
    return "3D network, " + (f"voxels {' x '.join(f'{v:g}' for v in spacing)}" if spacing else "isotropic voxels")


def settings_text(settings: dict | None, config=None) -> str:
    """' Network: 16 channels, depth 2, tiles of 104 px, batch 1, learning rate 0.003 (chosen for cpu).'

    A 3D network says so first: ' Network: 3D, voxels 3 x 1 x 1, 16 channels, ...'.
    """
    if not settings or "base_channels" not in settings:
        return ""
    chosen = " (chosen for " + str(settings.get("device", "the device")) + ")" if settings.get("automatic") else ""
    dims = dimensions_text(config).replace(" network", "") + ", " if getattr(config, "ndim", 2) == 3 else ""
    tile = settings["tile_size"]
    tile = " x ".join(map(str, tile)) if isinstance(tile, (list, tuple)) else tile
    return (
        f" Network: {dims}{settings['base_channels']} channels, depth {settings['depth']}"
        f"{', batch norm' if settings.get('batch_norm') else ''}, tiles of "
        f"{tile} px, batch {settings['batch_size']}"
        f"{', ' + str(settings['members']) + ' members' if settings.get('members', 1) > 1 else ''}"
        f", learning rate {settings['learning_rate']:g}"
        f"{', ' + settings['precision'] if settings.get('precision', 'fp32') != 'fp32' else ''}{chosen}."
    )
