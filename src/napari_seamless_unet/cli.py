"""The ``seamless-unet`` command line: ``train``, ``predict``, ``segment``, ``info`` and ``demo``.

Built only on the public compute core (no napari, no Qt). Images are read with tifffile (memory-mapped or as a
lazy zarr view where the file allows it) or zarr, so a large input is read tile by tile; predictions into a
``.zarr`` path are written tile by tile as well.

Every error a user can cause ends the program with one line on stderr (``seamless-unet: error: ...``) and a
non-zero exit status; Ctrl-C during training saves the model so far and exits with status 130.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .core import axes as ax
from .core.errors import Cancelled, InvalidShapeError, UNetInputError
from .core.presets import NETWORK_PRESETS

PROG = "seamless-unet"
TIFF_SUFFIXES = (".tif", ".tiff")
IMAGE_SUFFIXES = (*TIFF_SUFFIXES, ".zarr", ".npy")
# File-name endings that mark a label image of the same stem ("cells_01_labels.tif" labels "cells_01.tif").
LABEL_ENDINGS = ("_labels", "-labels", ".labels", "_label", "-label", "_masks", "_mask", "-mask", "_gt", "_seg")
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other error of the command line."""

    def error(self, message: str):
        self.exit(2, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


def _one_line(message: object) -> str:
    return " ".join(str(message).split())


def _fail(message: object, status: int = 1) -> int:
    print(f"{PROG}: error: {_one_line(message)}", file=sys.stderr)
    return status


# -- argument types ------------------------------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _tile_size(text: str) -> tuple[int, int]:
    """``572`` or ``572x700`` (Y x X)."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size like 572 or 572x700, got {text!r}") from None
    if len(sizes) == 1:
        sizes = sizes * 2
    if len(sizes) != 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected a size like 572 or 572x700, got {text!r}")
    return sizes  # type: ignore[return-value]


def _axes(text: str) -> str:
    axes = text.upper()
    if not axes or any(a not in ax.KNOWN_AXES for a in axes):
        raise argparse.ArgumentTypeError(f"axes are letters among T, Z, C, Y, X (S = C), got {text!r}")
    return axes


# -- reading images ------------------------------------------------------------------------------------------------
def _is_zarr(path: Path) -> bool:
    if path.suffix.lower() == ".zarr":
        return True
    return path.is_dir() and any((path / name).exists() for name in ("zarr.json", ".zarray", ".zgroup"))


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr", *IMAGE_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def list_images(path: str | os.PathLike, what: str = "image") -> list[Path]:
    """The image files named by ``path``: the file itself, or the TIFF/zarr/npy images in a folder, sorted.

    Raises
    ------
    UNetInputError
        When the path does not exist or the folder holds no images.
    """
    path = Path(path)
    if not path.exists():
        raise UNetInputError(f"{what} path {str(path)!r} does not exist.")
    if path.is_dir() and not _is_zarr(path):
        files = sorted(
            (p for p in path.iterdir() if not p.name.startswith(".") and (p.suffix.lower() in IMAGE_SUFFIXES)),
            key=lambda p: p.name,
        )
        if not files:
            raise UNetInputError(f"folder {str(path)!r} holds no images (.tif, .tiff, .zarr or .npy files).")
        return files
    return [path]


def _axes_from_letters(letters: str, ndim: int) -> str | None:
    """Our axes for a file's own axis letters, or None when the file does not say (so they are guessed)."""
    letters = (letters or "").upper().replace("S", "C")
    if len(letters) != ndim or any(a not in "TZCYX" for a in letters) or len(set(letters)) != len(letters):
        return None  # e.g. tifffile's "I"/"Q" (an unnamed sequence): let the shape and the model decide
    return letters if "Y" in letters and "X" in letters else None


def open_image(path: str | os.PathLike, *, lazy: bool = True) -> tuple[Any, str | None]:
    """Open an image file for reading; returns ``(array, axes or None)``.

    TIFFs are memory-mapped where their layout allows, else opened as a lazy zarr view (tiles are decoded only
    when read); zarr arrays and groups (the first array, e.g. level ``0`` of OME-Zarr) are opened read-only.
    ``lazy=False`` reads the whole image into memory.
    """
    path = Path(path)
    if not path.exists():
        raise UNetInputError(f"image {str(path)!r} does not exist.")
    suffix = path.suffix.lower()
    if _is_zarr(path):
        return _open_zarr(path, lazy)
    if suffix == ".npy":
        try:
            data = np.load(path, mmap_mode="r" if lazy else None, allow_pickle=False)
        except ValueError as err:
            raise UNetInputError(f"{str(path)!r} is not a readable .npy image: {err}") from None
        return data, None
    if suffix not in TIFF_SUFFIXES:
        raise UNetInputError(f"{str(path)!r} is not a TIFF (.tif, .tiff), .zarr or .npy image.")
    if path.is_dir():
        raise UNetInputError(f"{str(path)!r} is a folder, not a TIFF file.")
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise UNetInputError(f"TIFF {str(path)!r} holds no image.")
            series = tif.series[0]
            letters, ndim = series.axes, len(series.shape)
            if not lazy:
                return series.asarray(), _axes_from_letters(letters, ndim)
    except tifffile.TiffFileError as err:
        raise UNetInputError(f"{str(path)!r} is not a readable TIFF file: {err}") from None
    try:
        data = tifffile.memmap(path, mode="r")
    except (ValueError, tifffile.TiffFileError):
        # Compressed or tiled TIFFs cannot be mapped; zarr reads (and decodes) only the tiles that are asked for.
        import zarr

        data = zarr.open(tifffile.imread(path, aszarr=True), mode="r")
        if not hasattr(data, "shape"):  # a pyramid: its full-resolution level
            data = data["0"]
    if len(data.shape) != ndim:
        letters = ""
    return data, _axes_from_letters(letters, len(data.shape))


def _open_zarr(path: Path, lazy: bool) -> tuple[Any, str | None]:
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as err:
        raise UNetInputError(f"{str(path)!r} is not a readable zarr array or group: {_one_line(err)}") from None
    axes_attr = None
    if not hasattr(node, "shape"):
        arrays = dict(node.arrays())
        if not arrays:
            raise UNetInputError(f"zarr group {str(path)!r} holds no array.")
        with contextlib.suppress(Exception):  # OME-Zarr names its axes in the multiscales metadata
            meta = node.attrs.get("multiscales") or node.attrs.get("ome", {}).get("multiscales")
            axes_attr = "".join(a["name"] if isinstance(a, dict) else a for a in meta[0]["axes"])
        node = arrays["0"] if "0" in arrays else arrays[sorted(arrays)[0]]
    axes_attr = node.attrs.get("axes", axes_attr)
    axes = _axes_from_letters(axes_attr, len(node.shape)) if isinstance(axes_attr, str) else None
    return (node if lazy else node[...]), axes


def pair_images_and_labels(images: Sequence[Path], labels: Sequence[Path]) -> list[tuple[Path, Path]]:
    """Pair image and label files by matching stem (``a.tif`` with ``a.tif``, ``a_labels.tif``, ...).

    When not every image finds its labels by name and both lists are equally long, they are paired in sorted
    order instead.
    """
    by_stem: dict[str, Path] = {}
    for label in labels:
        stem = _stem(label)
        by_stem.setdefault(stem, label)
        for ending in LABEL_ENDINGS:
            if stem.lower().endswith(ending):
                by_stem.setdefault(stem[: -len(ending)], label)
    pairs = [(image, by_stem.get(_stem(image))) for image in images]
    if all(label is not None for _, label in pairs) and len({label for _, label in pairs}) == len(pairs):
        return pairs  # type: ignore[return-value]
    if len(images) == len(labels):
        return list(zip(images, labels))
    missing = [image.name for image, label in pairs if label is None]
    raise UNetInputError(
        f"{len(images)} image(s) but {len(labels)} label image(s), and no label file matches "
        f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} by name; name label files like their "
        f"images (e.g. cells.tif and cells_labels.tif) or give the same number of each."
    )


