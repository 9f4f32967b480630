"""Synthetic images with touching objects: the bundled sample, the demo, and test data (nothing downloaded)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


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
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    depth_inside = np.full(shape, -np.inf, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.int32)
    for label in range(1, n_objects + 1):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        r = rng.uniform(*radius)
        # How far inside the disc each pixel is; an ellipse-ish wobble makes shapes less regular.
        stretch = rng.uniform(0.75, 1.25)
        d = r - np.sqrt(((yy - cy) * stretch) ** 2 + ((xx - cx) / stretch) ** 2)
        take = (d > 0) & (d > depth_inside)
        labels[take] = label
        depth_inside = np.maximum(depth_inside, d)
    # Relabel consecutively (some discs are hidden entirely by others).
    present = np.unique(labels[labels > 0])
    lut = np.zeros(n_objects + 1, dtype=np.int32)
    lut[present] = np.arange(1, len(present) + 1)
    labels = lut[labels]

    boundary = ndimage.morphological_gradient(labels, size=3) > 0
    image = np.where(labels > 0, 0.75, 0.1).astype(np.float32)
    image[boundary & (labels > 0)] = 0.35
    brightness = rng.uniform(0.8, 1.2, size=len(present) + 1).astype(np.float32)
    image *= brightness[labels]
    image = ndimage.gaussian_filter(image, 1.0)
    image += 0.1 * np.sin(yy / h * 3.0 + rng.uniform(0, 6)) * np.cos(xx / w * 2.0)
    image += rng.normal(0.0, noise, size=shape).astype(np.float32)
    return image.astype(np.float32), labels
