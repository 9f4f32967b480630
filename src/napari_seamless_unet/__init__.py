"""napari-seamless-unet: the original U-Net (Ronneberger et al. 2015) with seamless overlap-tile prediction.

The public API is the pure compute core (numpy + torch; importing it imports neither napari nor Qt)::

    from napari_seamless_unet import UNet, TrainConfig, train, predict, segment, save_model, load_model
"""

from __future__ import annotations

try:
    from ._version import __version__
except ImportError:  # pragma: no cover - running from a source tree without an install
    __version__ = "0.0.0+unknown"

from .core.errors import Cancelled, InvalidShapeError, ModelFileError, UNetInputError
from .core.model import UNet
from .core.model_io import load_model, save_model
from .core.normalization import Normalization
from .core.predict import choose_tile_shape, iter_predict, iter_segment, predict, segment
from .core.shapes import halo, output_shape, valid_input_shape
from .core.train import TrainConfig, TrainResult, iter_train, train

__all__ = [
    "Cancelled",
    "InvalidShapeError",
    "ModelFileError",
    "Normalization",
    "TrainConfig",
    "TrainResult",
    "UNet",
    "UNetInputError",
    "__version__",
    "choose_tile_shape",
    "halo",
    "iter_predict",
    "iter_segment",
    "iter_train",
    "load_model",
    "output_shape",
    "predict",
    "save_model",
    "segment",
    "train",
    "valid_input_shape",
]
