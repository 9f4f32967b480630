"""napari-seamless-unet: the original U-Net (Ronneberger et al. 2015) with seamless overlap-tile prediction.

The public API is the pure compute core (numpy + torch; importing it imports neither napari nor Qt)::

    from napari_seamless_unet import UNet, TrainConfig, train, predict, segment, save_model, load_model
    from napari_seamless_unet import instances_from_probabilities  # tune instances on saved probabilities
    from napari_seamless_unet import predict_dask, segment_dask  # lazy, on any dask scheduler or cluster
    from napari_seamless_unet import export_bioimageio  # a bioimage.io model package (the [bioimageio] extra)
    from napari_seamless_unet import measure  # a table of per-object measurements (regionprops_table)
    from napari_seamless_unet import uncertainty, propose_regions  # where the model is unsure: annotate there next
    from napari_seamless_unet import region_pair  # a corrected region of a plane as a training pair
    from napari_seamless_unet import starter_models, load_starter  # models to fine-tune: train(..., init="nuclei")

The names are loaded on first use (PEP 562), so that ``import napari_seamless_unet.io`` or the command line's
``--help`` do not import torch.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING

# Transparent huge pages for torch's large CPU buffers (a documented PyTorch switch, read once, at torch's first
# allocation, so it must be set before that). Prediction allocates activations of hundreds of MB per layer, and
# touching that much fresh memory in 4 KiB pages took up to half of a narrow network's forward pass: 16 channels
# on a 2236x2236 tile, 6.3-7.0 s without, 3.7-4.5 s with (benchmarks/README.md, "Prediction"). A value the user
# set, 0 included, is kept; a process that imported torch and allocated before importing us keeps its setting.
if sys.platform.startswith("linux"):
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

try:
    from ._version import __version__
except ImportError:  # pragma: no cover - running from a source tree without an install
    __version__ = "0.0.0+unknown"

if TYPE_CHECKING:
    from .core.bioimageio import export_bioimageio
    from .core.dask_predict import predict_dask
    from .core.dask_segment import segment_dask
    from .core.errors import Cancelled, InvalidShapeError, ModelFileError, UNetInputError
    from .core.instances import instances_from_probabilities
    from .core.measure import measure
    from .core.model import UNet
    from .core.model_io import load_model, save_model
    from .core.normalization import Normalization
    from .core.predict import choose_tile_shape, iter_predict, iter_segment, predict, segment
    from .core.regions import IGNORE, Region, propose_regions, region_pair
    from .core.shapes import halo, output_shape, valid_input_shape
    from .core.starters import load_starter, starter_models
    from .core.train import TrainConfig, TrainResult, iter_train, train
    from .core.uncertainty import iter_uncertainty, uncertainty

# public name -> the module (relative to this package) that defines it
_LAZY = {
    "export_bioimageio": ".core.bioimageio",
    "predict_dask": ".core.dask_predict",
    "segment_dask": ".core.dask_segment",
    "Cancelled": ".core.errors",
    "InvalidShapeError": ".core.errors",
    "ModelFileError": ".core.errors",
    "UNetInputError": ".core.errors",
    "instances_from_probabilities": ".core.instances",
    "measure": ".core.measure",
    "UNet": ".core.model",
    "load_model": ".core.model_io",
    "save_model": ".core.model_io",
    "Normalization": ".core.normalization",
    "choose_tile_shape": ".core.predict",
    "iter_predict": ".core.predict",
    "iter_segment": ".core.predict",
    "predict": ".core.predict",
    "segment": ".core.predict",
    "IGNORE": ".core.regions",
    "Region": ".core.regions",
    "propose_regions": ".core.regions",
    "region_pair": ".core.regions",
    "load_starter": ".core.starters",
    "starter_models": ".core.starters",
    "iter_uncertainty": ".core.uncertainty",
    "uncertainty": ".core.uncertainty",
    "halo": ".core.shapes",
    "output_shape": ".core.shapes",
    "valid_input_shape": ".core.shapes",
    "TrainConfig": ".core.train",
    "TrainResult": ".core.train",
    "iter_train": ".core.train",
    "train": ".core.train",
}

__all__ = [
    "IGNORE",
    "Cancelled",
    "InvalidShapeError",
    "ModelFileError",
    "Normalization",
    "Region",
    "TrainConfig",
    "TrainResult",
    "UNet",
    "UNetInputError",
    "__version__",
    "choose_tile_shape",
    "export_bioimageio",
    "halo",
    "instances_from_probabilities",
    "iter_predict",
    "iter_segment",
    "iter_train",
    "iter_uncertainty",
    "load_model",
    "load_starter",
    "measure",
    "output_shape",
    "predict",
    "predict_dask",
    "propose_regions",
    "region_pair",
    "save_model",
    "segment",
    "segment_dask",
    "starter_models",
    "train",
    "uncertainty",
    "valid_input_shape",
]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
