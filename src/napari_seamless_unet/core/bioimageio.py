"""Export a model as a bioimage.io model package (spec 0.5), written through ``bioimageio.spec``'s own classes.

The package holds the network twice: ``pytorch_state_dict`` weights whose architecture is this library's
:class:`~napari_seamless_unet.core.model.SoftmaxUNet` (the U-Net with a softmax over the classes) with the
model's constructor arguments, and ``torchscript`` weights of the same network. Its input is ``(batch, channel,
[z,] y, x)`` with sizes ``min + n * step``, the network's valid input sizes; its output is the class
probabilities, smaller by the halo on each side (a size reference to the input with offset ``-2 * halo``), so a
consumer that tiles knows the overlap the tiles need. The preprocessing is the model's normalisation
(``scale_range`` per sample and channel over the spatial axes); the test tensors are this library's own
:func:`~napari_seamless_unet.core.predict.predict` of the test image.

``bioimageio.spec`` and ``bioimageio.core`` are an extra (``pip install "napari-seamless-unet[bioimageio]"``),
imported only here, inside the functions. :mod:`.bioimageio_load` reads such packages back.
"""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import bioimageio_files as files
from .errors import UNetInputError
from .model import SoftmaxUNet, UNet

__all__ = ["INPUT_ID", "OUTPUT_ID", "export_bioimageio", "require_bioimageio"]

INPUT_ID = "raw"
OUTPUT_ID = "probabilities"
PAPER = ("Ronneberger, O., Fischer, P., Brox, T. (2015). U-Net: Convolutional Networks for Biomedical Image "
         "Segmentation. MICCAI 2015, LNCS 9351, 234-241.")  # fmt: skip
PAPER_DOI = "10.1007/978-3-319-24574-4_28"
INSTALL_HINT = 'pip install "napari-seamless-unet[bioimageio]"'


def require_bioimageio():
    """``bioimageio.spec``'s model description module (v0_5), or a :class:`UNetInputError` saying what to install."""
    try:
        from bioimageio.spec.model import v0_5
    except ImportError as err:
        raise UNetInputError(
            f"bioimage.io packages need bioimageio.spec and bioimageio.core, which are not installed ({err}); "
            f"install them with: {INSTALL_HINT}"
        ) from None
    return v0_5


