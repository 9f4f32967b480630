"""What defines a training run: :class:`TrainConfig`, its defaults and the check of its values.

The config is stored in every model file as ``metadata["train_config"]`` (:meth:`TrainConfig.to_dict`) and read
back with :meth:`TrainConfig.from_dict`. Its augmentation settings are one nested
:class:`~napari_seamless_unet.core.augment.Augmentation` (where their defaults live); the constructor also takes
them as flat keywords (``TrainConfig(elastic_std=5)``), and reading them flat (``config.elastic_std``) still works
with a DeprecationWarning. Both are added to the dataclass by :func:`_flat_augmentation`.
"""

from __future__ import annotations

import functools
import inspect
import math
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
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
LR_SCHEDULES = ("cosine", "constant")
DEFAULT_STEPS = 1000  # when neither steps nor a time budget is given
SGD_MOMENTUM = 0.99  # paper: "a high momentum (0.99)"


AUGMENTATION_FIELDS = tuple(f.name for f in fields(Augmentation))


def _as_augmentation(value: Augmentation | Mapping[str, Any]) -> Augmentation:
    if isinstance(value, Augmentation):
        return value
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(AUGMENTATION_FIELDS))
        if unknown:
            raise UNetInputError(f"unknown augmentation setting(s) {unknown}; the settings are {AUGMENTATION_FIELDS}.")
        return Augmentation(**value)
    raise UNetInputError(
        f"augmentation must be an Augmentation (napari_seamless_unet.core.augment) or a dict of its settings, "
        f"got {type(value).__name__}."
    )


def _with_flat(augmentation: Augmentation | Mapping[str, Any] | None, flat: dict[str, Any]) -> Augmentation:
    """``augmentation`` with the flat keywords applied; they must agree with it when both are given."""
    if augmentation is None:
        return Augmentation(**flat)
    augmentation = _as_augmentation(augmentation)
    clash = {name: value for name, value in flat.items() if getattr(augmentation, name) != value}
    if clash:
        name, value = next(iter(clash.items()))
        raise UNetInputError(
            f"TrainConfig got augmentation with {name}={getattr(augmentation, name)!r} and also {name}={value!r}; "
            f"set each augmentation value once: either augmentation=dataclasses.replace(augmentation, "
            f"{name}={value!r}), or flat keywords ({name}={value!r}) without augmentation."
        )
    return augmentation


def _flat_augmentation(cls: type) -> type:
    """Let ``cls(...)`` take Augmentation's fields as flat keywords, and keep ``cls.<field>`` as deprecated aliases.

    The dataclass ``__init__`` gets a thin wrapper that moves the flat keywords into ``augmentation``; its
    signature (``help``, ``inspect.signature``) lists them after the fields, keyword only.
    """
    dataclass_init = cls.__init__

    @functools.wraps(dataclass_init)
    def __init__(self, *args, **kwargs):
        given = {name: kwargs.pop(name) for name in AUGMENTATION_FIELDS if name in kwargs}
        flat = {name: value for name, value in given.items() if value is not None}
        if flat:
            kwargs["augmentation"] = _with_flat(kwargs.get("augmentation"), flat)
        dataclass_init(self, *args, **kwargs)

    signature = inspect.signature(dataclass_init)
    types = {f.name: f.type for f in fields(Augmentation)}
    flat_parameters = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=f"{types[name]} | None")
        for name in AUGMENTATION_FIELDS
    ]
    __init__.__signature__ = signature.replace(parameters=[*signature.parameters.values(), *flat_parameters])
    cls.__init__ = __init__
    for name in AUGMENTATION_FIELDS:
        setattr(cls, name, _deprecated_alias(name))
    return cls


def _deprecated_alias(name: str) -> property:
    def warn(action: str) -> None:
        message = (
            f"{action} TrainConfig.{name} is deprecated and will be removed in version 0.3; "
            f"use config.augmentation.{name}"
        )
        if action == "setting":
            message += f" (config.augmentation = dataclasses.replace(config.augmentation, {name}=...))"
        warnings.warn(message + ".", DeprecationWarning, stacklevel=3)

    def get(self) -> Any:
        warn("reading")
        return getattr(self.augmentation, name)

    def set_(self, value: Any) -> None:
        warn("setting")
        self.augmentation = replace(self.augmentation, **{name: value})

    return property(get, set_, doc=f"Deprecated: use ``augmentation.{name}``.")


