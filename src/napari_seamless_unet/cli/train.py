"""``seamless-unet train``: train a U-Net on image files and their label files."""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

from ..core.errors import Cancelled, UNetInputError
from ..core.presets import NETWORK_PRESETS
from ._common import (
    EXIT_INTERRUPTED,
    PROG,
    ProgressBar,
    StopOnCtrlC,
    add_run_options,
    axes_letters,
    check_device,
    positive_float,
    positive_int,
    voxel_size,
)
from ._finetune import check_init, init_text


def add_parser(subparsers) -> None:
    """Add the ``train`` command to ``subparsers``."""
    train = subparsers.add_parser(
        "train",
        help="train a model on images and their labels",
        description="Train a U-Net on images and label images (files or folders; "
        "folders are paired by file name, e.g. cells.tif with cells_labels.tif, or in "
        "sorted order).",
    )
    train.add_argument("images", help="image file or folder of images")
    train.add_argument("labels", help="label image file or folder of label images (0 = background or unlabelled)")
    train.add_argument("-o", "--output", default="model.unet.pt", help="model file to write (default: %(default)s)")
    train.add_argument(
        "--task",
        choices=("instances", "semantic"),
        default=None,
        help="instances: each positive label is one object, touching objects are separated; "
        "semantic: label value k is class k (default: instances, or the --init model's task)",
    )
    train.add_argument(
        "--instance-classes",
        type=int,
        choices=(2, 3),
        default=None,
        help="instances: 2 = foreground/background with the paper's weight map; 3 = background, object interior "
        "and object border (default: 2)",
    )
    train.add_argument(
        "--unlabelled",
        choices=("background", "ignore"),
        default="background",
        help="what label 0 means: background, or ignore (sparse annotation: then 1 = background "
        "and 2, 3, ... are objects/classes) (default: %(default)s)",
    )
    train.add_argument("--ignore-label", type=int, default=None, help="an extra label value left out of the loss")
    train.add_argument(
        "--num-classes",
        type=positive_int,
        default=None,
        help="semantic task: number of classes (default: from the labels)",
    )
    train.add_argument(
        "--size",
        choices=("auto", *NETWORK_PRESETS),
        default="auto",
        help="network size preset: "
        + ", ".join(f"{k} = {b} channels/depth {d}" for k, (b, d) in NETWORK_PRESETS.items())
        + " (the paper's, with its dropout and 572-pixel tiles); auto = chosen for the device and the time budget "
        "(see the settings printed at the end) (default: %(default)s)",
    )
    train.add_argument("--base-channels", type=positive_int, default=None, help="override the preset's channels")
    train.add_argument("--depth", type=positive_int, default=None, help="override the preset's depth (poolings)")
    train.add_argument(
        "--batch-norm",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="batch normalisation after each convolution (not in the paper) (default: chosen for the device)",
    )
    train.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="training steps of this run; with --resume, steps more (default: 1000, or until --time-budget runs "
        "out; with --resume, the rest of the interrupted run)",
    )
    train.add_argument(
        "--time-budget",
        type=positive_float,
        default=None,
        metavar="SECONDS",
        help="stop after this many seconds even if --steps are not done",
    )
    train.add_argument(
        "--tile-size",
        type=positive_int,
        default=None,
        help="training tile side (a valid input size; default: automatic)",
    )
    train.add_argument(
        "--batch-size", type=positive_int, default=None, help="tiles per step (default: 1 on CPU, what fits on a GPU)"
    )
    train.add_argument(
        "--members",
        type=positive_int,
        default=None,
        help="networks trained side by side that predict together, an ensemble (default: 1, or 2 for a semantic "
        "task where the time budget buys one network 10000 steps)",
    )
    train.add_argument("--optimizer", choices=("adam", "sgd"), default="adam", help="(default: %(default)s)")
    train.add_argument("--learning-rate", type=positive_float, default=None, help="default: per optimizer")
    train.add_argument("--validation-images", default=None, help="validation image file or folder (optional)")
    train.add_argument("--validation-labels", default=None, help="validation label file or folder")
    train.add_argument(
        "--validation-fraction",
        type=float,
        default=None,
        help="fraction of the training data held out for validation when no validation set is "
        "given (default: the training API's)",
    )
    train.add_argument(
        "--val-every",
        type=positive_int,
        default=None,
        help="validate every N steps (default: automatic, about 5%% of the training time)",
    )
    train.add_argument("--checkpoint-every", type=positive_int, default=None, help="save the model every N steps")
    train.add_argument("--resume", default=None, metavar="MODEL", help="continue training from this model file")
    train.add_argument(
        "--init",
        default=None,
        metavar="MODEL",
        help="fine-tune: start from this model file or starter model (nuclei, em-membranes; see 'seamless-unet "
        "info --starters') instead of random weights; its architecture, classes, task and normalisation are kept, "
        "with a new optimizer and schedule (default: not set, random weights)",
    )
    train.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    train.add_argument("--axes", type=axes_letters, default=None, help="axes of the images, e.g. YX, ZYX, CYX, YXC")
    train.add_argument(
        "--ndim",
        type=int,
        choices=(2, 3),
        default=None,
        help="2: a 2D network trained on every plane (the paper's); 3: a 3D network trained on volumes (the images "
        "need a Z axis; much slower on a CPU) (default: 2, or the --init model's)",
    )
    train.add_argument(
        "--voxel-size",
        type=voxel_size,
        default=None,
        metavar="Z,Y,X",
        help="physical voxel size Z,Y,X (3D) or pixel size Y,X (2D), e.g. 3,1,1 for planes 3x as far apart as the "
        "pixels; shapes a 3D network for anisotropic volumes (default: from the first training image's TIFF or "
        "OME-Zarr metadata, else isotropic)",
    )
    add_run_options(train)
    train.set_defaults(handler=run)