def _load_pairs(images: str, labels: str, what: str = "training") -> tuple[list[np.ndarray], list[np.ndarray]]:
    pairs = pair_images_and_labels(list_images(images, f"{what} image"), list_images(labels, f"{what} label"))
    image_arrays, label_arrays = [], []
    for image_path, label_path in pairs:
        image, _ = open_image(image_path, lazy=False)
        label, _ = open_image(label_path, lazy=False)
        label = np.asarray(label)
        if label.dtype.kind not in "iub":
            if label.dtype.kind == "f" and np.all(np.isfinite(label)) and np.all(label == np.round(label)):
                label = label.astype(np.int64)
            else:
                raise UNetInputError(
                    f"label image {label_path.name!r} has dtype {label.dtype}; labels must be whole numbers "
                    f"(0 = background/unlabelled, 1, 2, ... objects or classes)."
                )
        image_arrays.append(np.asarray(image))
        label_arrays.append(label)
    return image_arrays, label_arrays


# -- writing images ------------------------------------------------------------------------------------------------
def _output_dtype(model, output: str) -> np.dtype:
    if output == "probabilities":
        return np.dtype(np.float32)
    if model.task == "instances":
        return np.dtype(np.int32)
    return np.dtype(np.uint8 if model.num_classes <= 255 else np.int32)


