"""Regions to annotate next, and an annotated region as a training pair.

:func:`propose_regions` ranks square regions of an uncertainty map (:func:`~napari_seamless_unet.core.uncertainty.
uncertainty`) by their mean uncertainty and returns the ``count`` best that do not overlap each other or what is
already annotated: where a correction teaches the model most. :func:`region_pair` turns one corrected region of a
plane into a training pair: the region with the image around it as context, every label outside the region left
out of the loss (``TrainConfig(ignore_label=IGNORE)``), so that training learns from the region only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import UNetInputError

#: the measure that the regions to annotate next are chosen by where the caller does not say (the Annotate dock,
#: ``seamless-unet uncertainty --propose``, ``benchmarks/bench_active_learning.py``). On the tuning split of the
#: ISBI simulation (pool slices 0-14, scored on 15-19) the views' disagreement ended with the lowest Rand error
#: in both seeds, below random regions and below the entropy (benchmarks/README.md, "Human in the loop"). The
#: entropy stays the default of :func:`~napari_seamless_unet.core.uncertainty.uncertainty` itself: its map ranks
#: the wrong pixels of a prediction as well and is the easier one to read.
PROPOSAL_MEASURE = "disagreement"

#: The label :func:`region_pair` puts outside the region; train with ``TrainConfig(ignore_label=IGNORE)``.
IGNORE = int(np.iinfo(np.int32).max)


@dataclass(frozen=True)
class Region:
    """A square region of one plane.

    Attributes
    ----------
    plane : tuple of int
        Index of the plane in the leading (stack) axes of the map; ``()`` for a 2D map.
    box : (int, int, int, int)
        ``(y0, x0, y1, x1)``, the pixels ``[y0:y1, x0:x1]`` of that plane.
    score : float
        Mean uncertainty inside the box.
    rank : int
        1 for the region to annotate first.
    """

    plane: tuple[int, ...]
    box: tuple[int, int, int, int]
    score: float
    rank: int

    @property
    def index(self) -> tuple:
        """The region's pixels as an index into the map (or the image's labels)."""
        y0, x0, y1, x1 = self.box
        return (*self.plane, slice(y0, y1), slice(x0, x1))

    def corners(self) -> np.ndarray:
        """The rectangle's 4 corners as rows of full coordinates (plane index, y, x), as napari's Shapes take."""
        y0, x0, y1, x1 = self.box
        corners = [(y0, x0), (y0, x1), (y1, x1), (y1, x0)]
        return np.array([(*self.plane, y, x) for y, x in corners], dtype=float)


def _starts(length: int, size: int, stride: int) -> np.ndarray:
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return np.asarray(starts)


def propose_regions(
    uncertainty_map: np.ndarray,
    size: int | Sequence[int] = 128,
    count: int = 4,
    *,
    exclude: np.ndarray | None = None,
    stride: int | None = None,
    per_plane: int | None = None,
    separation: int = 0,
    sampling: str = "top",
    power: float = 1.0,
    seed: int | None = None,
) -> list[Region]:
    """The ``count`` regions of ``size`` x ``size`` pixels with the highest mean uncertainty, best first.

    Parameters
    ----------
    uncertainty_map : array
        ``(..., Y, X)``: a plane, or a stack (every leading axis indexes planes), e.g. from
        :func:`~napari_seamless_unet.core.uncertainty.uncertainty`.
    size : int or (int, int)
        Region side in pixels (Y, X); clipped to the plane.
    count : int
        How many regions.
    exclude : bool array, optional
        Of the map's shape: pixels already annotated. A region overlapping them is not proposed.
    stride : int, optional
        Candidate regions start every ``stride`` pixels; default a quarter of the side.
    per_plane : int, optional
        At most this many regions in one plane (spreads a stack's proposals over its planes).
    separation : int
        For a stack: a region is not proposed where it would overlap (in Y and X) another proposed region, or
        annotated pixels of ``exclude``, fewer than ``separation + 1`` planes away (along every stack axis). The
        planes of a z-stack or a time-lapse change slowly, so the most uncertain places of neighbouring planes are
        near-copies of one structure; annotating one of them teaches what annotating all of them would. 0 (the
        default) only keeps regions of one plane apart.
    sampling : {"top", "power"}
        ``"top"`` (default) takes the regions of highest mean uncertainty. ``"power"`` draws them at random, each
        with a probability proportional to ``score ** power`` (power acquisition, Kirsch et al. 2023, "Stochastic
        batch acquisition: a simple baseline for deep active learning", TMLR): the most uncertain regions are
        still the likeliest, but a batch is not filled with near-copies of one difficult place, which top-k
        selection tends to do.
    power : float
        The exponent of ``"power"`` sampling: larger is closer to ``"top"``, 0 is uniform at random.
    seed : int, optional
        Seed of ``"power"`` sampling (None: a fresh draw every call).

    Returns
    -------
    list of Region
        Non-overlapping, in the order to annotate them (``rank`` 1 first): by decreasing mean uncertainty for
        ``"top"``, in the order drawn for ``"power"``; fewer than ``count`` when the map has no more room.
    """
    values = np.asarray(uncertainty_map, dtype=np.float32)
    if values.ndim < 2:
        raise UNetInputError(f"the uncertainty map must have a Y and an X axis, got shape {values.shape}.")
    if int(count) < 1:
        raise UNetInputError(f"count must be at least 1, got {count}.")
    if exclude is not None and np.shape(exclude) != values.shape:
        raise UNetInputError(
            f"exclude has shape {np.shape(exclude)} but the uncertainty map has shape {values.shape}; give a mask "
            f"of the annotated pixels of the same shape."
        )
    sy, sx = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
    if sy < 1 or sx < 1:
        raise UNetInputError(f"the region size must be at least 1 pixel, got {size}.")
    h, w = values.shape[-2:]
    sy, sx = min(sy, h), min(sx, w)
    step = max(1, int(stride) if stride else min(sy, sx) // 4)
    if sampling not in ("top", "power"):
        raise UNetInputError(f'sampling must be "top" or "power", got {sampling!r}.')
    if not float(power) >= 0:
        raise UNetInputError(f"power must be 0 or more, got {power}.")
    near = int(separation)
    if near < 0:
        raise UNetInputError(f"separation must be 0 or more planes, got {separation}.")
    if exclude is not None and near and values.ndim > 2:
        from scipy import ndimage

        # annotated pixels also rule out the same place in the planes around them
        window = (2 * near + 1,) * (values.ndim - 2) + (1, 1)
        exclude = ndimage.maximum_filter(np.asarray(exclude, dtype=bool), size=window, mode="constant")

    candidates = []  # (score, plane, y0, x0)
    for plane in np.ndindex(values.shape[:-2]):
        means, ys, xs = _rect_means(np.nan_to_num(values[plane]), sy, sx, step)
        if exclude is not None:
            taken, _, _ = _rect_means(np.asarray(exclude[plane], dtype=np.float32), sy, sx, step)
            means = np.where(taken > 0, -np.inf, means)
        for i, y in enumerate(ys):
            for j, x in enumerate(xs):
                if np.isfinite(means[i, j]):
                    candidates.append((float(means[i, j]), plane, int(y), int(x)))
    if sampling == "power" and candidates:
        # Gumbel top-k: sorting log(score ** power) plus Gumbel noise draws without replacement with
        # probabilities proportional to score ** power.
        gumbel = np.random.default_rng(seed).gumbel(size=len(candidates))
        keys = float(power) * np.log(np.maximum([c[0] for c in candidates], 1e-30)) + gumbel
        order = np.argsort(-keys, kind="stable")
        candidates = [candidates[i] for i in order]
    else:
        candidates.sort(key=lambda c: (-c[0], c[1], c[2], c[3]))

    chosen: list[tuple[float, tuple, int, int]] = []
    in_plane: dict[tuple, int] = {}
    for score, plane, y, x in candidates:
        if per_plane is not None and in_plane.get(plane, 0) >= int(per_plane):
            continue
        if any(_planes_within(p, plane, near) and abs(y - cy) < sy and abs(x - cx) < sx for _, p, cy, cx in chosen):
            continue
        chosen.append((score, plane, y, x))
        in_plane[plane] = in_plane.get(plane, 0) + 1
        if len(chosen) == int(count):
            break
    return [
        Region(tuple(int(i) for i in plane), (y, x, y + sy, x + sx), score, rank)
        for rank, (score, plane, y, x) in enumerate(chosen, start=1)
    ]


def _planes_within(a: tuple, b: tuple, distance: int) -> bool:
    return all(abs(i - j) <= distance for i, j in zip(a, b))


def _rect_means(plane: np.ndarray, sy: int, sx: int, stride: int):
    """Mean of every ``sy`` x ``sx`` window starting on a ``stride`` grid (the last one flush with the edge),
    from the plane's integral image; and the windows' start rows and columns."""
    h, w = plane.shape
    ys, xs = _starts(h, sy, stride), _starts(w, sx, stride)
    table = np.zeros((h + 1, w + 1), dtype=np.float64)
    table[1:, 1:] = np.cumsum(np.cumsum(plane, axis=0, dtype=np.float64), axis=1)
    y, x = ys[:, None], xs[None, :]
    sums = table[y + sy, x + sx] - table[y, x + sx] - table[y + sy, x] + table[y, x]
    return sums / float(sy * sx), ys, xs


def region_pair(
    image: np.ndarray,
    labels: np.ndarray,
    box: Sequence[int],
    *,
    context: int = 0,
    ignore_label: int = IGNORE,
) -> tuple[np.ndarray, np.ndarray]:
    """One annotated (corrected) region of a plane as a training pair.

    Parameters
    ----------
    image : array
        The plane: ``(Y, X)``, or with a channel axis first (``(C, Y, X)``) or last (``(Y, X, C)``, then pass
        ``axes="YXC"`` to training).
    labels : array
        ``(Y, X)`` labels of the plane; only those inside ``box`` are used.
    box : (int, int, int, int)
        ``(y0, x0, y1, x1)`` of the region.
    context : int
        Pixels of real image kept around the region (the network's halo, ``UNet.halo``, is what it can use);
        beyond the plane's edge the network mirrors as usual.
    ignore_label : int
        The label given to every pixel outside the region; train with ``TrainConfig(ignore_label=...)`` of the same
        value (the default, :data:`IGNORE`, is never an object id in practice).

    Returns
    -------
    image_crop, labels_crop
        The crop of ``image`` and int32 labels of the same spatial shape: the region's labels inside it,
        ``ignore_label`` around it.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise UNetInputError(f"region_pair takes the labels of one plane (Y, X), got shape {labels.shape}.")
    h, w = labels.shape
    y0, x0, y1, x1 = (int(v) for v in box)
    if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
        raise UNetInputError(f"the region {tuple(box)} (y0, x0, y1, x1) is not inside the plane of shape {(h, w)}.")
    image = np.asarray(image)
    channel_last = image.ndim == 3 and image.shape[:2] == (h, w)
    if image.shape[-2:] != (h, w) and not channel_last:
        raise UNetInputError(f"the image of shape {image.shape} is not the plane of the labels {labels.shape}.")
    c = max(0, int(context))
    top, left, bottom, right = max(0, y0 - c), max(0, x0 - c), min(h, y1 + c), min(w, x1 + c)
    image_crop = image[top:bottom, left:right] if channel_last else image[..., top:bottom, left:right]
    if labels.size and int(labels.max()) >= ignore_label:
        raise UNetInputError(f"the labels reach {int(labels.max())}, the ignore label; pass another ignore_label.")
    crop = np.full((bottom - top, right - left), ignore_label, dtype=np.int32)
    crop[y0 - top : y1 - top, x0 - left : x1 - left] = labels[y0:y1, x0:x1]
    return np.ascontiguousarray(image_crop), crop
