"""Labelling again without the network: what the Segment widget does when the post-processing options change.

A :class:`~._predict_job.PredictionJob` of an instance model keeps the foreground probabilities of what it segmented
(float32: the threshold sees exactly the values ``segment`` sees); :class:`RelabelJob` makes the labels again
from them with other options, through the core's
:func:`~napari_seamless_unet.core.foreground.instances_from_foreground`, in a thread worker. Free of Qt.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from ..core import axes as ax
from ..core.foreground import instances_from_foreground
from ..core.progress import Progress


def largest_id_outside(stack, axes: str, plane: dict) -> int:
    """The largest label of ``stack`` (axes ``axes``, no C) in the planes other than ``plane``: a plane labelled
    alone and written into the stack takes the ids after it, so that ids stay unique across the stack."""
    largest = 0
    for other in ax.iter_planes(stack.shape, axes):
        if other != plane:
            largest = max(largest, int(np.max(stack[ax.image_index(axes, other, slice(None), slice(None))])))
    return largest


@dataclass
class RelabelResult:
    """The labels :class:`RelabelJob` made (a plane's, for a per-plane run) and the options it used."""

    labels: np.ndarray
    options: dict
    offset: int = 0
    max_label: int = 0

    @property
    def objects(self) -> int:
        return max(0, self.max_label - self.offset)


class RelabelJob:
    """Label again from the foreground probabilities a :class:`PredictionJob` kept, with other ``options``.

    No network: only :func:`~napari_seamless_unet.core.foreground.instances_from_foreground`. ``axes`` are those
    of ``foreground``; for a per-plane run, ``plane`` and ``stack_labels`` (axes ``stack_axes``) as in
    :class:`PredictionJob`, so that the plane's ids stay unique across the stack; ``num_classes`` those of the
    model (3: ``foreground`` holds interior and border).
    """

    def __init__(
        self,
        foreground,
        axes: str,
        options: dict,
        *,
        plane=None,
        stack_labels=None,
        stack_axes=None,
        num_classes: int = 2,
        ndim: int = 2,
        spacing=None,
    ):
        self.foreground, self.axes, self.options = foreground, axes, dict(options)
        self.plane, self.stack_labels, self.stack_axes = plane, stack_labels, stack_axes
        self.num_classes, self.ndim, self.spacing = num_classes, ndim, spacing

    def run(self) -> Generator[Progress, None, RelabelResult]:
        yield Progress(0, 1, "label")
        offset = 0
        if self.plane is not None and self.stack_labels is not None:
            offset = largest_id_outside(self.stack_labels, self.stack_axes, self.plane)
        labels = instances_from_foreground(
            self.foreground,
            axes=self.axes,
            offset=offset,
            num_classes=self.num_classes,
            ndim=self.ndim,
            spacing=self.spacing,
            **self.options,
        )
        return RelabelResult(labels, self.options, offset, int(labels.max()) if labels.size else 0)
