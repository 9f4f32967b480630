"""Model files: one file with the weights and everything needed to predict, written atomically, loaded safely.

The file is a ``torch.save`` archive holding only tensors, strings and numbers; it is read with
``torch.load(weights_only=True)``, which refuses anything that would execute code on unpickling. Architecture,
task, normalisation, training configuration and history are stored as JSON text inside it.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from .errors import ModelFileError
from .model import UNet

FORMAT_NAME = "napari-seamless-unet"
FORMAT_VERSION = 1
SUFFIX = ".unet.pt"


def _package_version() -> str:
    # From the installed distribution's metadata, so that the core does not import the package above it.
    try:
        return importlib.metadata.version(FORMAT_NAME)
    except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


def _versions() -> dict[str, str]:
    import numpy

    return {"napari-seamless-unet": _package_version(), "torch": torch.__version__, "numpy": numpy.__version__}


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``path`` and rename it over ``path`` only on success.

    A crash, a kill or a full disk during the write leaves the previous file at ``path`` untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable where the platform allows
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def save_model(
    model: UNet,
    path: str | os.PathLike,
    *,
    metadata: dict[str, Any] | None = None,
    training_state: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` to ``path`` atomically.

    Parameters
    ----------
    model : UNet
        The network; its constructor arguments (``model.config``), task, normalisation and class names are
        stored, together with ``model.metadata`` (training configuration, history) if present.
    path : str or Path
        Destination; conventionally ends in ``.unet.pt``.
    metadata : dict, optional
        Extra JSON-serialisable information, merged over ``model.metadata``.
    training_state : dict, optional
        Optimizer state and step counters for resuming (tensors, numbers, strings only).

    Returns
    -------
    Path
        The written path.
    """
    info = dict(getattr(model, "metadata", None) or {})
    info.update(metadata or {})
    info.setdefault("created", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    info["versions"] = _versions()
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "config": json.dumps(model.config),
        "metadata": json.dumps(info, default=_json_default),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
    }
    if training_state is not None:
        payload["training_state"] = training_state
    atomic_write(path, lambda file: torch.save(payload, file))
    return Path(path)


def _json_default(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in model metadata")


def read_model_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a model file without building the network; raises :class:`ModelFileError`."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"model file {str(path)!r} does not exist; check the path or train a model first.")
    from .bioimageio_load import is_bioimageio_package

    if is_bioimageio_package(path):
        raise ModelFileError(
            f"{str(path)!r} is a bioimage.io model package, not a .unet.pt file: open it with load_model(), or "
            f"turn it into one with save_model(load_model(path), 'model.unet.pt')."
        )
    if path.is_dir():
        raise ModelFileError(f"{str(path)!r} is a folder, not a model file; pick the .unet.pt file inside it.")
    with open(path, "rb") as file:
        signature = file.read(4)
    if signature != b"PK\x03\x04":  # torch.save writes a zip archive; anything else is some other file
        raise ModelFileError(
            f"{str(path)!r} is not a napari-seamless-unet model file (not a PyTorch archive; an image or another "
            f"program's file?). Choose the .unet.pt file written by training."
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # PyTorch's own message ends with advice to load it unsafely (weights_only=False): never pass that on.
        raise ModelFileError(
            f"refused to load {str(path)!r}: it contains Python objects that could run code when loaded, "
            f"which model files of napari-seamless-unet never do. Use the .unet.pt file written by training, or, "
            f"if you trust the file's source and it holds a U-Net, turn it into a safe model file in Python: "
            f"build the UNet, load its weights, and call napari_seamless_unet.save_model(model, 'safe.unet.pt')."
        ) from None
    except Exception as err:
        raise ModelFileError(
            f"{str(path)!r} is not a readable model file (truncated, corrupt, or another program's file): {err}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        raise ModelFileError(
            f"{str(path)!r} is not a napari-seamless-unet model file (a plain PyTorch file or another tool's "
            f"checkpoint?). Train a model with napari-seamless-unet or convert the weights with save_model()."
        )
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{str(path)!r} has format version {version}, newer than this napari-seamless-unet understands "
            f"({FORMAT_VERSION}); upgrade the plugin (pip install -U napari-seamless-unet)."
        )
    try:
        payload["config"] = json.loads(payload["config"])
        payload["metadata"] = json.loads(payload.get("metadata") or "{}")
        payload["state_dict"]
    except (KeyError, TypeError, json.JSONDecodeError) as err:
        raise ModelFileError(f"{str(path)!r} is damaged: missing or unreadable entry {err}.") from None
    return payload


def load_model(path: str | os.PathLike, device: str | torch.device | None = "cpu") -> UNet:
    """Load a model written by :func:`save_model` (or a training checkpoint), in eval mode.

    Also opens a bioimage.io model package (a ``.zip``, its ``rdf.yaml`` or a folder holding one; needs the
    ``bioimageio`` extra): one written by :func:`~napari_seamless_unet.core.bioimageio.export_bioimageio`, or
    another whose weights are this library's U-Net (:mod:`~napari_seamless_unet.core.bioimageio_load`).

    Never executes code from the file. The returned network carries ``.metadata`` (training configuration,
    history, versions) and ``.source_path``.

    Raises
    ------
    ModelFileError
        Missing, truncated, foreign, unsafe or too new files, with what to do about it.
    """
    from .bioimageio_load import is_bioimageio_package, load_bioimageio

    if is_bioimageio_package(path):
        return load_bioimageio(path, device)
    payload = read_model_file(path)
    try:
        model = UNet(**payload["config"])
        model.load_state_dict(payload["state_dict"])
    except (TypeError, ValueError, RuntimeError) as err:
        raise ModelFileError(f"{str(path)!r} does not match the network it describes: {err}") from None
    model.metadata = payload["metadata"]
    model.source_path = str(path)
    if device is not None:
        model.to(device)
    return model.eval()
