"""The training loop: :func:`iter_train` (a generator of progress events) and :func:`train` (for scripts).

A run goes through three phases, each in one place: :func:`.prepare.prepare` checks every input and turns it
into planes with weight maps (nothing slow happens before all checks pass); :class:`_Session` sets up the
network, precision, optimizer, random state and history (from a checkpoint when resuming, from the model of
``init`` when fine-tuning: :mod:`.lineage`); the loop in
:func:`iter_train` then takes steps, validates, keeps the best model and writes checkpoints.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Generator, Sequence
from typing import Any, NamedTuple

import torch

from ..augment import PlaneStore, sample_batch
from ..augment3d import VolumeStore, sample_batch_3d
from ..devices import cudnn_autotune
from ..model import UNet
from ..model_io import save_model
from ..progress import Progress, ProgressLike, run
from .checkpoint import best_path, read_resume, restore, training_state
from .config import TrainConfig, check_config
from .history import Clock, new_history, record_step, record_validation
from .lineage import lineage_of, parent_entry, resolve_init
from .loss import weighted_loss
from .network import Precision, RandomStreams, build_model, make_optimizer
from .prepare import RunData, prepare
from .schedule import learning_rate_factor, stop_step
from .validate import validate

# Automatic validation (val_every=None): validating whole held-out strips every 50 steps took 44% of a 60 s
# ISBI run of a small network (cProfile); now it takes about this share of the time, with a floor in steps
# (every training step counts in budgets of a minute or less).
VALIDATION_SHARE = 0.05
FIRST_VALIDATION = 50
MIN_STEPS_BETWEEN_VALIDATIONS = 25


class TrainResult(NamedTuple):
    """What :func:`train` returns (and :func:`iter_train` returns when exhausted).

    Attributes
    ----------
    model : UNet
        The trained network, in eval mode, on the training device; ``model.metadata`` holds
        ``"train_config"`` (:meth:`TrainConfig.to_dict`) and ``"history"``.
    history : dict
        Per step ``step`` and ``loss``; per validation ``val_step``, ``val_loss``, ``val_iou``,
        ``val_iou_per_class`` and (instances) ``val_ap50``; ``best_step`` and ``best_score``; ``stopped``
        (and ``diverged``) when training ended early; the run's ``device``, ``tile_size``, ``output_size``,
        ``learning_rate``, ``train_planes``, ``val_planes`` and timings.
    """

    model: UNet
    history: dict

    @property
    def settings(self) -> dict[str, Any]:
        """The settings the run used, those the config left open chosen for the device (``"automatic"``)."""
        return self.history.get("settings") or {}


class _Session:
    """The live state of one run, and what the loop does with it: a step, a validation, a save."""

    def __init__(self, data: RunData, payload: dict | None):
        config = data.config
        self.config, self.data, self.device = config, data, data.device
        self.lineage = lineage_of(payload)
        self.randomness = RandomStreams(config.seed, self.device)
        with self.randomness.active():  # the initial weights are the run's first random numbers
            model = build_model(config, payload, data.in_channels, data.num_classes, data.normalization)
        self.precision = Precision.choose(self.device, config.precision, int(config.ndim))
        self.model = self.precision.place(model, self.device)
        self.optimizer, learning_rate = make_optimizer(self.model, config)
        self.parameters = list(self.model.parameters())  # walking the module tree each step cost 0.5 ms (16/2)

        self.history = new_history()
        self.step, planned = 0, None
        state = (payload or {}).get("training_state")
        if state:
            self.step, planned = restore(state, self.optimizer, self.history, self.randomness)
        self.first_step = self.step
        self.stop_at = stop_step(config, self.step, planned, resumed=bool(state))
        elapsed_before = float(self.history.get("elapsed_seconds") or 0.0)
        self.history["stopped"] = False
        self.history.pop("diverged", None)
        self.history.update(
            device=str(self.device),
            tile_size=data.tile,
            output_size=self.model.output_shape(data.tile_shape)[-1],
            tile_shape=list(data.tile_shape),
            learning_rate=learning_rate,
            train_planes=len(data.planes),
            val_planes=len(data.val_planes),
            stop_reason=None,
            settings=data.settings,
        )
        self.base_lr = learning_rate
        samples = [(p.image, p.target, p.weight) for p in data.planes]
        self.store = VolumeStore(samples, self.device) if config.ndim == 3 else PlaneStore(samples, self.device)
        self.augmentation = config.augmentation
        self.clock = Clock(elapsed_before)
        self._last_validation = (self.step, time.perf_counter(), 0.0)  # step, when it ended, seconds it took

    def done(self) -> bool:
        return self.stop_at is not None and self.step >= self.stop_at

    def total_estimate(self) -> int:
        """The step training will end at: the step limit, or where the time budget will run out at this speed."""
        budget = self.config.time_budget
        limit = self.stop_at
        if budget is not None and self.step > self.first_step:
            rate = (self.step - self.first_step) / max(self.clock.seconds(), 1e-9)
            by_time = self.step + max(0, round(rate * (budget - self.clock.seconds())))
            limit = by_time if limit is None else min(limit, by_time)
        return self.step if limit is None else max(self.step, limit)

    def draw_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The next augmented batch ``(image, target, weight)`` on the device, in the network's memory layout."""
        config = self.config
        if config.ndim == 3:
            spacing = config.voxel_size or (1.0, 1.0, 1.0)
            image, target, weight = sample_batch_3d(
                self.store,
                self.data.tile_shape,
                int(config.batch_size),
                self.augmentation,
                self.randomness.augment,
                spacing,
            )
        else:
            image, target, weight = sample_batch(
                self.store, self.data.tile, int(config.batch_size), self.augmentation, self.randomness.augment
            )
        if self.precision.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        return image, target, weight

    def train_step(self) -> float | None:
        """One optimisation step; returns its loss, or None (with a warning) if the loss or a gradient was not
        finite, in which case the weights are left as the last finite step made them."""
        model = self.model
        t0 = time.perf_counter()
        image, target, weight = self.draw_batch()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # so that the data time is measured, not queued
        t1 = time.perf_counter()
        with self.randomness.active(), cudnn_autotune(self.device):
            with self.precision.autocast(self.device):
                member_logits = model.member_logits(image)
            # each member learns on its own loss (an ensemble of independent networks, not one wider network)
            loss = sum(weighted_loss(logits, target, weight) for logits in member_logits) / len(member_logits)
            if not torch.isfinite(loss.detach()):
                return self._diverged(f"loss {float(loss.detach())}")
            for parameter in self.parameters:  # optimizer.zero_grad's wrappers cost 0.35 ms a step (16/2)
                parameter.grad = None
            self._set_learning_rate()
            if not self.precision.backward_and_step(loss, self.optimizer, self.parameters):
                return self._diverged("a gradient was not finite")
        loss_value = float(loss.detach())
        self.clock.add_step(t0, t1, time.perf_counter())
        self.step += 1
        record_step(self.history, self.step, loss_value)
        return loss_value

    def run_fraction(self) -> float:
        """How far this step is through the run: by steps, or by time when a time budget ends it sooner."""
        fractions = []
        if self.stop_at is not None:
            fractions.append((self.step + 1) / max(1, self.stop_at))
        if self.config.time_budget is not None:
            fractions.append(self.clock.seconds() / self.config.time_budget)
        return min(1.0, max(fractions))

    def _set_learning_rate(self) -> None:
        lr = self.base_lr * learning_rate_factor(self.run_fraction(), self.config.lr_schedule, self.config.warmup)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _diverged(self, what: str) -> None:
        # Stopped before the update, so the weights kept (and saved) are those of the last finite step.
        warnings.warn(
            f"training diverged at step {self.step + 1} ({what}); stopped and kept the weights of step {self.step}. "
            f"Lower the learning rate (now {self.history['learning_rate']:g}) and train again.",
            stacklevel=4,  # the caller driving the generator
        )
        self.optimizer.zero_grad(set_to_none=True)
        self.history["stopped"] = self.history["diverged"] = True
        self.history["stop_reason"] = "diverged"
        return None

    def validation_due(self) -> bool:
        """Whether to validate after this step: every ``val_every`` steps, or (automatic) at step
        ``FIRST_VALIDATION`` and then whenever training since the last validation took ``1 / VALIDATION_SHARE - 1``
        times as long as that validation did, so that validating costs about ``VALIDATION_SHARE`` of the run."""
        if self.config.val_every is not None:
            return self.step % self.config.val_every == 0
        step, ended, seconds = self._last_validation
        if seconds == 0.0:
            return self.step - self.first_step >= FIRST_VALIDATION
        trained = time.perf_counter() - ended
        return self.step - step >= MIN_STEPS_BETWEEN_VALIDATIONS and trained >= seconds * (1 / VALIDATION_SHARE - 1)

    def validate_and_keep_best(self) -> dict[str, Any]:
        """Score the validation planes; a new best model goes to ``best_path(config.save_path)``."""
        started = time.perf_counter()
        val = validate(self.model, self.data.val_planes, self.device)
        ended = time.perf_counter()
        self._last_validation = (self.step, ended, max(ended - started, 1e-6))
        if record_validation(self.history, self.step, val, self.model.task) and self.config.save_path:
            self.save(best_path(self.config.save_path), with_state=False)
        return val

    def save(self, path, with_state: bool) -> None:
        self._stamp_metadata()
        state = None
        if with_state:
            state = training_state(self.optimizer, self.step, self.stop_at, self.history, self.randomness, self.config)
        save_model(self.model, path, training_state=state)

    def finish(self, reason: str) -> TrainResult:
        """Record why training ended, validate a last time if the last step was not validated, put the model in
        eval mode with its metadata, and write the final checkpoint (when there is a ``save_path``)."""
        history = self.history
        history["stop_reason"] = history.get("stop_reason") or reason
        history["stopped"] = history["stop_reason"] in ("stopped", "diverged")
        validated = history["val_step"] and history["val_step"][-1] == self.step
        if self.step > self.first_step and not validated:
            self.validate_and_keep_best()
        self.model.eval()
        self._stamp_metadata()
        if self.config.save_path:
            self.save(self.config.save_path, with_state=True)
        return TrainResult(self.model, history)

    def _stamp_metadata(self) -> None:
        self.clock.stamp(self.history)
        self.model.metadata = {
            "train_config": self.config.to_dict(),
            "history": self.history,
            "training_data": self.data.summary,
            "lineage": self.lineage,
        }


