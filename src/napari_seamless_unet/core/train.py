"""Training the original U-Net: weighted cross-entropy on augmented tiles, validation, checkpoints, resuming.

:func:`iter_train` is a generator that yields a :class:`~napari_seamless_unet.core.progress.Progress` event per
step and returns a :class:`TrainResult`; :func:`train` drives it for scripts. All inputs are checked before any
work starts, so a mistake in the tenth label image is reported at once, not after an hour of training.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable, Generator, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from . import axes as ax
from . import shapes
from .augment import Augmentation, PlaneStore, sample_batch
from .devices import autocast_dtype, resolve_device
from .errors import UNetInputError
from .metrics import average_precision, iou_per_class
from .model import TASKS, UNet, center_crop
from .model_io import read_model_file, save_model
from .normalization import Normalization, apply_statistics
from .postprocess import label_foreground
from .predict import iter_predict
from .progress import Progress, ProgressLike, run
from .weights import class_weights, instance_weight_map, separate_touching

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


class TrainResult(NamedTuple):
    """The trained network (in eval mode, ``.metadata`` filled in) and its training history."""

    model: UNet
    history: dict


@dataclass
class _Plane:
    image: np.ndarray  # (C, H, W) normalised float32
    raw: np.ndarray  # (C, H, W) as given, for validation through the prediction code
    target: np.ndarray  # (H, W) class ids (anything where not annotated)
    valid: np.ndarray  # (H, W) annotated pixels
    objects: np.ndarray | None  # (H, W) instance ids (instances task)
    weight: np.ndarray | None = None  # (H, W) loss weights, 0 where not annotated
    name: str = ""


# -- input checks --------------------------------------------------------------------------------------------------
def _check_config(config: TrainConfig) -> None:
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


def _as_list(data, what: str) -> list:
    if data is None:
        raise UNetInputError(f"no {what} given; pass a list of numpy arrays.")
    if hasattr(data, "shape") and hasattr(data, "dtype"):
        return [data]
    data = list(data)
    if not data:
        raise UNetInputError(f"{what} is an empty list; pass at least one image with its labels.")
    return data


def _infer_axes(image_shape: tuple, label_shape: tuple, axes: str | None, name: str) -> str:
    if axes is not None:
        axes = str(axes).upper().replace("S", "C")
        n_channels = image_shape[axes.index("C")] if "C" in axes and len(axes) == len(image_shape) else 1
        return ax.resolve_axes(image_shape, axes, n_channels, name)
    if image_shape == label_shape:
        return ax.default_axes(image_shape, 1)
    if len(image_shape) == len(label_shape) + 1 and 2 <= len(label_shape) <= 4:
        spatial = ax.default_axes(label_shape, 1)
        for k in (len(image_shape) - 1, len(image_shape) - 3):
            if image_shape[:k] + image_shape[k + 1 :] == label_shape:
                return spatial[:k] + "C" + spatial[k:]
    raise UNetInputError(
        f"{name} has shape {image_shape} but {name.replace('image', 'labels')} has shape {label_shape}; they must "
        f"cover the same pixels (labels have the image's shape without its channel axis). Check that image and "
        f"labels belong together, crop one to match, or pass axes=... (e.g. 'YXC' for RGB)."
    )


def _check_pair(image, labels, axes: str | None, index: int, config: TrainConfig, role: str, names=None):
    """Validate one image/labels pair; returns (image, labels, axes) as numpy arrays."""
    name = f"{role} image {index}"
    lname = f"{role} labels {index}"
    if names is not None:  # e.g. layer names from the viewer: more useful than an index
        name, lname = f"{role} image {names[index]!r}", f"{role} labels of {names[index]!r}"
    image = np.asarray(image)
    labels = np.asarray(labels)
    ax.check_image_dtype(image, name)
    if labels.dtype.kind not in "biuf":
        raise UNetInputError(
            f"{lname} has dtype {labels.dtype}, which is not a label image; labels must be integers "
            f"(0 = background, 1, 2, ... = objects or classes). Convert them, e.g. labels.astype('int32')."
        )
    axes = _infer_axes(image.shape, labels.shape, axes, name)
    spatial = tuple(n for n, a in zip(image.shape, axes, strict=True) if a != "C")
    if spatial != labels.shape:
        raise UNetInputError(
            f"{name} has shape {image.shape} (axes {axes!r}, spatial {spatial}) but {lname} has shape "
            f"{labels.shape}; they must cover the same pixels. Crop or resample one of them to match."
        )
    if image.dtype.kind == "f" and not np.all(np.isfinite(image)):
        raise UNetInputError(f"{name} contains NaN or Inf values; replace them first, e.g. numpy.nan_to_num(image).")
    if labels.dtype.kind == "f" and (not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels))):
        raise UNetInputError(
            f"{lname} has non-integer values (float labels such as 0.5 or NaN): labels must be whole numbers. "
            f"Use a label image, or round it: numpy.round(labels).astype('int32')."
        )
    if labels.size and labels.min() < 0:
        raise UNetInputError(
            f"{lname} has negative values (minimum {labels.min()}); labels must be 0 (background or unlabelled) "
            f"or positive ids. Shift or relabel them, e.g. skimage.segmentation.relabel_sequential."
        )
    labels = labels.astype(np.int64)
    shapes.check_context(labels.shape[-2:], int(config.depth), name)
    valid = _annotated(labels, config)
    if not valid.any():
        raise UNetInputError(
            f"{lname} has no annotated pixels (all {'0' if config.unlabelled == 'ignore' else 'ignored'}); "
            f"paint some labels first, or leave this image out."
        )
    if config.unlabelled == "background":
        values = np.unique(labels[valid])
        if values.size == 1:
            what = "empty: all 0, no objects" if values[0] == 0 else f"all {values[0]}: no background (0)"
            raise UNetInputError(
                f"{lname} is {what}. Training needs {'objects' if values[0] == 0 else 'background'} too: paint "
                f"them, or use unlabelled='ignore' for sparse annotation (1 = background, 2, 3, ... = objects)."
            )
    for p, plane in enumerate(ax.iter_planes(image.shape, axes)):
        block = image[ax.image_index(axes, plane, slice(None), slice(None))]
        if block.size and block.min() == block.max():
            where = f" plane {p}" if ax.plane_axes(axes) else ""
            raise UNetInputError(
                f"{name}{where} is constant (every pixel {block.flat[0]}); it carries no information to learn from. "
                f"Remove it or check that the right layer was chosen."
            )
    return image, labels, axes


def _annotated(labels: np.ndarray, config: TrainConfig) -> np.ndarray:
    valid = labels != 0 if config.unlabelled == "ignore" else np.ones(labels.shape, dtype=bool)
    if config.ignore_label is not None:
        valid &= labels != int(config.ignore_label)
    return valid


def _classes(labels: np.ndarray, config: TrainConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """Target class map and (instances) object ids from raw labels."""
    shift = 1 if config.unlabelled == "ignore" else 0
    valid = _annotated(labels, config)
    if config.task == "instances":
        objects = np.where(valid & (labels > shift), labels, 0)
        return (objects > 0).astype(np.int64), objects
    return np.where(valid, labels - shift, 0), None


def _check_pairs(images, labels, config: TrainConfig, role: str, in_channels: int | None, names=None):
    images, labels = _as_list(images, f"{role} images"), _as_list(labels, f"{role} labels")
    if names is not None and len(names) != len(images):
        raise UNetInputError(f"got {len(names)} names for {len(images)} {role} images; give one name per image.")
    if len(images) != len(labels):
        raise UNetInputError(
            f"got {len(images)} {role} images but {len(labels)} label images; pass one label image per image."
        )
    pairs = []
    for i, (image, lab) in enumerate(zip(images, labels, strict=True)):
        image, lab, axes = _check_pair(image, lab, config.axes, i, config, role, names)
        channels = image.shape[axes.index("C")] if "C" in axes else 1
        if in_channels is None:
            in_channels = channels
        elif channels != in_channels:
            label = f"{names[i]!r}" if names is not None else str(i)
            raise UNetInputError(
                f"{role} image {label} has {channels} channel(s) (shape {image.shape}, axes {axes!r}) but the network "
                f"takes {in_channels}; all images need the same channels as the first one (or the resumed model). "
                f"Convert them, or pass axes=... if the channel axis was guessed wrongly."
            )
        pairs.append((image, lab, axes))
    return pairs, in_channels


def _planes(pairs, config: TrainConfig, normalization: Normalization, role: str) -> list[_Plane]:
    out = []
    for i, (image, labels, axes) in enumerate(pairs):
        for p, plane in enumerate(ax.iter_planes(image.shape, axes)):
            # Per plane, exactly as prediction normalises (see Normalization.plane_statistics).
            offset, scale = normalization.plane_statistics(image, axes, plane)
            raw = ax.to_cyx(image[ax.image_index(axes, plane, slice(None), slice(None))], axes)
            lab = labels[ax.output_index(axes, plane, slice(None), slice(None))]
            target, objects = _classes(lab, config)
            out.append(
                _Plane(
                    image=apply_statistics(raw, offset, scale),
                    raw=raw,
                    target=target,
                    valid=_annotated(lab, config),
                    objects=objects,
                    name=f"{role} image {i}" + (f" plane {p}" if ax.plane_axes(axes) else ""),
                )
            )
    return out


def _check_classes(planes: list[_Plane], config: TrainConfig, num_classes: int | None) -> int:
    if config.task == "instances":
        fg = any((p.target[p.valid] == 1).any() for p in planes)
        bg = any((p.target[p.valid] == 0).any() for p in planes)
        if not (fg and bg):
            missing = "objects" if not fg else "background"
            hint = "label 2 or more" if config.unlabelled == "ignore" else "a positive label"
            bg_hint = "label 1" if config.unlabelled == "ignore" else "label 0"
            raise UNetInputError(
                f"the training labels contain no {missing}; annotate some {missing} "
                f"({hint if missing == 'objects' else bg_hint})."
            )
        return 2
    largest = max(int(p.target[p.valid].max()) for p in planes)
    present = set().union(*(np.unique(p.target[p.valid]).tolist() for p in planes))
    if len(present) < 2:
        raise UNetInputError(
            f"the training labels contain only class {present.pop()}; semantic training needs at least two classes "
            f"annotated."
        )
    if num_classes is None:
        num_classes = config.num_classes or max(2, largest + 1)
    if largest >= num_classes:
        raise UNetInputError(
            f"the labels contain class {largest} but the network has {num_classes} classes (0..{num_classes - 1}); "
            f"set num_classes={largest + 1} or relabel."
        )
    return num_classes


def _weights(plane: _Plane, config: TrainConfig, num_classes: int) -> np.ndarray:
    if config.task == "instances":
        objects = separate_touching(plane.objects)
        plane.target = (objects > 0).astype(np.int64)
        return instance_weight_map(objects, plane.valid, config.w0, config.sigma, config.balance_classes)
    if config.balance_classes:
        return class_weights(plane.target, plane.valid, num_classes)
    return plane.valid.astype(np.float32)


def auto_tile_size(depth: int, device: torch.device, plane_shapes: Sequence[tuple[int, int]]) -> int:
    """Training tile side: about 388 output pixels on a GPU (572 for the paper's network), 64 on a CPU."""
    target = 388 if device.type == "cuda" else 64
    largest = max(min(s) for s in plane_shapes)
    return shapes.input_size_for_output(max(4, min(target, largest)), depth)


# -- loss ----------------------------------------------------------------------------------------------------------
def weighted_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Pixel-wise softmax cross-entropy weighted by the map, on the network's output region.

    ``target`` and ``weight`` cover the input tile and are center-cropped to the output. The sum is divided by
    the number of pixels with non-zero weight, so unannotated pixels neither count nor dilute the loss.
    """
    size = logits.shape[-2:]
    target, weight = center_crop(target, size), center_crop(weight, size)
    pixel = F.cross_entropy(logits.float(), target, reduction="none")
    return (pixel * weight).sum() / (weight > 0).sum().clamp_min(1)


# -- checkpoints ---------------------------------------------------------------------------------------------------
def best_path(save_path: str | Path) -> Path:
    """``model.unet.pt`` -> ``model.best.unet.pt``."""
    path = Path(save_path)
    name = path.name
    stem = name[: -len(".unet.pt")] if name.endswith(".unet.pt") else path.stem
    return path.with_name(f"{stem}.best.unet.pt")


def _rng_state(generator: torch.Generator, device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "augment": generator.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], generator: torch.Generator, device: torch.device) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "augment" in state:
        generator.set_state(state["augment"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def _new_history() -> dict[str, Any]:
    return {
        "step": [],
        "loss": [],
        "val_step": [],
        "val_loss": [],
        "val_iou": [],
        "val_iou_per_class": [],
        "val_ap50": [],
        "stopped": False,
        "best_step": None,
        "best_score": None,
    }


# -- validation ----------------------------------------------------------------------------------------------------
def _validate(model: UNet, planes: list[_Plane], device: torch.device) -> dict[str, Any]:
    """Predict whole validation planes with the prediction code (no gradients) and score them."""
    losses, counts, aps = 0.0, 0, []
    confusion_iou = []
    for plane in planes:
        axes = "CYX" if plane.raw.shape[0] > 1 else "YX"
        raw = plane.raw if plane.raw.shape[0] > 1 else plane.raw[0]
        gen = iter_predict(model, raw, axes=axes, device=device, output="probabilities", name=plane.name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            probs = run(gen)
        prob = torch.from_numpy(probs)
        target = torch.from_numpy(plane.target)
        weight = torch.from_numpy(plane.weight)
        nll = -torch.log(prob.gather(0, target[None]).clamp_min(1e-8))[0]
        losses += float((nll * weight).sum())
        counts += int((weight > 0).sum())
        pred = probs.argmax(0)
        confusion_iou.append(iou_per_class(pred, plane.target, model.num_classes, plane.valid))
        if model.task == "instances" and plane.valid.all():
            aps.append(average_precision(label_foreground(pred == 1), plane.objects))
    model.train()
    per_class = np.nanmean(np.stack(confusion_iou), axis=0) if confusion_iou else np.array([])
    result = {"loss": losses / max(1, counts), "iou_per_class": [float(x) for x in per_class]}
    if model.task == "instances":
        result["iou"] = float(per_class[1]) if per_class.size > 1 else float("nan")
        result["ap50"] = float(np.mean(aps)) if aps else None
        result["score"] = result["ap50"] if aps else result["iou"]
    else:
        result["iou"] = float(np.nanmean(per_class))
        result["score"] = result["iou"]
    return result


def _split(planes: list[_Plane], config: TrainConfig) -> tuple[list[_Plane], list[_Plane]]:
    n = len(planes)
    if n < 2 or config.validation_fraction <= 0:
        return planes, planes
    n_val = min(n - 1, max(1, round(config.validation_fraction * n)))
    order = np.random.default_rng(config.seed).permutation(n)
    val = set(order[:n_val].tolist())
    return [p for i, p in enumerate(planes) if i not in val], [p for i, p in enumerate(planes) if i in val]


# -- the training loop -------------------------------------------------------------------------------------------
def iter_train(
    images,
    labels,
    *,
    config: TrainConfig | None = None,
    validation: tuple[Sequence, Sequence] | None = None,
    should_stop: Callable[[], bool] | None = None,
    names: Sequence[str] | None = None,
) -> Generator[Progress, None, TrainResult]:
    """Generator form of :func:`train`: yields ``Progress(step, steps, "train", info)`` and returns the result.

    ``info`` holds ``"step"``, ``"loss"`` and ``"model"`` (the live network: copy it before changing its mode or
    device, e.g. for a preview), plus ``"val"`` (loss, iou, iou_per_class, ap50, score) after a validation. Closing the generator (or ``should_stop()`` becoming true, or KeyboardInterrupt) stops training
    after saving the current weights to ``config.save_path``.
    """
    config = TrainConfig() if config is None else config
    _check_config(config)

    # Everything is validated before any work: the resume file, then all pairs, then the classes.
    payload = read_model_file(config.resume_from) if config.resume_from else None
    in_channels = payload["config"]["in_channels"] if payload else None
    if payload and payload["config"].get("task") != config.task:
        raise UNetInputError(
            f"{config.resume_from!r} was trained for task {payload['config'].get('task')!r} but config.task is "
            f"{config.task!r}; use the same task to resume."
        )
    train_pairs, in_channels = _check_pairs(images, labels, config, "training", in_channels, names)
    val_pairs = None
    if validation is not None:
        if not isinstance(validation, (tuple, list)) or len(validation) != 2:
            raise UNetInputError("validation must be a pair (images, labels) of lists of arrays.")
        val_pairs, _ = _check_pairs(validation[0], validation[1], config, "validation", in_channels)
    normalization = Normalization.from_any(payload["config"]["normalization"] if payload else config.normalization)
    planes = _planes(train_pairs, config, normalization, "training")
    val_planes = _planes(val_pairs, config, normalization, "validation") if val_pairs else None
    num_classes = _check_classes(planes, config, payload["config"]["num_classes"] if payload else None)
    if val_planes:
        _check_classes(val_planes, config, num_classes)
    device = resolve_device(config.device)
    depth = int(payload["config"]["depth"]) if payload else int(config.depth)
    tile = (
        int(config.tile_size) if config.tile_size else auto_tile_size(depth, device, [p.target.shape for p in planes])
    )
    shapes.check_input_shape((tile, tile), depth, what="training tile")

    # The work starts here: weight maps once per plane, then the network.
    for plane in planes + (val_planes or []):
        plane.weight = _weights(plane, config, num_classes)
    if val_planes is None:
        planes, val_planes = _split(planes, config)

    generator = torch.Generator()
    if config.seed is not None:
        torch.manual_seed(int(config.seed))
        generator.manual_seed(int(config.seed) + 1)
    else:
        generator.seed()
    if payload:
        model = UNet(**payload["config"])
        model.load_state_dict(payload["state_dict"])
    else:
        model = UNet(
            in_channels,
            num_classes,
            int(config.base_channels),
            int(config.depth),
            float(config.dropout),
            task=config.task,
            normalization=normalization,
            class_names=None if config.task == "semantic" else ["background", "foreground"],
        )
    model = model.to(device)
    # Channels-last picks the fast oneDNN/cuDNN convolution kernels on both CPU and CUDA. Autocast only on CUDA
    # by default: on CPUs bf16 training was slower for the small networks people train there, and its first
    # steps in a non-main thread (the viewer's worker) took 30x longer (benchmarks/README.md).
    channels_last = device.type in ("cuda", "cpu")
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if device.type == "cuda" or (device.type == "cpu" and config.precision in ("bf16", "fp16")):
        amp_dtype = autocast_dtype(device, config.precision)
    else:
        amp_dtype = None
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None

    lr = config.learning_rate or DEFAULT_LEARNING_RATE[config.optimizer]
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=SGD_MOMENTUM, weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=config.weight_decay)

    history = _new_history()
    step = 0
    state = (payload or {}).get("training_state")
    if state:
        optimizer.load_state_dict(state["optimizer"])
        step = int(state["step"])
        history.update(json.loads(state["history"]))
        _set_rng_state(state.get("rng", {}), generator, device)
    elapsed_before = float(history.get("elapsed_seconds") or 0.0)
    history["stopped"] = False
    history.update(
        device=str(device),
        tile_size=tile,
        output_size=model.output_shape((tile, tile))[0],
        learning_rate=lr,
        train_planes=len(planes),
        val_planes=len(val_planes),
    )
    store = PlaneStore([(p.image, p.target, p.weight) for p in planes], device)
    augmentation = config.augmentation
    best_score = history.get("best_score")
    timing = {"data": 0.0, "step": 0.0, "steps": 0}
    started = time.perf_counter()

    def metadata() -> dict[str, Any]:
        if timing["steps"]:
            history["steps_per_second"] = timing["steps"] / max(timing["step"], 1e-9)
            history["data_time_fraction"] = timing["data"] / max(timing["step"], 1e-9)
        history["elapsed_seconds"] = elapsed_before + time.perf_counter() - started
        return {"train_config": config.to_dict(), "history": history}

    def save(path, with_state: bool) -> None:
        model.metadata = metadata()
        training_state = None
        if with_state:
            training_state = {
                "optimizer": optimizer.state_dict(),
                "step": step,
                "history": json.dumps(history, default=float),
                "rng": _rng_state(generator, device),
                "config": json.dumps(config.to_dict()),
            }
        save_model(model, path, training_state=training_state)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def finish() -> TrainResult:
        model.eval()
        model.metadata = metadata()
        if config.save_path:
            save(config.save_path, with_state=True)
        return TrainResult(model, history)

    model.train()
    try:
        while step < config.steps:
            if config.time_budget is not None and time.perf_counter() - started >= config.time_budget:
                break
            if should_stop is not None and should_stop():
                history["stopped"] = True
                break
            t0 = time.perf_counter()
            image, target, weight = sample_batch(store, tile, int(config.batch_size), augmentation, generator)
            if channels_last:
                image = image.contiguous(memory_format=torch.channels_last)
            sync()
            t1 = time.perf_counter()
            autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
            with autocast:
                logits = model(image)
            loss = weighted_loss(logits, target, weight)
            if not torch.isfinite(loss.detach()):
                # Diverged: stop before the step so that the weights kept (and saved) are the last good ones.
                warnings.warn(
                    f"training diverged at step {step + 1} (loss {float(loss)}); stopped and kept the weights of step "
                    f"{step}. Lower the learning rate.",
                    stacklevel=2,
                )
                history["stopped"] = history["diverged"] = True
                break
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            loss_value = float(loss.detach())
            t2 = time.perf_counter()
            timing["data"] += t1 - t0
            timing["step"] += t2 - t0
            timing["steps"] += 1
            step += 1
            history["step"].append(step)
            history["loss"].append(loss_value)
            info: dict[str, Any] = {"step": step, "loss": loss_value, "model": model}
            last = step == config.steps or (
                config.time_budget is not None and time.perf_counter() - started >= config.time_budget
            )
            if step % config.val_every == 0 or last:
                val = _validate(model, val_planes, device)
                history["val_step"].append(step)
                history["val_loss"].append(val["loss"])
                history["val_iou"].append(val["iou"])
                history["val_iou_per_class"].append(val["iou_per_class"])
                if model.task == "instances":
                    history["val_ap50"].append(val["ap50"])
                info["val"] = val
                score = val["score"]
                if score is not None and math.isfinite(score) and (best_score is None or score > best_score):
                    best_score = score
                    history["best_step"], history["best_score"] = step, score
                    if config.save_path:
                        save(best_path(config.save_path), with_state=False)
            if config.save_path and step % config.checkpoint_every == 0 and step < config.steps:
                save(config.save_path, with_state=True)
            yield Progress(step, int(config.steps), "train", info)
    except GeneratorExit:
        history["stopped"] = True
        finish()
        return None
    except KeyboardInterrupt:
        history["stopped"] = True
    return finish()


def train(
    images,
    labels,
    *,
    config: TrainConfig | None = None,
    validation: tuple[Sequence, Sequence] | None = None,
    progress: ProgressLike | None = None,
    should_stop: Callable[[], bool] | None = None,
    names: Sequence[str] | None = None,
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

    Returns
    -------
    TrainResult
        ``(model, history)``; the model's ``.metadata`` holds ``"train_config"`` and ``"history"``.

    Raises
    ------
    UNetInputError
        For unusable inputs, before any training starts; the message names the pair and the fix.
    """
    # should_stop goes to the trainer, not to run(): stopping is a normal end of training that returns the model.
    gen = iter_train(images, labels, config=config, validation=validation, should_stop=should_stop, names=names)
    return run(gen, progress)