def export_bioimageio(
    model: UNet,
    path: str | os.PathLike,
    *,
    name: str,
    description: str,
    authors: Sequence[str | dict[str, Any]],
    license: str = "CC-BY-4.0",
    test_image=None,
    test_axes: str | None = None,
    training_data: str | None = None,
    tags: Sequence[str] = (),
    documentation: str | None = None,
) -> Path:
    """Write ``model`` as a bioimage.io model package (a ``.zip``) that bioimage.io, deepImageJ, ilastik and
    ``bioimageio.core`` can run.

    Parameters
    ----------
    model : UNet
        A (trained) network; it is copied to the CPU, the caller's model is not changed.
    path : str or Path
        The package to write, conventionally ``something.zip``; written atomically.
    name : str
        The model's name on bioimage.io (5 to 128 letters, digits, spaces and ``_+-()``).
    description : str
        One or two sentences: what the model segments, in which images.
    authors : sequence of str or dict
        Who trained the model: names, or dicts with ``name`` and optionally ``affiliation``, ``email``,
        ``orcid``.
    license : str
        An SPDX licence identifier for the weights (``CC-BY-4.0``, ``MIT``, ``BSD-3-Clause``, ...).
    test_image : array-like, optional
        An image like those the model is for (axes ``test_axes``, as :func:`~napari_seamless_unet.predict` takes
        them; the first plane or volume of a stack is used). Its centre, at most about 256 pixels a side, becomes
        the package's test input, and this library's prediction of it the test output. Default: a synthetic
        image of touching nuclei.
    test_axes : str, optional
        Axes of ``test_image``; default inferred from its shape.
    training_data : str, optional
        What the model was trained on (source, modality, how many images); stored as the package's training
        data description. Default: what the model's training metadata records.
    tags : sequence of str
        Extra keywords (``"nuclei"``, ``"fluorescence-light-microscopy"``, ...).
    documentation : str, optional
        Markdown for the package's README (a ``# Validation`` section is recommended); default: generated.

    Returns
    -------
    Path
        The written package.

    Raises
    ------
    UNetInputError
        Missing extra, invalid name, licence or author, an unusable test image, or a package that
        ``bioimageio.spec`` does not accept (its message included).
    """
    spec = require_bioimageio()
    if not isinstance(model, UNet):
        raise UNetInputError(f"export_bioimageio needs a napari-seamless-unet UNet, got {type(model).__name__}")
    files.check_name(name)
    if not str(description).strip():
        raise UNetInputError("the package needs a description: a sentence on what the model segments, in which images")
    people = files.authors(spec, authors)
    net = copy.deepcopy(model).cpu().eval()
    test_input = files.make_test_input(net, test_image, test_axes)
    test_output = files.make_test_output(net, test_input)
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="seamless-unet-bioimageio-") as tmp:
        folder = Path(tmp)
        np.save(folder / "test_input.npy", test_input)
        np.save(folder / "test_output.npy", test_output)
        files.write_samples(folder, test_input, test_output)
        files.write_cover(folder / "cover.png", net, test_input, test_output)
        torch.save({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, folder / "weights.pt")
        files.write_torchscript(folder / "weights.torchscript.pt", net)
        (folder / "environment.yaml").write_text(files.environment())
        (folder / "README.md").write_text(documentation or files.readme(net, name, description))
        try:
            descr = _description(
                spec, net, folder, name=name, description=description, authors=people, license=license,
                training_data=training_data, tags=tags,
            )  # fmt: skip
        except ValueError as err:  # pydantic's ValidationError: a licence it does not know, a too long text...
            if isinstance(err, UNetInputError):
                raise
            raise UNetInputError(f"bioimageio.spec refused the package description: {err}") from None
        _save_package(descr, path)
    return path


def _save_package(descr, path: Path) -> None:
    """Validate the description, then write the package beside ``path`` and rename it over ``path``."""
    from bioimageio.spec import save_bioimageio_package

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".zip", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydantic's serialisation notes on the spec's own fields
            save_bioimageio_package(descr, output_path=Path(tmp))
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(err, (ValueError, TypeError)) and not isinstance(err, UNetInputError):
            raise UNetInputError(f"bioimageio.spec refused the package: {err}") from None
        raise


def _description(spec, net: UNet, folder: Path, *, name, description, authors, license, training_data, tags):
    """The ``ModelDescr`` of the files in ``folder``."""
    from bioimageio.spec.dataset.v0_3 import DatasetDescr

    axes_in, axes_out = files.axes(spec, net, INPUT_ID)
    normalization = net.normalization
    preprocessing = []
    space = [spec.AxisId(a) for a in "zyx"[-net.ndim :]]
    if normalization.mode == "percentile":
        if normalization.high <= 1:
            raise UNetInputError(
                f"the model's upper percentile {normalization.high} is not expressible in a bioimage.io package "
                f"(scale_range needs a maximum percentile above 1)"
            )
        kwargs = spec.ScaleRangeKwargs(axes=space, min_percentile=normalization.low, max_percentile=normalization.high)
        preprocessing.append(spec.ScaleRangeDescr(kwargs=kwargs))
    elif normalization.mode == "minmax":
        preprocessing.append(spec.ScaleRangeDescr(kwargs=spec.ScaleRangeKwargs(axes=space)))
    test_file = lambda file: spec.FileDescr(source=folder / file)  # noqa: E731
    inputs = [
        spec.InputTensorDescr(
            id=spec.TensorId(INPUT_ID),
            description="the image, normalised by the preprocessing (the model's own normalisation)",
            axes=axes_in,
            test_tensor=test_file("test_input.npy"),
            sample_tensor=test_file("sample_input.tif"),
            data=spec.IntervalOrRatioDataDescr(type="float32"),
            preprocessing=preprocessing,
        )
    ]
    outputs = [
        spec.OutputTensorDescr(
            id=spec.TensorId(OUTPUT_ID),
            description="class probabilities (softmax), the input's centre: smaller by the halo on each side",
            axes=axes_out,
            test_tensor=test_file("test_output.npy"),
            sample_tensor=test_file("sample_output.tif"),
            data=spec.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
        )
    ]
    version = spec.Version(torch.__version__.split("+")[0])
    weights = spec.WeightsDescr(
        pytorch_state_dict=spec.PytorchStateDictWeightsDescr(
            source=folder / "weights.pt",
            architecture=spec.ArchitectureFromLibraryDescr(
                callable=spec.Identifier(SoftmaxUNet.__name__),
                import_from=SoftmaxUNet.__module__,
                kwargs=net.config,
            ),
            pytorch_version=version,
            dependencies=spec.FileDescr(source=folder / "environment.yaml"),
        ),
        torchscript=spec.TorchscriptWeightsDescr(
            source=folder / "weights.torchscript.pt",
            pytorch_version=version,
            parent="pytorch_state_dict",
            comment="torch.jit.trace of the pytorch_state_dict network, checked at two input sizes",
        ),
    )
    meta = getattr(net, "metadata", None) or {}
    return spec.ModelDescr(
        name=name,
        description=str(description).strip(),
        authors=authors,
        cite=[spec.CiteEntry(text=PAPER, doi=spec.Doi(PAPER_DOI))],
        license=spec.LicenseId(license) if isinstance(license, str) else license,
        tags=files.tags(net, tags),
        documentation=test_file("README.md"),
        covers=[test_file("cover.png")],
        inputs=inputs,
        outputs=outputs,
        weights=weights,
        training_data=DatasetDescr(
            name=files.dataset_name(name),
            description=training_data or files.training_text(net, meta),
            authors=authors,
            tags=["napari-seamless-unet", "training-data"],
        ),
        config=spec.Config(
            bioimageio=files.bioimageio_config(spec, net, meta),
            **{"napari_seamless_unet": files.own_config(net, meta)},
        ),
    )