def _output_layout(model, image, axes: str | None, output: str) -> tuple[tuple[int, ...], str]:
    resolved = ax.resolve_axes(image.shape, axes, model.in_channels)
    spatial = ax.spatial_axes(resolved)
    shape = tuple(int(n) for n, a in zip(image.shape, resolved) if a != "C")
    if output == "probabilities":
        return (model.num_classes, *shape), "C" + spatial
    return shape, spatial


def create_zarr_output(path: Path, shape: tuple[int, ...], dtype, axes: str, attrs: dict | None = None):
    """Create (replacing) a zarr array for a prediction, chunked in planes of at most 1024 x 1024 pixels."""
    import zarr

    chunks = tuple(min(n, 1024) if a in "YX" else 1 for n, a in zip(shape, axes))
    array = zarr.open_array(str(path), mode="w", shape=shape, dtype=dtype, chunks=chunks, fill_value=0)
    array.attrs.update({"axes": axes, **(attrs or {})})
    return array


def write_tiff(path: Path, data: np.ndarray, axes: str) -> None:
    """Write ``data`` with ``axes`` as a TIFF that ImageJ/Fiji opens as a hyperstack where the dtype allows."""
    import tifffile

    data = np.asarray(data)
    if data.dtype.kind in "iu" and data.dtype.itemsize > 2 and data.size and data.min() >= 0 and data.max() < 2**16:
        data = data.astype(np.uint16)  # ImageJ reads 8/16-bit integers and 32-bit floats only
    order = "".join(a for a in "TZCYX" if a in axes)
    if data.dtype in (np.uint8, np.uint16, np.float32) and sorted(order) == sorted(axes):
        data = np.transpose(data, [axes.index(a) for a in order])
        tifffile.imwrite(path, data, imagej=True, metadata={"axes": order})
    else:
        tifffile.imwrite(path, data, metadata={"axes": axes})


def _output_paths(inputs: list[Path], output: str | None, kind: str, fmt: str | None) -> list[Path]:
    """Where each input's result goes: a file for one input and a file-like output, else files in a folder."""

    def suffix_for(src: Path) -> str:
        if fmt:
            return "." + fmt
        return ".zarr" if _is_zarr(src) else ".tif"

    if output is None:
        return [src.parent / f"{_stem(src)}_{kind}{suffix_for(src)}" for src in inputs]
    out = Path(output)
    file_like = out.suffix.lower() in (*TIFF_SUFFIXES, ".zarr") and not (out.is_dir() and not _is_zarr(out))
    if len(inputs) == 1 and file_like:
        return [out]
    if file_like:
        raise UNetInputError(
            f"{len(inputs)} input images but one output file {str(out)!r}; give an output folder instead."
        )
    return [out / f"{_stem(src)}_{kind}{suffix_for(src)}" for src in inputs]


