"""On-the-fly augmentation on the training device: elastic deformation, flips, rotations, shifts, grey values.

Every training sample is drawn as one sampling grid that combines a random position (shift), a flip, a rotation
and the paper's smooth elastic deformation (random displacements on a coarse 3x3 grid, interpolated bicubically
to every pixel). The grid is applied to image, weight map and labels alike, so they stay aligned: per source
plane, one ``grid_sample`` call interpolates image and weights bilinearly, one more reads labels (and the
annotation mask) with nearest neighbour, so labels only take values present in the input. Planes are read
whole, with mirrored borders beyond their edges, like prediction does.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augmentation:
    """Augmentation parameters.

    Parameters
    ----------
    elastic_std : float
        Standard deviation in pixels of the random displacements on the coarse grid (paper: 10); 0 disables.
    elastic_grid : int
        Points per side of the coarse displacement grid over a 572-pixel tile (paper: 3): control points are
        ``572 / (elastic_grid - 1)`` pixels apart whatever the training tile, so a small tile is deformed as
        gently as the paper's, not squeezed by the whole grid.
    flip : bool
        Random horizontal and vertical flips.
    rotate90 : bool
        Random multiples of 90 degrees.
    rotation : float
        Largest free rotation in degrees (uniform in [-rotation, rotation]); 0 disables.
    brightness, contrast, gamma : float
        Grey-value changes of the image only: additive offset in [-b, b] (normalised units), contrast factor
        in [1 - c, 1 + c], gamma in [1 - g, 1 + g].
    """

    elastic_std: float = 10.0
    elastic_grid: int = 3
    flip: bool = True
    rotate90: bool = True
    rotation: float = 180.0
    brightness: float = 0.1
    contrast: float = 0.2
    gamma: float = 0.2

    def source_margin(self, tile: int) -> int:
        """Half side of the square source region that one ``tile`` x ``tile`` sample can reach."""
        half = (tile - 1) / 2.0
        if self.rotation > 0:
            half *= math.sqrt(2.0)
        return math.ceil(half + 4.0 * max(0.0, self.elastic_std) + 2.0)


class PlaneStore:
    """Training planes kept on the device: image channels, weight map, target class and annotation mask.

    Each plane is one ``(C + 2, H, W)`` float tensor ``[image..., weight, target]``; the weight map is
    computed once at load and deformed with the image, never recomputed per step.
    """

    def __init__(self, planes: list[tuple[np.ndarray, np.ndarray, np.ndarray]], device: torch.device):
        self.channels = planes[0][0].shape[0]
        self.device = device
        self.tensors = [
            torch.from_numpy(
                np.concatenate([img.astype(np.float32), w[None].astype(np.float32), t[None].astype(np.float32)])
            ).to(device)
            for img, t, w in planes
        ]
        areas = np.array([t.shape[-1] * t.shape[-2] for t in self.tensors], dtype=np.float64)
        self.probabilities = torch.from_numpy(areas / areas.sum())

    def __len__(self) -> int:
        return len(self.tensors)


def sample_batch(
    store: PlaneStore,
    tile: int,
    batch_size: int,
    augmentation: Augmentation,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw an augmented batch.

    Parameters
    ----------
    store : PlaneStore
        Training planes on the device.
    tile : int
        Side of the square input tile.
    batch_size : int
        Samples per batch.
    augmentation : Augmentation
        Parameters.
    generator : torch.Generator
        CPU generator for all random choices (reproducible for a seed on any device).

    Returns
    -------
    image : (B, C, tile, tile) float tensor
    target : (B, tile, tile) long tensor
    weight : (B, tile, tile) float tensor (0 where unannotated)
    """
    aug = augmentation
    dev = store.device
    g = generator

    index = torch.multinomial(store.probabilities, batch_size, replacement=True, generator=g).tolist()
    positions = []  # anywhere in the plane, with a sub-pixel fraction, as (x, y)
    for i in index:
        h, w = store.tensors[i].shape[-2:]
        pos = torch.rand(2, generator=g, dtype=torch.float64) * torch.tensor([h, w], dtype=torch.float64)
        positions.append([float(pos[1]), float(pos[0])])

    # Affine part: flips, 90-degree and free rotation, composed into one 2x2 matrix per sample.
    angle, flips = random_turns_and_flips(batch_size, aug, g, axes=2)
    cos, sin = torch.cos(angle), torch.sin(angle)
    matrix = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # (B, 2, 2) on (x, y)
    matrix = matrix * flips[:, None, :]

    # Source (x, y) of tile pixel (x', y') about the tile's centre: matrix @ (x', y') + position, as two
    # broadcast products (a batched matmul with an inner size of 2 took twice as long).
    coords = _centred_coordinates(tile, dev)
    m = matrix.float().to(dev)[:, :, :, None, None]  # (B, 2 out, 2 in, 1, 1)
    shift = torch.tensor(positions, dtype=torch.float32, device=dev)[:, :, None, None]
    grid = torch.addcmul(torch.addcmul(shift, m[:, :, 0], coords[None, None, :]), m[:, :, 1], coords[:, None])
    grid = grid.permute(0, 2, 3, 1)  # (B, T, T, 2) as (x, y)
    if aug.elastic_std > 0:
        field = elastic_field(batch_size, tile, aug, g).to(dev)
        grid = grid + field.permute(0, 2, 3, 1)

    # The planes are sampled whole, not cropped first: a mirrored crop wide enough for any rotation (two
    # index_selects) took 40% of a batch.
    image, target, weight = sample_sources(store, index, grid, (tile, tile))
    return _grey_values(image, aug, g), target, weight


