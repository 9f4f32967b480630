"""On-the-fly augmentation of 3D training volumes, respecting anisotropic voxel spacing.

The 3D counterpart of :mod:`.augment`: every sample is one sampling grid combining a random position, flips
along z, y and x, rotations in the YX plane only, and a smooth elastic deformation, applied to image and weight
map (trilinear) and to the annotation mask and labels (nearest) with one ``grid_sample`` call each per volume
drawn. Volumes are read with mirrored borders, like prediction does.

Volumes are often sampled more coarsely along z than in-plane (2-4x). Rotations therefore never mix z with y or
x, and the elastic deformation is defined in physical units, measured in in-plane (x) pixels: its control points
are ``PAPER_TILE / (elastic_grid - 1)`` in-plane pixels apart along every axis, which is fewer voxels along a
coarse z, and its displacements have a standard deviation of ``elastic_std`` in-plane pixels, which is
``elastic_std / (z spacing / x spacing)`` voxels along z.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .augment import PAPER_TILE, Augmentation, _cubic_weights, _grey_values, random_turns_and_flips, sample_sources


class VolumeStore:
    """Training volumes kept on the device: image channels, weight map, target class and annotation mask.

    Each volume is one ``(C + 2, D, H, W)`` float tensor ``[image..., weight, target]``, as :class:`PlaneStore`
    keeps planes; volumes are drawn with a probability proportional to their number of voxels.

    Parameters
    ----------
    volumes : list of (image, target, weight)
        ``image`` of shape ``(C, D, H, W)``, ``target`` and ``weight`` of shape ``(D, H, W)``; weight 0 marks
        unannotated voxels.
    device : torch.device
        Where the tensors live and batches are drawn.
    """

    def __init__(self, volumes: list[tuple[np.ndarray, np.ndarray, np.ndarray]], device: torch.device):
        self.channels = volumes[0][0].shape[0]
        self.device = device
        self.tensors = [
            torch.from_numpy(
                np.concatenate([img.astype(np.float32), w[None].astype(np.float32), t[None].astype(np.float32)])
            ).to(device)
            for img, t, w in volumes
        ]
        sizes = np.array([math.prod(t.shape[-3:]) for t in self.tensors], dtype=np.float64)
        self.probabilities = torch.from_numpy(sizes / sizes.sum())

    def __len__(self) -> int:
        return len(self.tensors)


def _voxel_ratios(spacing: tuple[float, float, float]) -> tuple[float, float, float]:
    """Each axis's (z, y, x) voxel size in in-plane (x) pixels."""
    sz, sy, sx = (float(s) for s in spacing)
    if min(sz, sy, sx) <= 0:
        raise ValueError(f"voxel spacing must be positive, got {spacing}")
    return sz / sx, sy / sx, 1.0


