"""The pieces of a bioimage.io package that :func:`~napari_seamless_unet.core.bioimageio.export_bioimageio`
assembles: test tensors made by this library's :func:`~napari_seamless_unet.core.predict.predict`, the cover, the
TorchScript weights, the axes, and the texts (README, training data, environment)."""

from __future__ import annotations

import json
import string
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import axes as ax
from .errors import UNetInputError
from .model import SoftmaxUNet, UNet
from .model_io import FORMAT_NAME, FORMAT_VERSION, _json_default, _package_version
from .normalization import Normalization

# The test input's output is at most this large per axis (Y, X; Z, Y, X in 3D): small files, a test in seconds.
TEST_OUTPUT_2D = (128, 128)
TEST_OUTPUT_3D = (16, 64, 64)
# what the package's config keeps of the training history (not the per-step losses)
HISTORY_KEPT = ("best_step", "best_score", "stopped", "stop_reason", "train_planes", "val_planes", "elapsed_seconds")
NAME_CHARACTERS = set(string.ascii_letters + string.digits + "_+- ()")


def check_name(name: str) -> None:
    name = str(name)
    bad = sorted(set(name) - NAME_CHARACTERS)
    if not 5 <= len(name) <= 128 or bad:
        raise UNetInputError(
            f"bioimage.io model names have 5 to 128 characters among letters, digits, spaces and _+-(); got "
            f"{name!r}" + (f" (not allowed: {''.join(bad)!r})" if bad else "")
        )


def authors(spec, people: Sequence[str | dict[str, Any]]) -> list:
    """``Author`` entries from names or dicts (name, affiliation, email, orcid)."""
    if isinstance(people, (str, dict)):
        people = [people]
    found = []
    for person in people or ():
        entry = {"name": person} if isinstance(person, str) else dict(person)
        if not str(entry.get("name", "")).strip() or "/" in str(entry["name"]):
            raise UNetInputError(f"an author needs a name without '/', got {person!r}")
        try:
            found.append(spec.Author(**entry))
        except ValueError as err:
            raise UNetInputError(f"invalid author {person!r}: {err}") from None
    if not found:
        raise UNetInputError("a bioimage.io package needs at least one author: who trained the model")
    return found