@functools.lru_cache(maxsize=8)
def _centred_coordinates(tile: int, device: torch.device) -> torch.Tensor:
    """Pixel coordinates ``(tile,)`` about the tile's centre (cached: a step's hot path)."""
    return torch.arange(tile, dtype=torch.float32, device=device) - (tile - 1) / 2.0


def sample_sources(
    store, index: list[int], grid: torch.Tensor, shape: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Read every sample's grid from its whole source plane or volume: ``(image, target, weight)``.

    ``grid`` holds source coordinates in pixels (voxels), x first, ``(B, *shape, ndim)``; ``index`` the source
    of each sample. With ``reflection`` and ``align_corners``, ``grid_sample`` reads beyond a border mirrored
    like ``tiling.reflect_indices``, at any distance. Image and weight map are read bilinearly, annotation mask
    and target with nearest neighbour; samples of one source share one call per mode (an expanded view).
    """
    dev, c = store.device, store.channels
    sources = sorted(set(index))
    every = len(sources) == 1  # one source for the whole batch (always with batch 1): no scatter
    if not every:
        smooth = torch.empty((len(index), c + 1, *shape), device=dev)
        exact = torch.empty((len(index), 2, *shape), device=dev)
    for i in sources:
        source = store.tensors[i]
        rows = [b for b, j in enumerate(index) if j == i]
        size = torch.tensor(source.shape[:0:-1], dtype=torch.float32, device=dev)
        # Pixel p maps to 2 p / (size - 1) - 1 with align_corners=True; an axis of one pixel reads that pixel.
        normalised = (grid if every else grid[rows]) * (2.0 / (size - 1).clamp_min(1.0)) - 1.0
        whole = source[None].expand(len(rows), *source.shape)
        kw = {"padding_mode": "reflection", "align_corners": True}
        read_smooth = F.grid_sample(whole[:, : c + 1], normalised, mode="bilinear", **kw)
        read_exact = F.grid_sample(whole[:, c:], normalised, mode="nearest", **kw)
        if every:
            smooth, exact = read_smooth, read_exact
        else:
            smooth[rows], exact[rows] = read_smooth, read_exact
    # A pixel whose label is read from an unannotated pixel must not count, whatever the interpolated weight.
    weight = smooth[:, c] * (exact[:, 0] > 0)
    return smooth[:, :c], exact[:, 1].round().long(), weight


def random_turns_and_flips(
    batch_size: int, aug: Augmentation, generator: torch.Generator, axes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample: an in-plane angle (quarter turns plus a free rotation) and a sign per axis (flips), float64."""
    angle = torch.zeros(batch_size, dtype=torch.float64)
    if aug.rotate90:
        angle += torch.randint(0, 4, (batch_size,), generator=generator).double() * (math.pi / 2)
    if aug.rotation > 0:
        angle += (torch.rand(batch_size, generator=generator, dtype=torch.float64) * 2 - 1) * math.radians(aug.rotation)
    flips = torch.ones(batch_size, axes, dtype=torch.float64)
    if aug.flip:
        flips = torch.where(torch.rand(batch_size, axes, generator=generator) < 0.5, -1.0, 1.0).double()
    return angle, flips


#: the paper's tile side, over which ``elastic_grid`` points per side are spread
PAPER_TILE = 572


def elastic_field(batch_size: int, tile: int, aug: Augmentation, generator: torch.Generator) -> torch.Tensor:
    """Smooth random displacements ``(B, 2, tile, tile)`` in pixels (x, y), defined in pixels, not per tile.

    Random displacements (standard deviation ``elastic_std``) sit on a coarse grid whose points are
    ``PAPER_TILE / (elastic_grid - 1)`` pixels apart; bicubic interpolation spreads them to every pixel, and a
    window of the tile's size is taken at a random place of the interpolated field.
    """
    spacing = PAPER_TILE / (max(2, int(aug.elastic_grid)) - 1)
    n = max(2, math.ceil((tile - 1) / spacing) + 1)
    span = max(tile, round((n - 1) * spacing) + 1)
    coarse = torch.randn(batch_size, 2, n, n, generator=generator) * aug.elastic_std
    oy, ox = (int(v) for v in torch.randint(0, span - tile + 1, (2,), generator=generator))
    # Bicubic upsampling is separable: the window of the upsampled field is rows @ coarse @ columns^T, with the
    # window's rows of the interpolation matrix; only the tile's pixels are computed, not the whole span (a
    # 573-pixel field for a 104-pixel tile took a third of the batch's time).
    weights = _span_weights(n, span)
    field = weights[oy : oy + tile] @ coarse @ weights[ox : ox + tile].T
    # Bicubic interpolation can overshoot a little; the clamp bounds how far from its position a sample reads.
    limit = 4.0 * aug.elastic_std
    return field.clamp(-limit, limit)


_CUBIC_A = -0.75  # the cubic convolution kernel of torch's bicubic interpolation


@functools.lru_cache(maxsize=32)
def _span_weights(n: int, span: int) -> torch.Tensor:
    """``(span, n)``: the cubic weights of ``n`` control points for each of ``span`` pixels spread over them,
    as ``F.interpolate(size=span, mode="bicubic", align_corners=True)`` places them (cached: a step's hot path)."""
    return _cubic_weights(torch.arange(span, dtype=torch.float64) * ((n - 1) / (span - 1)), n).float()


def _cubic_weights(u: torch.Tensor, n: int) -> torch.Tensor:
    """Weights ``(..., len, n)`` that interpolate ``n`` control points at coarse positions ``u`` (..., len).

    The cubic convolution kernel of torch's bicubic ``F.interpolate`` (border points repeated), so that a
    separable product of three of them is the tricubic analogue of the 2D field.
    """
    i0 = u.floor()
    t = u - i0

    def near(x):  # |x| <= 1
        return ((_CUBIC_A + 2) * x - (_CUBIC_A + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((_CUBIC_A * x - 5 * _CUBIC_A) * x + 8 * _CUBIC_A) * x - 4 * _CUBIC_A

    weights = torch.zeros(*u.shape, n, dtype=u.dtype)
    for k, w in zip((-1, 0, 1, 2), (far(t + 1), near(t), near(1 - t), far(2 - t)), strict=True):
        index = (i0.long() + k).clamp(0, n - 1)
        weights += w[..., None] * F.one_hot(index, n).to(u.dtype)
    return weights


def _grey_values(image: torch.Tensor, aug: Augmentation, g: torch.Generator) -> torch.Tensor:
    """Per-sample gamma, contrast and brightness of a ``(B, C, ...)`` batch, 2D or 3D alike."""
    b = image.shape[0]
    dev = image.device
    dims = tuple(range(1, image.dim()))
    one_per_sample = (b,) + (1,) * len(dims)

    def uniform(spread: float) -> torch.Tensor:
        return ((torch.rand(b, generator=g) * 2 - 1) * spread).to(dev).view(one_per_sample)

    if aug.gamma > 0:
        lo = image.amin(dim=dims, keepdim=True)
        span = (image.amax(dim=dims, keepdim=True) - lo).clamp_min(1e-6)
        image = lo + span * ((image - lo) / span).clamp(0, 1) ** (1.0 + uniform(aug.gamma))
    if aug.contrast > 0:
        mean = image.mean(dim=dims, keepdim=True)
        image = (image - mean) * (1.0 + uniform(aug.contrast)) + mean
    if aug.brightness > 0:
        image = image + uniform(aug.brightness)
    return image