def elastic_field_3d(
    batch_size: int,
    tile: tuple[int, int, int],
    aug: Augmentation,
    generator: torch.Generator,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> torch.Tensor:
    """Smooth random displacements ``(B, 3, D, H, W)`` in voxels, components ``(x, y, z)``, defined physically.

    Control points are ``PAPER_TILE / (elastic_grid - 1)`` in-plane pixels apart along every axis measured
    physically (so fewer voxels apart along a coarse z), with displacements of standard deviation
    ``elastic_std`` in-plane pixels (so ``elastic_std / ratio`` voxels along an axis ``ratio`` times coarser).
    Cubic convolution spreads them to the voxels of a window at a random place of the control grid.

    Parameters
    ----------
    batch_size : int
        Number of fields.
    tile : (int, int, int)
        Field size ``(depth, height, width)``.
    aug : Augmentation
        ``elastic_std`` and ``elastic_grid``.
    generator : torch.Generator
        CPU generator for the random displacements and window positions.
    spacing : (float, float, float)
        Voxel size along z, y, x.

    Returns
    -------
    torch.Tensor
        float32 displacements on the CPU, clamped to ``4 * std`` per axis.
    """
    ratios = _voxel_ratios(spacing)
    step = PAPER_TILE / (max(2, int(aug.elastic_grid)) - 1)
    matrices, counts, stds = [], [], []
    for t, r in zip(tile, ratios, strict=True):
        pitch = step / r  # control point distance in voxels of this axis
        n = max(2, math.ceil((t - 1) / pitch) + 1)
        # A window of t voxels at a random place of the control grid, like the 2D field's random crop.
        start = torch.rand(batch_size, 1, generator=generator, dtype=torch.float64) * ((n - 1) * pitch - (t - 1))
        u = (start + torch.arange(t, dtype=torch.float64)) / pitch
        matrices.append(_cubic_weights(u.clamp(0, n - 1), n).float())
        counts.append(n)
        stds.append(aug.elastic_std / r)
    std = torch.tensor(stds[::-1], dtype=torch.float32)  # components (x, y, z)
    coarse = torch.randn(batch_size, 3, *counts, generator=generator) * std[None, :, None, None, None]
    field = torch.einsum("bcijk,bzi,byj,bxk->bczyx", coarse, *matrices)
    # Cubic interpolation can overshoot a little; the clamp bounds how far from its position a sample reads.
    limit = (4.0 * std)[None, :, None, None, None]
    return torch.maximum(torch.minimum(field, limit), -limit)


def _sampling_offsets(
    batch_size: int,
    tile: tuple[int, int, int],
    aug: Augmentation,
    generator: torch.Generator,
    spacing: tuple[float, float, float],
    device: torch.device,
) -> torch.Tensor:
    """Where each voxel of each sample is read, ``(B, D, H, W, 3)`` as (x, y, z) voxels from the sample's position.

    Flips, a rotation about z made in physical space (voxel offsets to physical, rotated, back to voxels) and
    the elastic field; the field's clamp bounds how far a sample reads, as in 2D.
    """
    g = generator
    td, th, tw = tile
    ratio_y = _voxel_ratios(spacing)[1]
    angle, flips = random_turns_and_flips(batch_size, aug, g, axes=3)
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero, one = torch.zeros_like(cos), torch.ones_like(cos)
    matrix = torch.stack(  # (B, 3, 3) on (x, y, z)
        [
            torch.stack([cos, -sin * ratio_y, zero], -1),
            torch.stack([sin / ratio_y, cos, zero], -1),
            torch.stack([zero, zero, one], -1),
        ],
        -2,
    )
    matrix = matrix * flips[:, None, :]

    axes = [torch.arange(t, dtype=torch.float32) - (t - 1) / 2.0 for t in (td, th, tw)]
    zz, yy, xx = torch.meshgrid(*axes, indexing="ij")
    base = torch.stack([xx, yy, zz], -1).to(device)  # (D, H, W, 3) as (x, y, z)
    offsets = torch.einsum("bij,zyxj->bzyxi", matrix.float().to(device), base)
    if aug.elastic_std > 0:
        field = elastic_field_3d(batch_size, (td, th, tw), aug, g, spacing).to(device)
        offsets = offsets + field.permute(0, 2, 3, 4, 1)
    return offsets


def sample_batch_3d(
    store: VolumeStore,
    tile: tuple[int, int, int],
    batch_size: int,
    augmentation: Augmentation,
    generator: torch.Generator,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw an augmented batch of 3D samples.

    Parameters
    ----------
    store : VolumeStore
        Training volumes on the device.
    tile : (int, int, int)
        Sample size ``(depth, height, width)``.
    batch_size : int
        Samples per batch.
    augmentation : Augmentation
        Parameters; ``rotate90`` and ``rotation`` turn about the z axis only, ``flip`` flips z, y and x.
    generator : torch.Generator
        CPU generator for all random choices (reproducible for a seed on any device).
    spacing : (float, float, float)
        Voxel size along z, y, x; the elastic deformation and in-plane rotations are made in physical space.

    Returns
    -------
    image : (B, C, D, H, W) float tensor
    target : (B, D, H, W) long tensor
    weight : (B, D, H, W) float tensor (0 where unannotated)
    """
    aug, g = augmentation, generator
    dev = store.device
    tile = tuple(int(t) for t in tile)

    index = torch.multinomial(store.probabilities, batch_size, replacement=True, generator=g).tolist()
    positions = []  # anywhere in the volume, with a sub-voxel fraction, as (x, y, z)
    for i in index:
        size = torch.tensor(store.tensors[i].shape[:0:-1], dtype=torch.float64)
        positions.append(torch.rand(3, generator=g, dtype=torch.float64)[[2, 1, 0]] * size)
    grid = _sampling_offsets(batch_size, tile, aug, g, spacing, dev)
    grid = grid + torch.stack(positions).float().to(dev)[:, None, None, None, :]

    # The volumes are sampled whole: a 3D crop wide enough for any rotation costs more than the sampling itself.
    image, target, weight = sample_sources(store, index, grid, tile)
    return _grey_values(image, aug, g), target, weight