def iter_train(
    images,
    labels,
    *,
    config: TrainConfig | None = None,
    validation: tuple[Sequence, Sequence] | None = None,
    should_stop: Callable[[], bool] | None = None,
    names: Sequence[str] | None = None,
    init=None,
) -> Generator[Progress, None, TrainResult]:
    """Generator form of :func:`train`, for event loops (napari's thread workers) and custom drivers.

    Parameters
    ----------
    images, labels, config, validation, should_stop, names, init
        As for :func:`train`.

    Yields
    ------
    Progress
        ``Progress(step, steps, "train", info)`` after every step. ``info`` holds ``"step"``, ``"loss"`` and
        ``"model"`` (the live network: copy it before changing its mode or device, e.g. for a preview), plus
        ``"val"`` (loss, iou, iou_per_class, ap50, score) after a validation.

    Returns
    -------
    TrainResult
        As :func:`train` (the generator's ``StopIteration.value``).

    Raises
    ------
    UNetInputError
        On the first ``next()``, for unusable inputs, before any training work.

    Notes
    -----
    Closing the generator (or ``should_stop()`` becoming true, or a KeyboardInterrupt) stops training after
    a last validation, saving the current weights to ``config.save_path``; ``history["stopped"]`` is then True.
    ``history["stop_reason"]`` says why training ended: ``"steps"``, ``"time_budget"``, ``"stopped"`` (by the
    caller) or ``"diverged"`` (a non-finite loss or gradient; the weights are those of the last finite step).
    """
    config = TrainConfig() if config is None else config
    check_config(config)
    # Everything is validated before any work: the resume file or the model to start from, then all pairs, then
    # the classes.
    if init is not None:
        payload, config = resolve_init(init, config)
        check_config(config)
    else:
        payload = read_resume(config)
        if payload and not payload.get("training_state"):  # a model file without training state: fine-tuned
            payload["parent"] = parent_entry(payload["state_dict"], payload["metadata"], str(config.resume_from))
    session = _Session(prepare(images, labels, config, validation, names, payload), payload)
    config = session.config  # resolved: no field left to the defaults

    session.model.train()
    try:
        while not session.done():
            if session.clock.out_of_time(config.time_budget):
                return session.finish("time_budget")
            if should_stop is not None and should_stop():
                return session.finish("stopped")
            loss = session.train_step()
            if loss is None:
                return session.finish("diverged")
            step = session.step
            info: dict[str, Any] = {
                "step": step,
                "loss": loss,
                "model": session.model,
                "elapsed_seconds": session.clock.seconds(),
                "time_budget": config.time_budget,
            }
            last = session.done() or session.clock.out_of_time(config.time_budget)
            if last or session.validation_due():
                info["val"] = session.validate_and_keep_best()
            if config.save_path and step % config.checkpoint_every == 0 and not last:
                session.save(config.save_path, with_state=True)
            yield Progress(step, session.total_estimate(), "train", info)
    except GeneratorExit:
        session.finish("stopped")
        return None
    except KeyboardInterrupt:
        return session.finish("stopped")
    return session.finish("time_budget" if session.clock.out_of_time(config.time_budget) else "steps")