# -- commands ------------------------------------------------------------------------------------------------------
class _Bar:
    """A tqdm bar made at the first progress event, so that an error found before any work prints no empty bar.

    Speaks the tqdm-like protocol of :func:`~napari_seamless_unet.core.progress.as_callback` (``total``,
    ``update``, ``refresh``, ``reset``); a bar interrupted by an error is cleared, so the error stays one line.
    """

    def __init__(self, args, **kwargs):
        self._kwargs = {"disable": getattr(args, "quiet", False), "file": sys.stderr, "dynamic_ncols": True, **kwargs}
        self._bar = None

    def _ensure(self, total=None):
        if self._bar is None:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, **self._kwargs)
        return self._bar

    @property
    def total(self):
        return self._bar.total if self._bar is not None else None

    @total.setter
    def total(self, value):
        self._ensure(value).total = value

    def update(self, n: int = 1) -> None:
        self._ensure().update(n)

    def refresh(self) -> None:
        self._ensure().refresh()

    def reset(self, total=None) -> None:
        self._ensure(total).reset(total=total)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if self._bar is not None:
            if exc_type is not None:
                self._bar.leave = False
            self._bar.close()
        return False


def _tqdm(args, **kwargs) -> _Bar:
    kwargs.pop("total", None)
    return _Bar(args, **kwargs)


def _check_device(name: str | None) -> str | None:
    from .core.devices import resolve_device

    resolve_device(name)  # fails early, with the devices there are, for a device this machine does not have
    return name


def _cmd_predict(args, output: str) -> int:
    from .core import shapes
    from .core.model_io import load_model
    from .core.predict import predict, segment

    _check_device(args.device)
    model = load_model(args.model, device="cpu")
    if args.tile_size is not None:
        shapes.check_input_shape(args.tile_size, model.depth, what="tile")
    inputs = [p for path in args.inputs for p in list_images(path)]
    outputs = _output_paths(inputs, args.output, output, args.format)
    for src, dst in zip(inputs, outputs):
        if dst.resolve() == src.resolve():
            raise UNetInputError(f"output {str(dst)!r} would overwrite its input; choose another output path.")
    if len(set(outputs)) != len(outputs):
        raise UNetInputError("two inputs have the same name; their outputs would overwrite each other.")
    for src, dst in zip(inputs, outputs):
        image, file_axes = open_image(src)
        axes = args.axes or file_axes
        shape, out_axes = _output_layout(model, image, axes, output)
        dtype = _output_dtype(model, output)
        dst.parent.mkdir(parents=True, exist_ok=True)
        to_zarr = dst.suffix.lower() == ".zarr"
        out = None
        if to_zarr:
            attrs = {"source": str(src), "model": str(args.model), "output": output}
            out = create_zarr_output(dst, shape, dtype, out_axes, attrs)
        kwargs = {
            "axes": axes,
            "tile_shape": args.tile_size,
            "batch_size": args.batch_size,
            "device": args.device,
            "precision": args.precision,
            "out": out,
        }
        with _tqdm(args, desc=src.name, unit="tile") as bar:
            if output == "labels":
                result = segment(model, image, min_size=args.min_size, progress=bar, **kwargs)
            else:
                result = predict(model, image, progress=bar, **kwargs)
        if not to_zarr:
            write_tiff(dst, result, out_axes)
        found = ""
        if output == "labels" and model.task == "instances" and not to_zarr:
            found = f", {len(np.unique(result)) - (1 if np.any(result == 0) else 0)} objects"
        if not args.quiet:
            print(f"{src} -> {dst} ({output} {'x'.join(map(str, shape))} {out_axes}{found})")
    return 0


def _network_size(args) -> tuple[int, int, str]:
    preset = args.size
    if preset == "auto":
        import torch

        preset = "paper" if torch.cuda.is_available() and args.device not in ("cpu",) else "small"
    base, depth = NETWORK_PRESETS[preset]
    if args.base_channels is not None:
        base = args.base_channels
    if args.depth is not None:
        depth = args.depth
    return base, depth, preset


def _make_config(**fields):
    from .core.train import TrainConfig

    known = set(getattr(TrainConfig, "__dataclass_fields__", fields))
    try:
        return TrainConfig(**{k: v for k, v in fields.items() if k in known and v is not None})
    except (TypeError, ValueError) as err:
        raise UNetInputError(f"invalid training settings: {err}") from None