def run(args) -> int:
    """Train, print a summary and return the exit status (130 when stopped with Ctrl-C)."""
    from ..io import load_pairs

    check_device(args.device)
    output = Path(args.output)
    if output.is_dir():
        raise UNetInputError(f"output {str(output)!r} is a folder; give a model file name such as model.unet.pt.")
    if args.resume and not Path(args.resume).exists():
        raise UNetInputError(f"model to resume from {args.resume!r} does not exist.")
    if (args.validation_images is None) != (args.validation_labels is None):
        raise UNetInputError("give both --validation-images and --validation-labels, or neither.")
    check_init(args)
    images, labels = load_pairs(args.images, args.labels)
    validation = None
    if args.validation_images is not None:
        validation = load_pairs(args.validation_images, args.validation_labels, "validation")
    base, depth, preset = network_size(args)
    spacing = training_voxel_size(args)
    config = make_config(
        task=args.task,
        preset=preset,
        unlabelled=args.unlabelled,
        ignore_label=args.ignore_label,
        num_classes=args.num_classes,
        instance_classes=args.instance_classes,
        base_channels=base,
        depth=depth,
        batch_norm=args.batch_norm,
        tile_size=args.tile_size,
        batch_size=args.batch_size,
        members=args.members,
        steps=args.steps,
        time_budget=args.time_budget,
        optimizer=args.optimizer,
        learning_rate=args.learning_rate,
        validation_fraction=args.validation_fraction,
        val_every=args.val_every,
        save_path=str(output),
        checkpoint_every=args.checkpoint_every,
        resume_from=args.resume,
        seed=args.seed,
        device=args.device,
        axes=args.axes,
        ndim=args.ndim,
        voxel_size=spacing,
    )
    if not args.quiet and args.init:
        print(
            f"fine-tuning {init_text(args.init)} on {len(images)} image(s): {_schedule_text(config)}", file=sys.stderr
        )
    elif not args.quiet:
        network = (
            "network chosen for the device" if preset is None else f"{preset}: {base} base channels, depth {depth}"
        )
        ndim = args.ndim or 2
        dimensions = "" if ndim == 2 and not spacing else dimensions_text(ndim, spacing) + ", "
        print(
            f"training a U-Net for {args.task or 'instances'} ({dimensions}{network}) on {len(images)} image(s): "
            f"{_schedule_text(config)}",
            file=sys.stderr,
        )
    result, interrupted = run_training(args, images, labels, config, validation)
    if interrupted:
        print(f"{PROG}: interrupted; {saved_message(output)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    model, history = result
    if not output.exists():  # the training API writes save_path itself; make sure the file is there
        from ..core.model_io import save_model

        save_model(model, output)
    if not args.quiet:
        for line in history_summary(history):
            print(line)
        lineage = model.metadata.get("lineage") or []
        if args.init and lineage:
            print(f"started from: {lineage[-1].get('model')}")
        print(f"model saved to {output}")
    return 0


def network_size(args) -> tuple[int | None, int | None, str | None]:
    """``(base_channels, depth, preset)`` from ``--size`` and the overrides; None where the trainer chooses."""
    preset = None if args.size == "auto" else args.size
    base, depth = NETWORK_PRESETS[preset] if preset else (None, None)
    if args.base_channels is not None:
        base = args.base_channels
    if args.depth is not None:
        depth = args.depth
    return base, depth, preset


def training_voxel_size(args) -> tuple[float, ...] | None:
    """``--voxel-size``, else the size the first training image's metadata records (its last ``--ndim`` axes)."""
    ndim = args.ndim or 2
    if args.voxel_size is not None:
        if args.init and args.ndim is None:
            return tuple(args.voxel_size)  # the model's dimensions: the training API checks the sizes
        if len(args.voxel_size) != ndim:
            what = "Z,Y,X (3 sizes)" if ndim == 3 else "Y,X (2 sizes)"
            raise UNetInputError(
                f"--voxel-size {','.join(f'{v:g}' for v in args.voxel_size)} does not fit --ndim {ndim}: give {what}."
            )
        return tuple(args.voxel_size)
    if args.init:
        return None  # the model's voxel size
    from ..io import list_images
    from ..io import voxel_size as read_voxel_size

    found = read_voxel_size(list_images(args.images, "training image")[0])
    if found is None or len(found) < ndim:
        return None
    return tuple(found[-ndim:])


def dimensions_text(ndim: int, spacing) -> str:
    """E.g. '3D network, voxels 3 x 1 x 1', '2D network, pixels 0.5 x 0.5', '3D network, isotropic voxels'."""
    what = "voxels" if ndim == 3 else "pixels"
    size = " x ".join(f"{v:g}" for v in spacing) if spacing else None
    if not size:
        return "3D network, isotropic voxels" if ndim == 3 else "2D network"
    return f"{ndim}D network, {what} {size}"


def make_config(**fields):
    """A ``TrainConfig`` of the fields given (None = the training API's default); bad values are input errors."""
    from ..core.train import TrainConfig

    known = set(inspect.signature(TrainConfig).parameters)  # also the flat augmentation keywords
    try:
        return TrainConfig(**{k: v for k, v in fields.items() if k in known and v is not None})
    except (TypeError, ValueError) as err:
        raise UNetInputError(f"invalid training settings: {err}") from None


def _schedule_text(config) -> str:
    """How long this run trains, in words: '1000 steps', 'until 600 s are up', 'the rest of the resumed run'."""
    from ..core.train import DEFAULT_STEPS

    budget = f"{config.time_budget:g} s" if config.time_budget else None
    if config.steps is not None:
        more = " more" if config.resume_from else ""
        return f"{config.steps}{more} steps" + (f", at most {budget}" if budget else "")
    if config.resume_from:
        return "the rest of the resumed run" + (f", at most {budget}" if budget else "")
    return f"until {budget} are up" if budget else f"{DEFAULT_STEPS} steps"


def run_training(args, images, labels, config, validation, desc: str = "training"):
    """Train with a progress bar, the first Ctrl-C stopping after the current step; returns ``(result, interrupted)``."""
    from ..core.train import train

    with StopOnCtrlC() as ctrl_c, ProgressBar(args.quiet, desc=desc, unit="step") as bar:
        try:
            result = train(
                images,
                labels,
                config=config,
                validation=validation,
                init=getattr(args, "init", None),
                progress=bar,
                should_stop=lambda: ctrl_c.requested,
            )
        except Cancelled as stop:
            result = stop.partial
        except KeyboardInterrupt:  # a second Ctrl-C: whatever the last checkpoint wrote is what is left
            return None, True
        return result, ctrl_c.requested


STOP_REASONS = {
    "steps": "all steps done",
    "time_budget": "the time budget",
    "stopped": "a stop request",
    "diverged": "a diverging loss (the weights of the last finite step were kept; lower the learning rate)",
}


def saved_message(path: Path) -> str:
    """What an interrupted run left: the last model saved, or none."""
    if path.exists():
        return f"the last model was saved to {path}"
    return "no model was saved yet"


def history_summary(history: dict | None) -> list[str]:
    """Lines summing up a training history: steps, final loss, validation scores, time, early stop."""
    import numpy as np

    from ..core.train.defaults import AUTOMATIC  # here, not at the top: --help must not import torch

    if not history:
        return []
    lines = []
    settings = history.get("settings")
    if settings:
        automatic = set(settings.get("automatic") or ())
        shown = ", ".join(
            f"{name.replace('_', ' ')} {_setting_text(settings[name])}" + (" (auto)" if name in automatic else "")
            for name in AUTOMATIC  # the settings the trainer may choose, in the order it resolves them
            if isinstance(settings.get(name), (int, float))
        )
        if settings.get("precision"):
            shown += f", precision {settings['precision']}" + (" (auto)" if "precision" in automatic else "")
        lines.append(f"settings: {shown} on {settings.get('device')}")
    steps, losses = history.get("step") or [], history.get("loss") or []
    if steps:
        lines.append(f"steps trained: {steps[-1]}")
    if losses:
        tail = losses[-min(len(losses), 20) :]
        lines.append(f"final loss: {float(np.mean(tail)):.4f} (mean of the last {len(tail)} steps)")
    for key, label in (("val_loss", "validation loss"), ("val_iou", "validation IoU"), ("val_ap50", "validation AP50")):
        values = [v for v in history.get(key) or [] if v is not None]
        if values:
            best = min(values) if key == "val_loss" else max(values)
            lines.append(f"{label}: last {values[-1]:.4f}, best {best:.4f}")
    for key in ("elapsed_seconds", "elapsed"):
        if isinstance(history.get(key), (int, float)):
            lines.append(f"training time: {history[key]:.1f} s")
            break
    reason = history.get("stop_reason") or ("stopped" if history.get("stopped") else None)
    if reason:
        lines.append("ended by: " + STOP_REASONS.get(reason, reason))
    return lines


def _setting_text(value) -> str:
    return ("on" if value else "off") if isinstance(value, bool) else f"{value:g}"