# -- test tensors -------------------------------------------------------------------------------------------
def _synthetic(net: UNet, shape: tuple[int, ...]) -> np.ndarray:
    from .synthetic import touching_discs, touching_nuclei_3d

    if net.ndim == 2:
        image = touching_discs(shape=tuple(shape), n_objects=max(4, shape[0] * shape[1] // 900), seed=0)[0]
    else:
        spacing = tuple(net.voxel_size) if net.voxel_size is not None else (1.0, 1.0, 1.0)
        image = touching_nuclei_3d(shape=tuple(shape), spacing=spacing, seed=0)[0]
    return np.repeat(image[np.newaxis].astype(np.float32), net.in_channels, axis=0)


def make_test_input(net: UNet, image, axes: str | None) -> np.ndarray:
    """The test input ``(1, C, [Z,] Y, X)`` float32: the centre of ``image`` (its first plane or volume) at a
    valid input size, no larger than needed for an output of :data:`TEST_OUTPUT_2D` (or ``_3D``); an image
    smaller than the network's smallest input is mirrored up to it."""
    geometry = net.geometry
    cap = geometry.input_shape_for_output(TEST_OUTPUT_2D if net.ndim == 2 else TEST_OUTPUT_3D)
    if image is None:
        return _synthetic(net, cap)[np.newaxis]
    image = np.asarray(image) if not hasattr(image, "shape") else image
    ax.check_image_dtype(image, "the test image")
    axes = ax.resolve_axes(image.shape, axes, net.in_channels, "the test image")
    unit = ax.unit_axes(net.ndim)
    if net.ndim == 3 and "Z" not in axes:
        raise UNetInputError(f"the model is a 3D network; the test image (axes {axes!r}) needs a Z axis")
    plane = dict.fromkeys(ax.stack_axes(axes, unit), 0)
    block = np.asarray(image[ax.image_index(axes, plane, slice(None), slice(None))])
    block = ax.to_cyx(block, axes, unit).astype(np.float32)
    if not np.all(np.isfinite(block)):
        raise UNetInputError("the test image contains NaN or Inf values; replace them first (numpy.nan_to_num)")
    pad = [(0, 0)] + [(0, max(0, m - n)) for m, n in zip(geometry.min_input_shape, block.shape[1:])]
    if any(p[1] for p in pad):
        block = np.pad(block, pad, mode="symmetric")
    shape = geometry.valid_input_shape([min(n, c) for n, c in zip(block.shape[1:], cap)], "down")
    start = [(n - s) // 2 for n, s in zip(block.shape[1:], shape)]
    crop = tuple(slice(a, a + s) for a, s in zip(start, shape))
    return np.ascontiguousarray(block[(slice(None), *crop)])[np.newaxis]


def make_test_output(net: UNet, test_input: np.ndarray) -> np.ndarray:
    """This library's :func:`~napari_seamless_unet.core.predict.predict` of the test input, cropped by the halo
    to what one pass of the network gives: ``(1, num_classes, *spatial - 2 * halo)`` float32."""
    from .predict import predict

    image_axes = "C" + ax.unit_axes(net.ndim)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        probabilities = predict(net, test_input[0], axes=image_axes, device="cpu", precision="fp32")
    for warning in caught:
        if "almost all one value" in str(warning.message):
            # prediction then scales from the other pixels' percentile, which scale_range cannot say
            raise UNetInputError(
                f"the test image is almost all one value ({warning.message}); bioimage.io's scale_range would "
                f"normalise it differently. Give a test image with objects over a sizeable part of it."
            )
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    crop = tuple(slice(h, n - h) for h, n in zip(net.geometry.halo, probabilities.shape[1:]))
    return np.ascontiguousarray(probabilities[(slice(None), *crop)], dtype=np.float32)[np.newaxis]


# -- weights and pictures -------------------------------------------------------------------------------------
def write_torchscript(path: Path, net: UNet) -> None:
    """``torch.jit.trace`` of :class:`SoftmaxUNet` with ``net``'s weights, checked against the network itself at
    the smallest input and a larger one with a batch of two (a trace that kept one size would fail here)."""
    wrapped = SoftmaxUNet(**net.config)
    wrapped.load_state_dict(net.state_dict())
    wrapped.eval()
    geometry = net.geometry
    size = lambda n: [m + n * s for m, s in zip(geometry.min_input_shape, geometry.step)]  # noqa: E731
    generator = torch.Generator().manual_seed(0)
    sample = lambda batch, n: torch.rand(batch, net.in_channels, *size(n), generator=generator)  # noqa: E731
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notes and the tracer's notes on shape checks
        traced = torch.jit.trace(wrapped, sample(1, 1), check_trace=False)
        for batch, n in ((1, 0), (2, 2)):
            x = sample(batch, n)
            if not torch.allclose(traced(x), wrapped(x), atol=1e-5):
                raise RuntimeError(f"the TorchScript trace differs from the network at input size {size(n)}")
        torch.jit.save(traced, str(path))


def write_samples(folder: Path, test_input: np.ndarray, test_output: np.ndarray) -> None:
    """The test tensors without their batch axis as TIFF files: the sample tensors an image viewer opens."""
    import tifffile

    tifffile.imwrite(folder / "sample_input.tif", test_input[0])
    tifffile.imwrite(folder / "sample_output.tif", test_output[0])


def write_cover(path: Path, net: UNet, test_input: np.ndarray, test_output: np.ndarray) -> None:
    """A 2:1 cover: the test input's centre (grey) beside the foreground probability (yellow on black)."""
    import imageio.v3 as iio

    halo = net.geometry.halo
    image = test_input[0, 0][tuple(slice(h, n - h) for h, n in zip(halo, test_input.shape[2:]))]
    foreground = 1.0 - test_output[0, 0]
    if net.ndim == 3:
        image, foreground = image[image.shape[0] // 2], foreground[foreground.shape[0] // 2]
    side = min(image.shape)
    square = tuple(slice((n - side) // 2, (n - side) // 2 + side) for n in image.shape)
    image, foreground = image[square], foreground[square]
    lo, hi = np.percentile(image, [1, 99.8])
    grey = np.clip((image - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    left = np.stack([grey] * 3, axis=-1)
    right = np.stack([foreground, foreground, np.zeros_like(foreground)], axis=-1)
    cover = np.concatenate([left, right], axis=1)
    zoom = max(1, 256 // side)
    cover = np.repeat(np.repeat(cover, zoom, axis=0), zoom, axis=1)
    iio.imwrite(path, (np.clip(cover, 0, 1) * 255).astype(np.uint8))


# -- axes ---------------------------------------------------------------------------------------------------
def axes(spec, net: UNet, input_id: str) -> tuple[list, list]:
    """Input axes (batch, channel, space with ``min + n * step`` sizes) and output axes (space sized by
    reference to the input, ``offset = -2 * halo``: the model crops its halo itself)."""
    geometry = net.geometry
    names = "zyx"[-net.ndim :]
    scales = list(net.voxel_size) if net.voxel_size is not None else [1.0] * net.ndim
    unit = "micrometer" if net.voxel_size is not None else None
    inputs = [spec.BatchAxis(), spec.ChannelAxis(channel_names=[f"channel{i}" for i in range(net.in_channels)])]
    outputs = [spec.BatchAxis(), spec.ChannelAxis(channel_names=list(net.class_names))]
    for name, low, step, halo, scale in zip(names, geometry.min_input_shape, geometry.step, geometry.halo, scales):
        axis = spec.AxisId(name)
        inputs.append(
            spec.SpaceInputAxis(
                id=axis, size=spec.ParameterizedSize(min=int(low), step=int(step)), unit=unit, scale=scale
            )
        )
        reference = spec.SizeReference(tensor_id=spec.TensorId(input_id), axis_id=axis, offset=-2 * int(halo))
        outputs.append(
            spec.SpaceOutputAxis(
                id=axis,
                size=reference,
                unit=unit,
                scale=scale,
                description=f"the input's {name} less the halo of {halo} on each side",
            )
        )
    return inputs, outputs


# -- texts --------------------------------------------------------------------------------------------------
def normalization_text(normalization: Normalization) -> str:
    if normalization.mode == "percentile":
        return (
            f"each channel of each sample scaled so that its {normalization.low:g} and {normalization.high:g} "
            f"percentiles over the spatial axes become 0 and 1 (not clipped)"
        )
    if normalization.mode == "minmax":
        return "each channel of each sample scaled from its minimum and maximum to 0 and 1"
    return "intensities passed to the network as they are (float32)"


def tags(net: UNet, extra: Sequence[str]) -> list[str]:
    kind = "instance-segmentation" if net.task == "instances" else "semantic-segmentation"
    found = ["unet", "segmentation", kind, f"{net.ndim}d", "pytorch", "napari-seamless-unet", *map(str, extra)]
    return list(dict.fromkeys(found))


def dataset_name(name: str) -> str:
    return f"Training data of {name}"[:128]


def training_text(net: UNet, meta: dict[str, Any]) -> str:
    config = meta.get("train_config") or {}
    if not config:
        return "Not recorded with the model: describe the training images with export_bioimageio(training_data=...)."
    history = meta.get("history") or {}
    steps = history.get("step") or []
    parts = [
        f"Trained with napari-seamless-unet for the {config.get('task', net.task)} task on images with axes "
        f"{config.get('axes') or 'inferred from their shapes'}",
        f"{history['train_planes']} training and {history.get('val_planes', 0)} validation planes or volumes"
        if history.get("train_planes")
        else None,
        f"{steps[-1]} optimisation steps" if steps else None,
        f"tiles of {config['tile_size']} pixels" if config.get("tile_size") else None,
        f"voxel size {tuple(net.voxel_size)} micrometres" if net.voxel_size is not None else None,
        f"normalisation: {normalization_text(net.normalization)}",
    ]
    return "; ".join(p for p in parts if p) + "."


def readme(net: UNet, name: str, description: str) -> str:
    geometry = net.geometry
    axes_text = ", ".join("zyx"[-net.ndim :])
    instances = (
        "\nThe model is an instance model: objects are the connected components of the foreground probability "
        "(a three-class model: of the interior class, grown into its borders). napari-seamless-unet's `segment` "
        "does this; other consumers show the probabilities.\n"
        if net.task == "instances"
        else ""
    )
    return f"""# {name}

{description}

A U-Net (Ronneberger et al. 2015) with unpadded convolutions, made with
[napari-seamless-unet](https://pypi.org/project/napari-seamless-unet/).

## Input and output

- Input `raw`: batch, channel ({net.in_channels}), {axes_text}; sizes {list(geometry.min_input_shape)} + n x
  {list(geometry.step)}. Preprocessing: {normalization_text(net.normalization)}.
- Output `probabilities`: batch, class ({", ".join(net.class_names)}), {axes_text}; the input's centre, smaller
  by the halo {list(geometry.halo)} on each side. To segment a large image seamlessly, tile it with an overlap
  of twice the halo and mirror its borders by the halo.
{instances}
## Validation

The package's test output is napari-seamless-unet's overlap-tile prediction of its test input. To validate the
model on your images, segment a few annotated images that were not used in training and compare (IoU per
class; average precision of the objects for an instance model): `napari_seamless_unet.core.metrics`.

## Citation

Ronneberger, O., Fischer, P., Brox, T. (2015). U-Net: Convolutional Networks for Biomedical Image Segmentation.
MICCAI 2015. doi:10.1007/978-3-319-24574-4_28
"""


def environment() -> str:
    version = _package_version()
    pin = "" if version == "unknown" else f"=={version}"
    return f"""name: napari-seamless-unet
channels:
  - conda-forge
  - nodefaults
dependencies:
  - python>=3.10
  - pytorch>=2.1
  - pip
  - pip:
      - napari-seamless-unet{pin}
"""


def bioimageio_config(spec, net: UNet, meta: dict[str, Any]):
    config, history = meta.get("train_config") or {}, meta.get("history") or {}
    training = spec.TrainingDetails(
        training_preprocessing=normalization_text(net.normalization)
        + "; elastic deformation, flips, rotations and grey-value changes of the tiles",
        training_batch_size=config.get("batch_size"),
        initial_learning_rate=config.get("learning_rate"),
        learning_rate_schedule=config.get("lr_schedule"),
        loss_function="pixel-wise cross entropy weighted by the U-Net weight map (Ronneberger et al. 2015)",
        optimizer=config.get("optimizer"),
        regularization=f"dropout {net.dropout_p:g}" if net.dropout_p else None,
        training_duration=history["elapsed_seconds"] / 3600 if history.get("elapsed_seconds") else None,
    )
    return spec.BioimageioConfig(
        architecture_type="U-Net (unpadded convolutions)",
        architecture_description=(
            f"{net.ndim}D U-Net, {net.depth} poolings, {net.base_channels} feature maps at the first level, "
            f"unpadded convolutions and cropped skip connections; halo {list(net.geometry.halo)}"
        ),
        task="instance segmentation" if net.task == "instances" else "semantic segmentation",
        model_parameter_count=int(sum(p.numel() for p in net.parameters())),
        training=training,
    )


def own_config(net: UNet, meta: dict[str, Any]) -> dict[str, Any]:
    """What napari-seamless-unet reads back besides the architecture: JSON values only."""
    history = meta.get("history") or {}
    kept = {
        "train_config": meta.get("train_config"),
        "versions": meta.get("versions"),
        "created": meta.get("created"),
        "history": {k: history.get(k) for k in HISTORY_KEPT if k in history} if history else None,
    }
    return json.loads(
        json.dumps(
            {
                "format": FORMAT_NAME,
                "format_version": FORMAT_VERSION,
                "task": net.task,
                "halo": list(net.geometry.halo),
                "metadata": {k: v for k, v in kept.items() if v is not None},
            },
            default=_json_default,
        )
    )