@_flat_augmentation
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
    instance_classes : {2, 3}
        Instances only: what the network learns. 2 (the paper's): foreground and background, with a background
        gap cut between touching objects and the weight map's border term on it. 3: background, object
        interior and object border, the border being the one-pixel band inside each object along another
        object or the background (:func:`~napari_seamless_unet.core.weights.interior_border_classes`); the
        three classes are balanced and the border term goes to background and border pixels
        (:func:`~napari_seamless_unet.core.weights.three_class_weight_map`). Segmenting with such a model grows
        each object from its interior and gives its border back
        (:func:`~napari_seamless_unet.core.postprocess.label_three_classes`).
    preset : {"tiny", "small", "medium", "paper"}, optional
        A named network size; ``"paper"`` is the paper's setting (64 channels, depth 4, dropout 0.5, 572-pixel
        tiles, one a batch). Explicit ``base_channels``/``depth``/... still win.
    base_channels : int, optional
        Feature maps of the first level, doubled at each level down (paper: 64). None: chosen for the device
        (:mod:`~napari_seamless_unet.core.train.defaults`): 16 on CPU and MPS, 64 on CUDA.
    depth : int, optional
        Number of 2x2 poolings (paper: 4). None: 4, or less where the smallest image cannot hold its context.
    dropout : float, optional
        Dropout probability at the end of the contracting path (paper: 0.5). None: 0 (0.5 for the paper preset).
    batch_norm : bool, optional
        Batch normalisation after each convolution (not in the paper). None: chosen with the network for the
        device (off for the paper preset).
    tile_size : int, optional
        Side of the training input tile (a valid size for ``depth``; in 3D its Y and X side); None picks one for
        the device.
    ndim : {2, 3}
        2: a 2D network trained on every plane (the paper). 3: a 3D network trained on 3D tiles of volumes
        (the images need a Z axis); its tiles span about the same physical extent along z as along y and x.
    voxel_size : sequence of float, optional
        Pixel size (Y, X) or voxel size (Z, Y, X) of the training images, recorded with the model. In 3D it
        shapes the network for anisotropic volumes (``UNet(voxel_size=...)``), the distances of the weight map
        and the elastic deformation. None: isotropic.
    batch_size : int, optional
        Tiles per step; None: 1 on CPU and MPS, what fits the memory on CUDA.
    members : int, optional
        Networks trained side by side from different random starts, each on its own loss over the same tiles,
        and predicting together (``UNet(members=...)``: their mean class probabilities). Each step costs that
        many networks' steps and each prediction that many networks' time. None: 1, or, for a semantic task whose
        network a CPU time budget chooses, 2 where the budget buys that network at least 10000 steps
        (:mod:`~napari_seamless_unet.core.train.defaults`, ``MEMBER_STEPS``): one network stops learning from
        the data long before such a budget ends.
    steps : int, optional
        Optimisation steps this call takes (on resume: steps *more*). None: until ``time_budget`` runs out when
        there is one, else ``DEFAULT_STEPS`` (1000); on resume, the rest of the interrupted run's plan, so that
        a resumed run ends exactly where the uninterrupted one would have.
    time_budget : float, optional
        Seconds this call may train; training stops after ``steps`` or ``time_budget``, whichever comes first.
    optimizer : {"adam", "sgd"}
        ``sgd`` uses momentum 0.99 like the paper.
    learning_rate : float, optional
        The peak learning rate. Default: 1e-3 for adam and for sgd.
    lr_schedule : {"cosine", "constant"}
        ``cosine``: a linear warm-up over the first ``warmup`` of the run, then a cosine decay to 2% at its end,
        the end being the step limit or the time budget, whichever applies (a time-based schedule when training
        is limited by time). ``constant``: the learning rate throughout.
    warmup : float
        Share of the run spent warming up (cosine schedule).
    weight_decay : float
        L2 penalty.
    w0, sigma : float
        Border term of the weight map (paper: 10, 5 pixels).
    balance_classes : bool
        Include the class-frequency term ``w_c`` of the weight map.
    augmentation : Augmentation or dict, optional
        Elastic deformation, flips, rotations and grey-value changes of the training tiles
        (:class:`~napari_seamless_unet.core.augment.Augmentation`, which documents each setting and its
        default); a dict of its fields is accepted too. Default: ``Augmentation()``, the paper's settings.
    validation_fraction : float
        Share of the training planes held out for validation when no ``validation`` data is given.
    val_every : int, optional
        Steps between validations (and at the end). Default None: automatic, first after 50 steps, then as
        often as keeps validation to about 5% of the training time (at least 25 steps apart).
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
        Autocast precision; ``auto`` = bf16 on CUDA (where supported); on a CPU with native bf16 (AVX512-BF16,
        AMX) bf16 for 3D networks, for a 2D network chosen by the time budget when its measured bf16 step is
        faster, and for any other 2D network whose training batch takes at least 3 GFLOP a forward pass (16
        channels of depth 4 on 316-pixel tiles, the paper network: 0.51-0.78 of the float32 step there); float32
        elsewhere. A resumed run keeps the precision it began with. "bf16" also on any CPU. The precision used is
        in ``TrainResult.settings``.
    axes : str, optional
        Axes of the training images (like :func:`~napari_seamless_unet.predict`); default inferred.
    normalization : dict
        Intensity normalisation, stored with the model.
    elastic_std, elastic_grid, flip, rotate90, rotation, brightness, contrast, gamma : optional, keyword only
        Shortcuts for the fields of ``augmentation`` with the same names: ``TrainConfig(elastic_std=5,
        flip=False)`` is ``TrainConfig(augmentation=Augmentation(elastic_std=5, flip=False))``. None (the
        default) leaves the field as ``augmentation`` has it. Given together with ``augmentation``, each must
        agree with it (else :class:`~napari_seamless_unet.UNetInputError`); so ``dataclasses.replace(config,
        flip=False)`` fails for a config that flips: replace ``augmentation`` instead.

    Notes
    -----
    ``config.elastic_std`` and the other flat names still read (and set) ``config.augmentation``'s fields, with a
    DeprecationWarning; they will be removed in version 0.3. Model files store the nested form; version 0.1
    stored the flat one, which :meth:`from_dict` still reads.
    """

    task: str = "instances"
    unlabelled: str = "background"
    ignore_label: int | None = None
    num_classes: int | None = None
    instance_classes: int = 2
    preset: str | None = None
    base_channels: int | None = None
    depth: int | None = None
    dropout: float | None = None
    batch_norm: bool | None = None
    tile_size: int | None = None
    ndim: int = 2
    voxel_size: tuple[float, ...] | None = None
    batch_size: int | None = None
    members: int | None = None
    steps: int | None = None
    time_budget: float | None = None
    optimizer: str = "adam"
    learning_rate: float | None = None
    lr_schedule: str = "cosine"
    warmup: float = 0.02
    weight_decay: float = 0.0
    w0: float = 10.0
    sigma: float = 5.0
    balance_classes: bool = True
    augmentation: Augmentation = field(default_factory=Augmentation)
    validation_fraction: float = 0.2
    val_every: int | None = None
    save_path: str | None = None
    checkpoint_every: int = 50
    resume_from: str | None = None
    seed: int | None = 0
    device: str | None = None
    precision: str = "auto"
    axes: str | None = None
    normalization: dict = field(default_factory=lambda: {"mode": "percentile", "low": 1.0, "high": 99.8})

    def __post_init__(self) -> None:
        self.augmentation = _as_augmentation(self.augmentation)
        if self.voxel_size is not None and not isinstance(self.voxel_size, str):
            self.voxel_size = tuple(float(v) for v in self.voxel_size)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (``augmentation`` nested) that :meth:`from_dict` turns back into this config."""
        out = asdict(self)
        for key in ("save_path", "resume_from"):
            if out[key] is not None:
                out[key] = str(out[key])
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a stored dict, nested (:meth:`to_dict`) or flat (version 0.1); unknown keys are ignored."""
        names = {f.name for f in fields(cls)}.union(AUGMENTATION_FIELDS)
        known = {k: v for k, v in values.items() if k in names}
        if isinstance(known.get("augmentation"), Mapping):
            known["augmentation"] = {k: v for k, v in known["augmentation"].items() if k in AUGMENTATION_FIELDS}
        return cls(**known)


def check_config(config: TrainConfig) -> None:
    """Raise :class:`UNetInputError` for a value that cannot work, naming the setting and what it accepts."""

    def bad(msg: str) -> None:
        raise UNetInputError(msg)

    if config.task not in TASKS:
        bad(f"task must be one of {TASKS}, got {config.task!r}.")
    if config.unlabelled not in UNLABELLED:
        bad(f"unlabelled must be one of {UNLABELLED}, got {config.unlabelled!r}.")
    for name in ("steps", "batch_size", "val_every", "checkpoint_every", "base_channels", "depth", "members"):
        value = getattr(config, name)
        if name in ("steps", "batch_size", "base_channels", "depth", "val_every", "members") and value is None:
            continue
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
    if config.lr_schedule not in LR_SCHEDULES:
        bad(f"lr_schedule must be one of {LR_SCHEDULES}, got {config.lr_schedule!r}.")
    if not 0.0 <= config.warmup < 1.0:
        bad(f"warmup must be a share of the run in [0, 1), got {config.warmup!r}.")
    if config.dropout is not None and not 0.0 <= config.dropout < 1.0:
        bad(f"dropout must be in [0, 1), got {config.dropout!r}.")
    if config.num_classes is not None and (config.task != "semantic" or config.num_classes < 2):
        bad("num_classes applies to task='semantic' only and must be >= 2 (instances: see instance_classes).")
    if config.instance_classes not in (2, 3) or isinstance(config.instance_classes, bool):
        bad(f"instance_classes must be 2 (foreground) or 3 (interior and border), got {config.instance_classes!r}.")
    if config.instance_classes != 2 and config.task != "instances":
        bad(f"instance_classes applies to task='instances' only, got task={config.task!r}.")
    if config.ndim not in (2, 3) or isinstance(config.ndim, bool):
        bad(f"ndim must be 2 (planes) or 3 (volumes), got {config.ndim!r}.")
    if config.voxel_size is not None:
        size = config.voxel_size
        if isinstance(size, str) or len(size) != config.ndim or not all(v > 0 and math.isfinite(v) for v in size):
            axes = "Z, Y, X" if config.ndim == 3 else "Y, X"
            bad(f"voxel_size must be {config.ndim} positive numbers ({axes}) for ndim={config.ndim}, got {size!r}.")
    if config.tile_size is not None and config.depth is not None:
        shapes.check_input_shape((int(config.tile_size),) * 2, int(config.depth), what="training tile")
    Normalization.from_any(config.normalization)
    if not isinstance(config.augmentation, Augmentation):
        bad(f"augmentation must be an Augmentation, got {type(config.augmentation).__name__}.")
