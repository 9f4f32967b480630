"""Training the original U-Net: weighted cross-entropy on augmented tiles, validation, checkpoints, resuming.

:func:`train` runs a training for scripts; :func:`iter_train` is the same as a generator that yields a
:class:`~napari_seamless_unet.core.progress.Progress` event per step and returns a :class:`TrainResult`. All
inputs are checked before any work starts, so a mistake in the tenth label image is reported at once, not after
an hour of training.

The modules, in the order a run uses them:

- :mod:`.config`: :class:`TrainConfig`, everything that defines a run, and the check of its values;
- :mod:`.checkpoint`: reading a checkpoint to resume from, what a checkpoint holds, :func:`best_path`;
- :mod:`.inputs`: the checks of the image/label pairs;
- :mod:`.data`: planes with class targets, annotation masks and weight maps;
- :mod:`.defaults`: what the config leaves open, chosen for the device and the budget;
- :mod:`.split`: the validation strips held out when none are given;
- :mod:`.network`: random state, network, precision and optimizer;
- :mod:`.loss`: :func:`weighted_loss`;
- :mod:`.validate`: validation through the prediction code;
- :mod:`.history`: the history dict and the timings;
- :mod:`.loop`: :func:`iter_train` and :func:`train`, which put it all together.
"""

from __future__ import annotations

from .checkpoint import best_path
from .config import DEFAULT_LEARNING_RATE, DEFAULT_STEPS, OPTIMIZERS, SGD_MOMENTUM, UNLABELLED, TrainConfig
from .defaults import resolve as resolve_defaults
from .loop import TrainResult, iter_train, train
from .loss import weighted_loss
from .schedule import learning_rate_factor

__all__ = [
    "DEFAULT_LEARNING_RATE",
    "DEFAULT_STEPS",
    "OPTIMIZERS",
    "SGD_MOMENTUM",
    "UNLABELLED",
    "TrainConfig",
    "TrainResult",
    "best_path",
    "iter_train",
    "learning_rate_factor",
    "resolve_defaults",
    "train",
    "weighted_loss",
]