class _Interrupt:
    """First Ctrl-C asks training to stop after the current step (it then saves); a second one aborts."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        with contextlib.suppress(ValueError):  # not the main thread: keep the default handler
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(f"\n{PROG}: stopping after this step and saving the model (Ctrl-C again to abort)", file=sys.stderr)

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


def _run_training(args, images, labels, config, validation, desc: str = "training"):
    """Train with a tqdm bar; returns ``(result, interrupted)``."""
    from .core.train import train

    with _Interrupt() as interrupt, _tqdm(args, desc=desc, unit="step", total=config.steps) as bar:
        try:
            result = train(
                images,
                labels,
                config=config,
                validation=validation,
                progress=bar,
                should_stop=lambda: interrupt.requested,
            )
        except Cancelled as stop:
            result = stop.partial
        except KeyboardInterrupt:  # a second Ctrl-C: whatever the last checkpoint wrote is what is left
            return None, True
        return result, interrupt.requested


def _saved_message(path: str | None) -> str:
    if path and Path(path).exists():
        return f"the last model was saved to {path}"
    return "no model was saved yet"


def _history_summary(history: dict | None) -> list[str]:
    if not history:
        return []
    lines = []
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
    if history.get("stopped"):
        lines.append("stopped early on request")
    return lines


def _cmd_train(args) -> int:
    _check_device(args.device)
    output = Path(args.output)
    if output.is_dir():
        raise UNetInputError(f"output {str(output)!r} is a folder; give a model file name such as model.unet.pt.")
    if args.resume and not Path(args.resume).exists():
        raise UNetInputError(f"model to resume from {args.resume!r} does not exist.")
    if (args.validation_images is None) != (args.validation_labels is None):
        raise UNetInputError("give both --validation-images and --validation-labels, or neither.")
    images, labels = _load_pairs(args.images, args.labels)
    validation = None
    if args.validation_images is not None:
        validation = _load_pairs(args.validation_images, args.validation_labels, "validation")
    base, depth, preset = _network_size(args)
    config = _make_config(
        task=args.task,
        unlabelled=args.unlabelled,
        ignore_label=args.ignore_label,
        num_classes=args.num_classes,
        base_channels=base,
        depth=depth,
        tile_size=args.tile_size,
        batch_size=args.batch_size,
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
    )
    if not args.quiet:
        budget = f", at most {args.time_budget:g} s" if args.time_budget else ""
        print(
            f"training a {args.task} U-Net ({preset}: {base} base channels, depth {depth}) on {len(images)} "
            f"image(s) for {config.steps} steps{budget}",
            file=sys.stderr,
        )
    result, interrupted = _run_training(args, images, labels, config, validation)
    if interrupted:
        print(f"{PROG}: interrupted; {_saved_message(str(output))}", file=sys.stderr)
        return EXIT_INTERRUPTED
    model, history = result
    if not output.exists():  # the training API writes save_path itself; make sure the file is there
        from .core.model_io import save_model

        save_model(model, output)
    if not args.quiet:
        for line in _history_summary(history):
            print(line)
        print(f"model saved to {output}")
    return 0


def _describe_model(path: str) -> dict[str, Any]:
    from .core import shapes
    from .core.model_io import read_model_file

    payload = read_model_file(path)
    config, meta = payload["config"], payload["metadata"]
    params = sum(int(t.numel()) for t in payload["state_dict"].values() if hasattr(t, "numel"))
    depth = int(config.get("depth", 4))
    tile = shapes.min_input_size(depth) + 2**depth * 4
    return {
        "file": str(path),
        "file_size_bytes": Path(path).stat().st_size,
        "format": f"{payload['format']} v{payload['format_version']}",
        "architecture": {
            "in_channels": config.get("in_channels"),
            "num_classes": config.get("num_classes"),
            "base_channels": config.get("base_channels"),
            "depth": depth,
            "dropout": config.get("dropout"),
            "parameters": params,
            "halo": shapes.halo(depth),
            "example_tile": [tile, shapes.output_size(tile, depth)],
        },
        "task": config.get("task"),
        "classes": config.get("class_names"),
        "normalization": config.get("normalization"),
        "axes": (meta.get("train_config") or {}).get("axes") or meta.get("axes"),
        "train_config": meta.get("train_config"),
        "history": meta.get("history"),
        "versions": meta.get("versions"),
        "created": meta.get("created"),
        "resumable": "training_state" in payload,
        "other_metadata": {
            k: v for k, v in meta.items() if k not in ("train_config", "history", "versions", "created", "axes")
        },
    }


def _format_info(info: dict[str, Any]) -> str:
    arch = info["architecture"]
    norm = info["normalization"] or {}
    if norm.get("mode") == "percentile":
        norm_text = f"percentile {norm.get('low')} - {norm.get('high')} per channel mapped to 0 - 1"
    else:
        norm_text = str(norm.get("mode", "unknown"))
    tile_in, tile_out = arch["example_tile"]
    lines = [
        f"model file:     {info['file']} ({info['file_size_bytes'] / 2**20:.1f} MiB, {info['format']})",
        f"architecture:   U-Net, depth {arch['depth']}, {arch['base_channels']} base channels, "
        f"{arch['in_channels']} input channel(s), {arch['num_classes']} classes, dropout {arch['dropout']}, "
        f"{arch['parameters']:,} parameters",
        f"tiles:          halo {arch['halo']} px per side; e.g. a {tile_in} x {tile_in} input tile gives "
        f"{tile_out} x {tile_out} output pixels",
        f"task:           {info['task']}",
        f"classes:        {', '.join(map(str, info['classes'] or []))}",
        f"normalisation:  {norm_text}",
        f"axes:           {info['axes'] or 'inferred from each image (YX, ZYX, CYX, ...)'}",
        f"created:        {info['created'] or 'unknown'}",
        f"resumable:      {'yes (optimizer state included)' if info['resumable'] else 'no'}",
    ]
    train_config = info["train_config"]
    if train_config:
        shown = ", ".join(f"{k}={v}" for k, v in train_config.items() if not isinstance(v, (dict, list)))
        lines.append(f"training:       {shown}")
    history_lines = _history_summary(info["history"])
    lines += [f"history:        {line}" for line in history_lines] or ["history:        none recorded"]
    versions = info["versions"] or {}
    lines.append(f"versions:       {', '.join(f'{k} {v}' for k, v in versions.items()) or 'unknown'}")
    return "\n".join(lines)


def _cmd_info(args) -> int:
    info = _describe_model(args.model)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        print(_format_info(info))
    return 0


def match_instances(prediction: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Foreground IoU and object matching at IoU > ``threshold`` between two instance label images."""
    pred = np.asarray(prediction).ravel().astype(np.int64)
    true = np.asarray(truth).ravel().astype(np.int64)
    union_fg = np.count_nonzero((pred > 0) | (true > 0))
    fg_iou = np.count_nonzero((pred > 0) & (true > 0)) / union_fg if union_fg else 1.0
    both = (pred > 0) & (true > 0)
    pairs, overlap = np.unique(np.stack([pred[both], true[both]]), axis=1, return_counts=True)
    area_pred, area_true = np.bincount(pred), np.bincount(true)
    iou = overlap / (area_pred[pairs[0]] + area_true[pairs[1]] - overlap)
    # With IoU > 0.5 each object can match at most one other, so counting pairs counts matches.
    matched = int(np.count_nonzero(iou > threshold))
    n_pred, n_true = int(np.count_nonzero(area_pred[1:])), int(np.count_nonzero(area_true[1:]))
    f1 = 2 * matched / (n_pred + n_true) if n_pred + n_true else 1.0
    return {"foreground_iou": float(fg_iou), "matched": matched, "predicted": n_pred, "true": n_true, "f1": f1}


