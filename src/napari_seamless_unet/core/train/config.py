"""What defines a training run: :class:`TrainConfig`, its defaults and the check of its values.

The config is stored in every model file as ``metadata["train_config"]`` (:meth:`TrainConfig.to_dict`) and read
back with :meth:`TrainConfig.from_dict`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from .. import shapes
from ..augment import Augmentation
from ..errors import UNetInputError
from ..model import TASKS
from ..normalization import Normalization

OPTIMIZERS = ("adam", "sgd")
UNLABELLED = ("background", "ignore")
# Chosen by measurement on ISBI 2012 and the synthetic discs (benchmarks/bench_train_isbi.py); the loss is a
# per-pixel mean, so these do not depend on the tile size.
DEFAULT_LEARNING_RATE = {"adam": 1e-3, "sgd": 1e-3}  # sgd at 1e-2 with momentum 0.99 diverged on ISBI
SGD_MOMENTUM = 0.99  # paper: "a high momentum (0.99)"


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in the model file as ``metadata["train_config"]``).

    Parameters
    ----------
    task : {"instances", "semantic"}
        ``instances``: label 0 is background and each positive id one object; the network learns
        foreground/background with the paper's weight map, and :func:`~napari_seamless_unet.segment` returns
        instance labels. ``semantic``: label value k is class k.
    unlabelled : {"background", "ignore"}
        What label 0 means. ``ignore`` is for sparse annotation (strokes): 0 is left out of the loss, label 1 is
        background (class 0) and label k >= 2 an object (instances) or class k - 1 (semantic).
    ignore_label : int, optional
        A further label value left out of the loss.
    num_classes : int, optional
        Semantic only; inferred from the labels when None.
    base_channels, depth, dropout
        Architecture (paper: 64, 4, 0.5).
    tile_size : int, optional
        Side of the training input tile (a valid size for ``depth``); None picks one for the device.
    batch_size : int
        Tiles per step.
    steps : int
        Optimisation steps.
    time_budget : float, optional
        Seconds; training stops after ``steps`` or ``time_budget``, whichever comes first.
    optimizer : {"adam", "sgd"}
        ``sgd`` uses momentum 0.99 like the paper.
    learning_rate : float, optional
        Default: 1e-3 for adam and for sgd.
    weight_decay : float
        L2 penalty.
    w0, sigma : float
        Border term of the weight map (paper: 10, 5 pixels).
    balance_classes : bool
        Include the class-frequency term ``w_c`` of the weight map.
    elastic_std, elastic_grid, flip, rotate90, rotation, brightness, contrast, gamma
        Augmentation (see :class:`~napari_seamless_unet.core.augment.Augmentation`).
    validation_fraction : float
        Share of the training planes held out for validation when no ``validation`` data is given.
    val_every : int
        Steps between validations (and at the end).
    save_path : str, optional
        Model file written every ``checkpoint_every`` steps and at the end; the best model by validation score
        goes beside it as ``<stem>.best.unet.pt``.
    checkpoint_every : int
        Steps between checkpoints.
    resume_from : str, optional
        A checkpoint to continue from (weights, optimizer state, step count, history, random state); a model
        file without training state is fine-tuned from step 0.
    seed : int, optional
        Same seed, same data, same device: same result (on CPU bit for bit).
    device : str, optional
        None or "auto" = CUDA, then MPS, then CPU.
    precision : {"auto", "fp32", "bf16", "fp16"}
        Autocast precision; ``auto`` = bf16 on CUDA (where supported), float32 elsewhere; "bf16" also on CPU.
    axes : str, optional
        Axes of the training images (like :func:`~napari_seamless_unet.predict`); default inferred.
    normalization : dict
        Intensity normalisation, stored with the model.
    """

    task: str = "instances"
    unlabelled: str = "background"
    ignore_label: int | None = None
    num_classes: int | None = None
    base_channels: int = 64
    depth: int = 4
    dropout: float = 0.5
    tile_size: int | None = None
    batch_size: int = 1
    steps: int = 1000
    time_budget: float | None = None
    optimizer: str = "adam"
    learning_rate: float | None = None
    weight_decay: float = 0.0
    w0: float = 10.0
    sigma: float = 5.0
    balance_classes: bool = True
    elastic_std: float = 10.0
    elastic_grid: int = 3
    flip: bool = True
    rotate90: bool = True
    rotation: float = 180.0
    brightness: float = 0.1
    contrast: float = 0.2
    gamma: float = 0.2
    validation_fraction: float = 0.2
    val_every: int = 50
    save_path: str | None = None
    checkpoint_every: int = 50
    resume_from: str | None = None
    seed: int | None = 0
    device: str | None = None
    precision: str = "auto"
    axes: str | None = None
    normalization: dict = field(default_factory=lambda: {"mode": "percentile", "low": 1.0, "high": 99.8})

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("save_path", "resume_from"):
            if out[key] is not None:
                out[key] = str(out[key])
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a stored dict, ignoring keys this version does not know."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    @property
    def augmentation(self) -> Augmentation:
        return Augmentation(
            elastic_std=self.elastic_std,
            elastic_grid=self.elastic_grid,
            flip=self.flip,
            rotate90=self.rotate90,
            rotation=self.rotation,
            brightness=self.brightness,
            contrast=self.contrast,
            gamma=self.gamma,
        )


def check_config(config: TrainConfig) -> None:
    """Raise :class:`UNetInputError` for a value that cannot work, naming the setting and what it accepts."""

    def bad(msg: str) -> None:
        raise UNetInputError(msg)

    if config.task not in TASKS:
        bad(f"task must be one of {TASKS}, got {config.task!r}.")
    if config.unlabelled not in UNLABELLED:
        bad(f"unlabelled must be one of {UNLABELLED}, got {config.unlabelled!r}.")
    for name in ("steps", "batch_size", "val_every", "checkpoint_every", "base_channels", "depth"):
        value = getattr(config, name)
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            bad(f"{name} must be a positive integer, got {value!r}; use e.g. {name}=1 or more.")
    if config.optimizer not in OPTIMIZERS:
        bad(f"optimizer must be one of {OPTIMIZERS}, got {config.optimizer!r}.")
    if config.learning_rate is not None and not (config.learning_rate > 0 and math.isfinite(config.learning_rate)):
        bad(f"learning_rate must be a positive number, got {config.learning_rate!r}; leave it None for the default.")
    if config.time_budget is not None and not config.time_budget > 0:
        bad(f"time_budget must be a positive number of seconds or None, got {config.time_budget!r}.")
    if not 0.0 <= config.validation_fraction < 1.0:
        bad(f"validation_fraction must be in [0, 1), got {config.validation_fraction!r}.")
    if config.w0 < 0 or config.sigma <= 0:
        bad(f"need w0 >= 0 and sigma > 0 for the weight map, got w0={config.w0}, sigma={config.sigma}.")
    if not 0.0 <= config.dropout < 1.0:
        bad(f"dropout must be in [0, 1), got {config.dropout!r}.")
    if config.num_classes is not None and (config.task != "semantic" or config.num_classes < 2):
        bad("num_classes applies to task='semantic' only and must be >= 2 (instances always use 2 classes).")
    if config.tile_size is not None:
        shapes.check_input_shape((int(config.tile_size),) * 2, int(config.depth), what="training tile")
    Normalization.from_any(config.normalization)
