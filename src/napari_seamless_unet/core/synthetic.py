"""Synthetic images with touching objects: the bundled sample, the demo, and test data (nothing downloaded)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _canvas(shape: tuple[int, int], seed: int | None):
    """A generator, pixel coordinates, an empty "how deep inside an object" map and empty labels."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    depth_inside = np.full(shape, -np.inf, dtype=np.float32)
    return np.random.default_rng(seed), yy, xx, depth_inside, np.zeros(shape, dtype=np.int32)


def _consecutive(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels renumbered 1..n (objects hidden entirely by others leave gaps), and the old ids present."""
    present = np.unique(labels[labels > 0])
    lut = np.zeros(int(labels.max()) + 1, dtype=np.int32)
    lut[present] = np.arange(1, len(present) + 1)
    return lut[labels], present


def touching_discs(
    shape: tuple[int, int] = (256, 256),
    n_objects: int = 40,
    radius: tuple[float, float] = (8.0, 16.0),
    noise: float = 0.15,
    seed: int | None = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """An image of bright, touching discs on a dark background, and its instance labels.

    Discs are placed at random and may overlap; overlapping discs are split by a Voronoi rule (each pixel goes
    to the disc whose edge it is deepest inside), so neighbours touch along a shared boundary, the case the
    U-Net weight map is made for. The image has dimmer boundaries between touching objects, smooth background
    variations and Gaussian noise.

    Returns
    -------
    image : float32 array of ``shape`` in about [0, 1]
    labels : int32 array of ``shape``, 0 = background, 1..n objects
    """
    rng, yy, xx, depth_inside, labels = _canvas(shape, seed)
    h, w = shape
    for label in range(1, n_objects + 1):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        r = rng.uniform(*radius)
        # How far inside the disc each pixel is; an ellipse-ish wobble makes shapes less regular.
        stretch = rng.uniform(0.75, 1.25)
        d = r - np.sqrt(((yy - cy) * stretch) ** 2 + ((xx - cx) / stretch) ** 2)
        take = (d > 0) & (d > depth_inside)
        labels[take] = label
        depth_inside = np.maximum(depth_inside, d)
    labels, present = _consecutive(labels)

    boundary = ndimage.morphological_gradient(labels, size=3) > 0
    image = np.where(labels > 0, 0.75, 0.1).astype(np.float32)
    image[boundary & (labels > 0)] = 0.35
    brightness = rng.uniform(0.8, 1.2, size=len(present) + 1).astype(np.float32)
    image *= brightness[labels]
    image = ndimage.gaussian_filter(image, 1.0)
    image += 0.1 * np.sin(yy / h * 3.0 + rng.uniform(0, 6)) * np.cos(xx / w * 2.0)
    image += rng.normal(0.0, noise, size=shape).astype(np.float32)
    return image.astype(np.float32), labels


def clustered_nuclei(
    shape: tuple[int, int] = (256, 256),
    n_clusters: int = 6,
    per_cluster: tuple[int, int] = (3, 8),
    radius: tuple[float, float] = (5.0, 13.0),
    seed: int | None = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A fluorescence-like image of nuclei in clusters of touching neighbours, and its instance labels.

    Nuclei are ellipses of varied size, orientation, brightness and texture, packed around cluster centres so
    that many touch (overlaps are split by the deepest-inside rule, as in :func:`touching_discs`), plus a few
    isolated ones; the image is blurred by a varying amount, has an uneven background, and Poisson and Gaussian
    noise. Unlike the discs, touching nuclei are not outlined by a dark boundary: only their shapes and a
    slight brightness difference separate them.

    Returns
    -------
    image : float32 array of ``shape``
    labels : int32 array of ``shape``, 0 = background, 1..n nuclei
    """
    rng, yy, xx, depth_inside, labels = _canvas(shape, seed)
    h, w = shape
    centres = []
    for _ in range(n_clusters):
        cy, cx = rng.uniform(0.1 * h, 0.9 * h), rng.uniform(0.1 * w, 0.9 * w)
        for _ in range(int(rng.integers(per_cluster[0], per_cluster[1] + 1))):
            spread = rng.uniform(0.6, 1.4) * radius[1]
            centres.append((cy + rng.normal(0, spread), cx + rng.normal(0, spread)))
    centres += [(rng.uniform(0, h), rng.uniform(0, w)) for _ in range(max(1, n_clusters))]
    placed: list[tuple[float, float, float]] = []
    for cy, cx in centres:
        r = rng.uniform(*radius)
        # Neighbours may press into each other, but none hides most of another (no slivers of hidden nuclei).
        if any(np.hypot(cy - py, cx - px) < 0.8 * (r + pr) for py, px, pr in placed):
            continue
        placed.append((cy, cx, r))
        angle = rng.uniform(0, np.pi)
        aspect = rng.uniform(0.7, 1.0)
        dy, dx = yy - cy, xx - cx
        u = dy * np.cos(angle) + dx * np.sin(angle)
        v = -dy * np.sin(angle) + dx * np.cos(angle)
        d = r - np.sqrt((u / aspect) ** 2 + v**2)
        take = (d > 0) & (d > depth_inside)
        labels[take] = len(placed)
        depth_inside = np.maximum(depth_inside, d)
    labels, present = _consecutive(labels)

    brightness = np.concatenate([[0.0], rng.uniform(0.35, 1.0, size=len(present))]).astype(np.float32)
    texture = ndimage.gaussian_filter(rng.normal(0, 1, shape), 2.0).astype(np.float32)
    image = brightness[labels] * (1.0 + 0.25 * texture)
    image = ndimage.gaussian_filter(image, rng.uniform(0.8, 2.0))
    image += 0.08 * (1 + np.sin(yy / h * rng.uniform(1, 4) + rng.uniform(0, 6)) * np.cos(xx / w * 2.0))
    photons = 60.0
    image = rng.poisson(np.clip(image, 0, None) * photons).astype(np.float32) / photons
    image += rng.normal(0.0, 0.03, size=shape).astype(np.float32)
    return image.astype(np.float32), labels


def _pack_nuclei(
    rng: np.random.Generator, extent: np.ndarray, n: int, radius: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Centres (physical z, y, x) and radii of up to ``n`` nuclei, most of them in clusters of touching neighbours.

    Each new nucleus either starts a cluster anywhere or sits against a placed one, at 0.85-1.0 times the sum of
    their radii in a random 3D direction (so neighbours above and below are as common as beside); none comes
    closer than 0.8 times the sum of radii to another, so no nucleus hides most of another.
    """
    centres = np.empty((0, 3))
    radii = np.empty(0)
    for _ in range(40 * n):
        if len(radii) == n:
            break
        r = rng.uniform(*radius)
        if len(radii) == 0 or rng.random() < 0.12:
            c = rng.uniform(0, 1, 3) * extent
        else:
            parent = rng.integers(len(radii))
            direction = rng.normal(size=3)
            distance = (r + radii[parent]) * rng.uniform(0.85, 1.0)
            c = centres[parent] + distance * direction / np.linalg.norm(direction)
        # Centres stay inside, nuclei may be cut by the border; physical z may be short, so allow half a nucleus.
        if np.any(c < -0.3 * r) or np.any(c > extent + 0.3 * r):
            continue
        if len(radii) and np.any(np.linalg.norm(centres - c, axis=1) < 0.8 * (radii + r)):
            continue
        centres = np.vstack([centres, c])
        radii = np.append(radii, r)
    return centres, radii


def touching_nuclei_3d(
    shape: tuple[int, int, int] = (24, 128, 128),
    spacing: tuple[float, float, float] = (3.0, 1.0, 1.0),
    n: int | None = None,
    radius: tuple[float, float] = (6.0, 11.0),
    seed: int | None = None,
    noise: float = 0.03,
) -> tuple[np.ndarray, np.ndarray]:
    """A fluorescence-like volume of packed nuclei, many touching in 3D, with anisotropic voxels, and its labels.

    Nuclei are ellipsoids of varied size, shape and orientation in physical space (radius in in-plane pixels),
    so on the voxel grid they are flattened along z by the spacing ratio. They are packed in clusters whose
    neighbours touch in every direction, above and below as much as beside; overlaps are split by the
    deepest-inside rule (a Voronoi-like split), so touching nuclei share a face without a gap and without a
    darker rim: only shape, texture and a brightness difference (sometimes slight) separate them. The volume
    is blurred by an anisotropic point spread function (wider along z), dims with depth, and has an uneven
    background, Poisson and Gaussian noise.

    Parameters
    ----------
    shape : (int, int, int)
        Volume shape ``(Z, Y, X)``.
    spacing : (float, float, float)
        Voxel size along z, y, x; only the ratios matter.
    n : int or None
        Nuclei to place (fewer when the volume is full); None: as many as fill about a quarter of the volume.
    radius : (float, float)
        Range of nucleus radii in in-plane (x) pixels.
    seed : int or None
        Random seed.
    noise : float
        Standard deviation of the Gaussian (read) noise added after the Poisson noise.

    Returns
    -------
    image : float32 array of ``shape``
    labels : int32 array of ``shape``, 0 = background, 1..n nuclei
    """
    rng = np.random.default_rng(seed)
    voxel = np.asarray(spacing, dtype=np.float64) / float(spacing[2])  # voxel sizes in in-plane pixels
    extent = np.asarray(shape) * voxel
    if n is None:
        n = max(1, round(0.25 * float(np.prod(extent)) / (4.0 / 3.0 * np.pi * np.mean(radius) ** 3)))
    centres, radii = _pack_nuclei(rng, extent, n, radius)

    depth_inside = np.full(shape, -np.inf, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.int32)
    for label, (c, r) in enumerate(zip(centres, radii, strict=True), start=1):
        axes = r * rng.uniform(0.8, 1.2, 3)
        rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        # Only the nucleus's bounding box is computed: the volume may be large, each nucleus is small.
        lo = np.maximum(np.floor((c - axes.max()) / voxel).astype(int), 0)
        hi = np.minimum(np.ceil((c + axes.max()) / voxel).astype(int) + 1, shape)
        if np.any(hi <= lo):
            continue
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        grid = np.meshgrid(
            *(np.arange(a, b) * v - cc for a, b, v, cc in zip(lo, hi, voxel, c, strict=True)), indexing="ij"
        )
        offset = np.stack(grid, -1) @ rotation  # physical offsets in the nucleus's own axes
        d = (r - r * np.sqrt(((offset / axes) ** 2).sum(-1))).astype(np.float32)
        take = (d > 0) & (d > depth_inside[box])
        labels[box][take] = label
        depth_inside[box] = np.maximum(depth_inside[box], d)
    labels, present = _consecutive(labels)

    # Texture and blur are isotropic in physical space, so their sigmas in voxels shrink along a coarse z.
    brightness = np.concatenate([[0.0], rng.uniform(0.35, 1.0, size=len(present))]).astype(np.float32)
    texture = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), 1.5 / voxel)
    texture /= max(float(texture.std()), 1e-6)
    image = brightness[labels] * (1.0 + 0.2 * texture)
    psf_xy = rng.uniform(0.8, 1.6)
    image = ndimage.gaussian_filter(image, np.array([2.5 * psf_xy, psf_xy, psf_xy]) / voxel)
    zz, yy, xx = (np.linspace(0, 1, s, dtype=np.float32) for s in shape)
    image *= (1.0 - 0.3 * zz)[:, None, None]  # deeper planes are dimmer
    phase = rng.uniform(0, 6)
    image += (0.08 * (1 + np.sin(yy * rng.uniform(1, 4) + phase)[:, None] * np.cos(xx * 2.0)[None, :]))[None]
    photons = 60.0
    image = rng.poisson(np.clip(image, 0, None) * photons).astype(np.float32) / photons
    image += rng.normal(0.0, noise, size=shape).astype(np.float32)
    return image.astype(np.float32), labels