def train(
    images,
    labels,
    *,
    config: TrainConfig | None = None,
    validation: tuple[Sequence, Sequence] | None = None,
    progress: ProgressLike | None = None,
    should_stop: Callable[[], bool] | None = None,
    names: Sequence[str] | None = None,
    init=None,
) -> TrainResult:
    """Train a U-Net on images and their labels.

    Parameters
    ----------
    images : array or list of arrays
        2D images, stacks or multi-channel images (axes per ``config.axes``, else inferred); every 2D plane is a
        training sample.
    labels : array or list of arrays
        Label images of the same spatial shapes (see :class:`TrainConfig` for what the values mean).
    config : TrainConfig, optional
        Task, architecture, schedule, augmentation, files.
    validation : (images, labels), optional
        Held-out data; default: ``config.validation_fraction`` of the training planes (the only plane when
        there is one).
    progress : callable or tqdm-like, optional
        Receives steps done / total.
    should_stop : callable, optional
        Polled before each step; when true, training stops, saves and returns (``history["stopped"] = True``).
    names : sequence of str, optional
        A name per training image (e.g. layer names), used in error messages instead of the index.
    init : UNet, str or path, optional
        Fine-tune a model instead of starting from random weights: a network, a model file, or a starter model's
        name (``"nuclei"``, ``"em-membranes"``: :func:`~napari_seamless_unet.core.starters.starter_models`). Its
        architecture, input channels, classes, task and normalisation are kept (config fields left at their
        defaults follow the model; contradicting ones are an error); the optimizer and the learning-rate
        schedule are new, over this run's ``steps`` or ``time_budget``. The model given is not changed.

    Returns
    -------
    TrainResult
        ``(model, history)``; the model's ``.metadata`` holds ``"train_config"``, ``"history"``,
        ``"training_data"`` (a summary of this run's data: planes, shapes, annotated pixels, SHA-256) and
        ``"lineage"``: the models it descends from, oldest first (name, SHA-256 of the weights, creation time,
        steps, training data), empty for a model trained from random weights.

    Raises
    ------
    UNetInputError
        For unusable inputs, before any training starts; the message names the pair and the fix.
    """
    # should_stop goes to the trainer, not to run(): stopping is a normal end of training that returns the model.
    gen = iter_train(
        images, labels, config=config, validation=validation, should_stop=should_stop, names=names, init=init
    )
    return run(gen, progress)