def _cmd_demo(args) -> int:
    from .core.predict import segment
    from .core.synthetic import touching_discs

    device = _check_device(args.device)
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UNetInputError(f"--out-dir {str(out_dir)!r} is a file, not a folder.")
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / "demo-model.unet.pt"
    base, depth = NETWORK_PRESETS[args.size]
    # Train on the bundled sample, then segment a new image of the same kind, so the score is not memorised.
    image, labels = touching_discs(shape=(256, 256), seed=0)
    test_image, test_truth = touching_discs(shape=(256, 256), seed=1)
    config = _make_config(
        task="instances",
        base_channels=base,
        depth=depth,
        dropout=0.0,
        steps=args.steps,
        time_budget=args.time_budget,
        save_path=str(model_path),
        seed=args.seed,
        device=device,
        validation_fraction=0.0,
        checkpoint_every=max(args.steps, 1),
        learning_rate=args.learning_rate,
    )
    if not args.quiet:
        print(
            f"demo: training a tiny U-Net ({base} base channels, depth {depth}) on the synthetic "
            f"touching-discs sample on {device or 'the best device'}",
            file=sys.stderr,
        )
    start = time.perf_counter()
    result, interrupted = _run_training(args, [image], [labels], config, None, desc="demo training")
    if interrupted:
        print(f"{PROG}: interrupted; {_saved_message(str(model_path))}", file=sys.stderr)
        return EXIT_INTERRUPTED
    model, history = result
    train_seconds = time.perf_counter() - start
    if not model_path.exists():
        from .core.model_io import save_model

        save_model(model, model_path)
    start = time.perf_counter()
    with _tqdm(args, desc="demo segmentation", unit="tile") as bar:
        predicted = segment(model, test_image, device=device, progress=bar)
    predict_seconds = time.perf_counter() - start
    write_tiff(out_dir / "demo-image.tif", test_image, "YX")
    write_tiff(out_dir / "demo-labels.tif", predicted, "YX")
    write_tiff(out_dir / "demo-ground-truth.tif", test_truth, "YX")
    score = match_instances(predicted, test_truth)
    losses = (history or {}).get("loss") or [float("nan")]
    print(
        f"trained {len((history or {}).get('step') or [])} steps in {train_seconds:.1f} s "
        f"(final loss {float(np.mean(losses[-10:])):.3f}); segmented a new 256 x 256 image in "
        f"{predict_seconds:.1f} s"
    )
    print(
        f"accuracy vs ground truth: foreground IoU {score['foreground_iou']:.3f}; {score['matched']} of "
        f"{score['true']} discs found at IoU > 0.5 ({score['predicted']} predicted, F1 {score['f1']:.3f})"
    )
    print(
        f"wrote {out_dir / 'demo-image.tif'}, {out_dir / 'demo-labels.tif'} (prediction), "
        f"{out_dir / 'demo-ground-truth.tif'} and {model_path}"
    )
    print(f"next: seamless-unet info {model_path}   |   open the TIFFs in napari or Fiji")
    return 0


