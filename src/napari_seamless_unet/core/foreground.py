"""Instance labels from the classes after the background alone: what a caller that labels again keeps.

The Segment dock keeps only the foreground probabilities of a run (a three-class model's interior and border)
and labels them again when a post-processing option changes; the background, 1 minus their sum, is never
built (:func:`instances_from_foreground`).
"""

from __future__ import annotations

import numpy as np

from .errors import UNetInputError
from .instances import check_instance_classes, instances_from_probabilities


class _WithBackground:
    """The classes after the background seen, lazily, with the background ``1 - their sum`` in front: ``(1 - p, p)``
    of a foreground ``p``, or ``(1 - i - b, i, b)`` of a three-class model's interior and border."""

    def __init__(self, after_background, num_classes: int):
        self.after, self.num_classes = after_background, num_classes
        self.dtype = np.dtype(after_background.dtype)
        spatial = after_background.shape if num_classes == 2 else after_background.shape[1:]
        self.shape = (num_classes, *spatial)

    def _class(self, k: int, where: tuple) -> np.ndarray:
        if k == 0:
            return 1 - sum(self._class(j, where) for j in range(1, self.num_classes))
        return np.asarray(self.after[where] if self.num_classes == 2 else self.after[(k - 1, *where)])

    def __getitem__(self, index: tuple) -> np.ndarray:
        which, where = index[0], tuple(index[1:])
        if isinstance(which, slice):
            return np.stack([self._class(k, where) for k in range(self.num_classes)[which]])
        return self._class(int(which) % self.num_classes, where)


def instances_from_foreground(
    foreground, *, axes: str | None = None, offset: int = 0, out=None, num_classes: int = 2, **options
):
    """:func:`instances_from_probabilities` of the classes after the background alone, the background never built.

    ``foreground`` holds the foreground probability (float, shape ``spatial``, axes ``axes`` without C) of a
    two-class model, or, with ``num_classes=3``, the interior and border probabilities of a three-class model
    (shape ``(2, *spatial)``); the background is 1 minus their sum, read lazily. A caller that labels again later
    keeps only these. ``options`` are those of :func:`instances_from_probabilities`. The objects get the ids
    after ``offset``, as a stack's plane gets those after the largest given so far (for a plane labelled alone
    and written into a stack; ``out`` must then be numpy).
    """
    if not (hasattr(foreground, "shape") and hasattr(foreground, "dtype")):
        foreground = np.asarray(foreground)
    if int(offset) != offset or offset < 0:
        raise UNetInputError(f"offset must be a whole number >= 0, got {offset}")
    check_instance_classes(num_classes)
    if num_classes > 2 and foreground.shape[0] != num_classes - 1:
        raise UNetInputError(
            f"a {num_classes}-class model's kept probabilities need {num_classes - 1} classes first, got shape "
            f"{tuple(foreground.shape)}"
        )
    labels = instances_from_probabilities(
        _WithBackground(foreground, num_classes), axes=None if axes is None else "C" + axes, out=out, **options
    )
    if offset:
        labels[labels > 0] += int(offset)
    return labels
