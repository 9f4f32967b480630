"""Open a bioimage.io model package as a :class:`~napari_seamless_unet.core.model.UNet`.

:func:`~napari_seamless_unet.core.model_io.load_model` calls :func:`load_bioimageio` for a ``.zip`` package, its
``rdf.yaml`` (or ``bioimageio.yaml``) or a folder holding one. Only the ``pytorch_state_dict`` weights are read,
with ``torch.load(weights_only=True)``: no pickled code and no TorchScript runs, and no architecture code is
imported from the package. The network is rebuilt from the constructor arguments that
:func:`~napari_seamless_unet.core.bioimageio.export_bioimageio` records; a package from elsewhere opens where
its state dict is this library's U-Net (the architecture is then read off the weights' shapes).
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Any

import torch

from .bioimageio import OUTPUT_ID, require_bioimageio
from .errors import ModelFileError
from .model import UNet
from .normalization import Normalization

__all__ = ["RDF_NAMES", "is_bioimageio_package", "load_bioimageio"]

RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")
OUR_CALLABLES = ("UNet", "SoftmaxUNet")


def _is_rdf_name(name: str) -> bool:
    return name in RDF_NAMES or name.endswith(".bioimageio.yaml")


def is_bioimageio_package(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a bioimage.io package: a zip with an ``rdf.yaml`` at its top, such a file itself, or a
    folder holding one. (A ``torch.save`` file is a zip too, but its entries lie in a folder.)"""
    path = Path(path)
    if path.is_dir():
        return any((path / name).is_file() for name in RDF_NAMES)
    if _is_rdf_name(path.name):
        return path.is_file()
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return any(_is_rdf_name(name) for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def load_bioimageio(path: str | os.PathLike, device: str | torch.device | None = "cpu") -> UNet:
    """The U-Net of a bioimage.io package, in eval mode, with ``.metadata`` and ``.source_path``.

    Raises
    ------
    ModelFileError
        An invalid package, one without ``pytorch_state_dict`` weights, or one whose network is not a U-Net
        this library can rebuild (then run it with ``bioimageio.core`` or deepImageJ instead).
    UNetInputError
        ``bioimageio.spec`` is not installed (the message says how to install it).
    """
    spec = require_bioimageio()
    from bioimageio.spec import InvalidDescr, load_description

    folder = Path(path)
    source = next((folder / n for n in RDF_NAMES if (folder / n).is_file()), folder) if folder.is_dir() else folder
    descr = load_description(source, format_version="latest", perform_io_checks=False)
    if isinstance(descr, InvalidDescr) or not isinstance(descr, spec.ModelDescr):
        problems = "; ".join(
            f"{'.'.join(map(str, e.loc))}: {e.msg}" for d in descr.validation_summary.details for e in d.errors
        )
        raise ModelFileError(f"{str(path)!r} is not a valid bioimage.io model package: {problems[:600]}")
    weights = descr.weights.pytorch_state_dict
    if weights is None:
        formats = ", ".join(descr.weights.available_formats) or "none"
        raise ModelFileError(
            f"{str(path)!r} has no pytorch_state_dict weights (it has: {formats}); napari-seamless-unet reads only "
            f"those, never TorchScript or pickled code. Run this package with bioimageio.core or deepImageJ."
        )
    state_dict = _read_state_dict(weights, path)
    config, metadata = _config(spec, descr, weights, state_dict, path)
    try:
        model = UNet(**config)
        model.load_state_dict(state_dict)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ModelFileError(
            f"{str(path)!r}: the weights do not match the U-Net the package describes: {err}"
        ) from None
    metadata["bioimageio"] = {"name": descr.name, "format_version": descr.format_version, "source": str(path)}
    model.metadata = metadata
    model.source_path = str(path)
    if device is not None:
        model.to(device)
    return model.eval()


def _read_state_dict(weights, path) -> dict[str, torch.Tensor]:
    try:
        data = weights.get_reader().read()
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling refused, truncated file, hash mismatch...
        raise ModelFileError(f"could not read the pytorch_state_dict weights of {str(path)!r} safely: {err}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(f"the pytorch_state_dict weights of {str(path)!r} are not a state dict of tensors")
    return state


def _config(spec, descr, weights, state_dict, path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The UNet's constructor arguments and the metadata to attach."""
    ours = (descr.config.model_extra or {}).get("napari_seamless_unet") or {}
    metadata = dict(ours.get("metadata") or {}) if isinstance(ours, dict) else {}
    arch = weights.architecture
    if (
        isinstance(arch, spec.ArchitectureFromLibraryDescr)
        and arch.import_from.split(".")[0] == "napari_seamless_unet"
        and str(arch.callable) in OUR_CALLABLES
    ):
        return dict(arch.kwargs), metadata
    config = infer_config(state_dict, _voxel_size(descr))
    if config is None:
        where = getattr(arch, "import_from", None) or getattr(arch, "source", "the package")
        raise ModelFileError(
            f"{str(path)!r} holds a network ({arch.callable} from {where}) that is not a napari-seamless-unet "
            f"U-Net: its weights do not fit the valid-convolution U-Net of Ronneberger et al. Run it with "
            f"bioimageio.core or deepImageJ instead."
        )
    config["normalization"] = _normalization(spec, descr.inputs[0])
    names = _class_names(descr, config["num_classes"])
    if names:
        config["class_names"] = names
    return config, metadata


def infer_config(state_dict: dict[str, torch.Tensor], voxel_size=None) -> dict[str, Any] | None:
    """Constructor arguments of the UNet whose state dict ``state_dict`` is, or None where none fits."""
    first, head = state_dict.get("down.0.0.weight"), state_dict.get("head.weight")
    if first is None or head is None or first.ndim not in (4, 5):
        return None
    depth = 0
    while f"down.{depth}.0.weight" in state_dict:
        depth += 1
    ndim = first.ndim - 2
    config: dict[str, Any] = {
        "in_channels": int(first.shape[1]),
        "num_classes": int(head.shape[0]),
        "base_channels": int(first.shape[0]),
        "depth": depth,
        "dropout": 0.0,
        "batch_norm": "down.0.1.running_mean" in state_dict,
        "ndim": ndim,
    }
    candidates = [voxel_size, None] if ndim == 3 and voxel_size is not None else [None]
    for spacing in candidates:
        try:
            shapes = {k: v.shape for k, v in UNet(**config, voxel_size=spacing).state_dict().items()}
        except (TypeError, ValueError):
            continue
        if shapes == {k: v.shape for k, v in state_dict.items()}:
            return {**config, "voxel_size": list(spacing) if spacing is not None else None}
    return None


def _voxel_size(descr) -> list[float] | None:
    axes = [a for a in descr.inputs[0].axes if a.type == "space"]
    if len(axes) != 3 or len({a.scale for a in axes}) == 1:
        return None
    return [float(a.scale) for a in axes]


def _normalization(spec, tensor) -> dict[str, Any]:
    """The input's ``scale_range`` preprocessing as a :class:`Normalization` (none where it has none)."""
    for step in tensor.preprocessing:
        if isinstance(step, spec.ScaleRangeDescr):
            low, high = float(step.kwargs.min_percentile), float(step.kwargs.max_percentile)
            if (low, high) == (0.0, 100.0):
                return Normalization("minmax").to_dict()
            return Normalization("percentile", low, high).to_dict()
    return Normalization("none").to_dict()


def _class_names(descr, num_classes: int) -> list[str] | None:
    output = next((t for t in descr.outputs if str(t.id) == OUTPUT_ID), descr.outputs[0])
    for axis in output.axes:
        if axis.type == "channel" and len(axis.channel_names) == num_classes:
            return [str(n) for n in axis.channel_names]
    return None