# -- the parser ----------------------------------------------------------------------------------------------------
def _add_common_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:1, mps or auto (default: auto = CUDA, then MPS, then CPU)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summaries")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``seamless-unet`` (exposed for documentation tools)."""
    parser = _Parser(
        prog=PROG,
        description="Train and run the original U-Net (Ronneberger et al. 2015) with seamless overlap-tile "
        "prediction. Images: TIFF files, zarr arrays, or folders of them.",
        epilog="Run 'seamless-unet demo' for a one-minute tour. Details: 'seamless-unet COMMAND --help'.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    train = commands.add_parser(
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
        default="instances",
        help="instances: each positive label is one object, touching objects are separated; "
        "semantic: label value k is class k (default: %(default)s)",
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
        type=_positive_int,
        default=None,
        help="semantic task: number of classes (default: from the labels)",
    )
    train.add_argument(
        "--size",
        choices=("auto", *NETWORK_PRESETS),
        default="auto",
        help="network size preset: "
        + ", ".join(f"{k} = {b} channels/depth {d}" for k, (b, d) in NETWORK_PRESETS.items())
        + " (the paper's); auto = paper on a GPU, small on the CPU (default: %(default)s)",
    )
    train.add_argument("--base-channels", type=_positive_int, default=None, help="override the preset's channels")
    train.add_argument("--depth", type=_positive_int, default=None, help="override the preset's depth (poolings)")
    train.add_argument("--steps", type=_positive_int, default=1000, help="training steps (default: %(default)s)")
    train.add_argument(
        "--time-budget",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="stop after this many seconds even if --steps are not done",
    )
    train.add_argument(
        "--tile-size",
        type=_positive_int,
        default=None,
        help="training tile side (a valid input size; default: automatic)",
    )
    train.add_argument("--batch-size", type=_positive_int, default=1, help="tiles per step (default: %(default)s)")
    train.add_argument("--optimizer", choices=("adam", "sgd"), default="adam", help="(default: %(default)s)")
    train.add_argument("--learning-rate", type=_positive_float, default=None, help="default: per optimizer")
    train.add_argument("--validation-images", default=None, help="validation image file or folder (optional)")
    train.add_argument("--validation-labels", default=None, help="validation label file or folder")
    train.add_argument(
        "--validation-fraction",
        type=float,
        default=None,
        help="fraction of the training data held out for validation when no validation set is "
        "given (default: the training API's)",
    )
    train.add_argument("--val-every", type=_positive_int, default=None, help="validate every N steps")
    train.add_argument("--checkpoint-every", type=_positive_int, default=None, help="save the model every N steps")
    train.add_argument("--resume", default=None, metavar="MODEL", help="continue training from this model file")
    train.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    train.add_argument("--axes", type=_axes, default=None, help="axes of the images, e.g. YX, ZYX, CYX, YXC")
    _add_common_run_options(train)

    for name, help_text, what in (
        ("predict", "write class probabilities of images", "probabilities (float32, one channel per class)"),
        ("segment", "write label images (instances or classes)", "labels (objects 1, 2, ... or class ids)"),
    ):
        sub = commands.add_parser(
            name, help=help_text, description=f"Run a model on images tile by tile and write {what}."
        )
        sub.add_argument("model", help="model file (.unet.pt)")
        sub.add_argument("inputs", nargs="+", help="image files (TIFF, zarr, npy) or folders of them")
        sub.add_argument(
            "-o",
            "--output",
            default=None,
            help="output .tif/.tiff/.zarr file (one input) or folder (default: beside each input, "
            f"named <name>_{'labels' if name == 'segment' else 'probabilities'}.tif)",
        )
        sub.add_argument(
            "--format",
            choices=("tif", "zarr"),
            default=None,
            help="file type for outputs written into a folder (default: tif, zarr for zarr inputs)",
        )
        sub.add_argument(
            "--tile-size",
            type=_tile_size,
            default=None,
            metavar="SIZE",
            help="input tile size, e.g. 572 or 572x700 (a valid size; default: largest that fits)",
        )
        sub.add_argument("--batch-size", type=_positive_int, default=None, help="tiles per forward pass")
        sub.add_argument(
            "--axes",
            type=_axes,
            default=None,
            help="axes of the input, e.g. YX, ZYX, TZCYX (default: from the file or the shape)",
        )
        sub.add_argument(
            "--precision",
            choices=("auto", "fp32", "bf16", "fp16"),
            default="auto",
            help="(default: %(default)s = bf16 on CUDA, fp32 elsewhere)",
        )
        if name == "segment":
            sub.add_argument("--min-size", type=int, default=0, help="drop objects smaller than this (pixels)")
        _add_common_run_options(sub)

    info = commands.add_parser(
        "info",
        help="show what a model file holds",
        description="Show architecture, task, classes, normalisation, training settings, "
        "training history and versions stored in a model file.",
    )
    info.add_argument("model", help="model file (.unet.pt)")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")

    demo = commands.add_parser(
        "demo",
        help="train briefly on a synthetic sample and segment it (about a minute)",
        description="Train a tiny U-Net on the bundled synthetic touching-discs image on the "
        "CPU, segment a new image of the same kind, and write the image, the predicted labels "
        "and the model into --out-dir.",
    )
    demo.add_argument("--out-dir", default="seamless-unet-demo", help="(default: %(default)s)")
    demo.add_argument("--steps", type=_positive_int, default=1500, help="training steps (default: %(default)s)")
    demo.add_argument(
        "--time-budget",
        type=_positive_float,
        default=60.0,
        metavar="SECONDS",
        help="stop training after this many seconds at the latest (default: %(default)s)",
    )
    demo.add_argument("--size", choices=tuple(NETWORK_PRESETS), default="tiny", help="(default: %(default)s)")
    demo.add_argument("--learning-rate", type=_positive_float, default=None, help="default: the training API's")
    demo.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    demo.add_argument("--device", default="cpu", help="(default: %(default)s)")
    demo.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 success, 1 error, 2 bad arguments, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "train":
            return _cmd_train(args)
        if args.command == "predict":
            return _cmd_predict(args, "probabilities")
        if args.command == "segment":
            return _cmd_predict(args, "labels")
        if args.command == "info":
            return _cmd_info(args)
        return _cmd_demo(args)
    except (UNetInputError, InvalidShapeError) as err:
        return _fail(err)
    except OSError as err:
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        return _fail(f"{err.strerror or err}{where}")
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
