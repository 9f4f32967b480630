"""Objects grown from confident seeds (``method="seeds"``), the default post-processing of 3D instance models.

A short 3D training predicts touching nuclei joined by a thin band of middling probability wherever they share a
surface, and their outlines a voxel or two too small: labelled at one threshold, they are either merged (low
threshold) or cut down to their cores (high threshold). Here the seeds are the connected components of the
confident cores (probability above :data:`SEED_THRESHOLD`), which stay apart, and each seed grows back over the
foreground (probability above the foreground ``threshold``) to whichever seed is nearest, at most
:data:`SEED_REACH` in-plane pixels: the cores give the objects, the low threshold their extent. Measured on the
tuning volumes of ``benchmarks/bench_3d.py`` (benchmarks/README.md, "3D").
"""

from __future__ import annotations

import numpy as np

from .weights import unit_spacing

#: seeds are the objects' voxels of at least this probability (or of the foreground threshold, if higher)
SEED_THRESHOLD = 0.9
#: a seed grows over the foreground at most this many in-plane pixels (physical with a voxel size)
SEED_REACH = 6.0
#: seeds of fewer voxels are noise, not objects
SEED_MIN_SIZE = 15


def seeded_instances(
    probability: np.ndarray,
    threshold: float,
    spacing=None,
    seed_threshold: float = SEED_THRESHOLD,
    reach: float = SEED_REACH,
    seed_min_size: int = SEED_MIN_SIZE,
) -> np.ndarray:
    """Instance labels (int32, 1..n) of a 2D or 3D foreground probability: seeds of ``probability >
    max(seed_threshold, threshold)`` (face connectivity, at least ``seed_min_size`` voxels) grown to the nearest
    seed over ``probability > threshold``, at most ``reach`` in-plane pixels from it (physical with ``spacing``).
    Foreground farther from every seed stays background."""
    from .postprocess import _expand_labels, label_foreground  # postprocess imports this module

    probability = np.asarray(probability)
    seeds = label_foreground(probability > max(seed_threshold, threshold), min_size=seed_min_size)
    if not seeds.any():
        return seeds
    grown = _expand_labels(seeds, reach, unit_spacing(spacing, probability.ndim))
    return np.where((probability > threshold) | (seeds > 0), grown, 0).astype(np.int32)
