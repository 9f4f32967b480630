"""Where the model is unsure: a per-pixel uncertainty map, tiled exactly like :func:`~napari_seamless_unet.predict`.

The map is the entropy of the class probabilities averaged over the 8 flips and quarter turns of every tile
(the test-time augmentation of ``predict(..., tta=True)``), divided by ``log(num_classes)`` so that it runs from
0 (all 8 views agree on one class with certainty) to 1 (all classes equally likely). Pixels where the views
disagree, or agree on a hesitant answer, score high: they are where the prediction is most often wrong, and where
an annotation teaches the model most (:func:`~napari_seamless_unet.core.regions.propose_regions`).

The valid-convolution network is exactly equivariant to the 8 transforms, so the averaged probabilities, and
hence the map, stitch seamlessly across tiles: tiled equals untiled.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Sequence

import numpy as np
import torch

from .model import UNet
from .outputs import _as_array, output_layout
from .predict import _check_image, iter_predict
from .progress import Progress, ProgressLike, run


def entropy(probabilities: np.ndarray, axis: int = 0) -> np.ndarray:
    """Entropy of ``probabilities`` along ``axis``, divided by ``log(classes)``: in [0, 1], float32."""
    p = np.clip(np.asarray(probabilities, dtype=np.float32), 1e-12, 1.0)
    classes = p.shape[axis]
    h = -(p * np.log(p)).sum(axis=axis)
    return np.clip(h / math.log(classes), 0.0, 1.0).astype(np.float32)


#: what :func:`uncertainty` can measure (see its ``measure``)
MEASURES = ("entropy", "disagreement")


class _UncertaintySink:
    """The ``out`` :func:`iter_predict` writes each tile's probabilities to: it keeps only their uncertainty.

    ``entropy``: the entropy of the mean probabilities. ``disagreement``: that minus the views' mean entropy (the
    one more channel ``view_entropy`` writes), the mutual information between the prediction and the view."""

    def __init__(self, out, num_classes: int, measure: str):
        self.out = out
        self.num_classes = num_classes
        self.measure = measure
        self.shape = (num_classes, *out.shape)
        self.dtype = np.dtype(np.float32)

    def __setitem__(self, index: tuple, values: np.ndarray) -> None:
        total = entropy(values[: self.num_classes], axis=0)
        if self.measure == "disagreement":
            total = np.clip(total - values[self.num_classes], 0.0, 1.0)
        self.out[index[1:]] = total


def iter_uncertainty(
    model: UNet,
    image,
    *,
    axes: str | None = None,
    out=None,
    name: str = "image",
    measure: str = "entropy",
    **options,
) -> Generator[Progress, None, np.ndarray]:
    """Generator form of :func:`uncertainty` (see :func:`~napari_seamless_unet.core.predict.iter_predict`)."""
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")
    image = _as_array(image)
    axes = _check_image(model, image, axes, name)
    shape, _ = output_layout(model, image.shape, axes, "probabilities")
    spatial = tuple(shape[1:])
    if out is None:
        out = np.zeros(spatial, dtype=np.float32)
    elif tuple(out.shape) != spatial:
        from .errors import UNetInputError

        raise UNetInputError(
            f"out has shape {tuple(out.shape)}, expected {spatial} for the uncertainty of {name} (its shape without "
            f"the channel axis); create it with that shape and dtype float32, or leave out=None."
        )
    sink = _UncertaintySink(out, model.num_classes, measure)
    views = measure == "disagreement"
    yield from iter_predict(
        model, image, axes=axes, output="probabilities", out=sink, name=name, tta=True, view_entropy=views, **options
    )
    return out


def uncertainty(
    model: UNet,
    image,
    *,
    axes: str | None = None,
    tile_shape: Sequence[int] | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    precision: str = "auto",
    out=None,
    voxel_size: Sequence[float] | float | None = None,
    rescale: bool = True,
    progress: ProgressLike | None = None,
    should_stop: Callable[[], bool] | None = None,
    measure: str = "entropy",
) -> np.ndarray:
    """Per-pixel uncertainty of ``model`` on ``image``: the normalised entropy of the test-time-augmented
    probabilities, or how much the 8 views disagree.

    Takes the arguments of :func:`~napari_seamless_unet.predict` (it runs the 8 flips and quarter turns of every
    tile, like ``predict(..., tta=True)``: 8x the time of a plain prediction), and:

    Parameters
    ----------
    measure : {"entropy", "disagreement"}
        ``entropy``: the entropy of the mean probabilities over the views, high wherever the answer is hesitant,
        including along every boundary that is only a pixel uncertain. ``disagreement``: that entropy minus the
        views' mean entropy (the mutual information between the answer and the view, the "BALD" score of
        Houlsby et al. 2011 with the 8 views as the ensemble): high only where the views contradict each other,
        where the model has not learnt the answer rather than where the answer is inherently ambiguous.

    Returns
    -------
    numpy.ndarray (or ``out``)
        float32 of the image's shape without its channel axis, in [0, 1]: 0 where the model is sure, 1 where every
        class is equally likely. The argmax of ``predict(model, image, tta=True)`` is the prediction it describes.

    See Also
    --------
    napari_seamless_unet.core.regions.propose_regions : the regions to annotate next, from this map.
    """
    if out is None:
        image = _as_array(image)
        shape, _ = output_layout(model, image.shape, _check_image(model, image, axes, "image"), "probabilities")
        out = np.zeros(shape[1:], dtype=np.float32)  # here, so that a stopped run hands back what it finished
    options = {
        "tile_shape": tile_shape,
        "batch_size": batch_size,
        "device": device,
        "precision": precision,
        "voxel_size": voxel_size,
        "rescale": rescale,
        "measure": measure,
    }
    return run(iter_uncertainty(model, image, axes=axes, out=out, **options), progress, should_stop, lambda: out)
