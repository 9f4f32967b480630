"""The Annotate next dock's work, free of Qt: the uncertainty map of a plane (or a whole 2D image) and the regions
to annotate next (:func:`~napari_seamless_unet.core.regions.propose_regions`), for a napari thread worker."""

from __future__ import annotations

import threading
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from ..core.progress import Progress
from ..core.regions import PROPOSAL_MEASURE, Region, propose_regions


@dataclass
class Proposal:
    """What a run found: the plane's uncertainty map (Y, X), the regions (best first) and the plane they are in."""

    uncertainty: np.ndarray
    regions: list[Region]
    plane: tuple  # index of the plane in the layer's stack (spatial) axes; () for a 2D image


class AnnotateJob:
    """``run()`` yields ``Progress`` and returns a :class:`Proposal`, or None when cancelled.

    Parameters
    ----------
    model : UNet
    image : array
        The image (a lazy array is fine); ``index`` selects the plane (axes ``axes``: C, Y, X at most).
    plane : tuple
        That plane's index in the stack (spatial) axes, recorded in the proposal.
    exclude : bool array (Y, X), optional
        Pixels already annotated: no region overlaps them.
    sampling : {"top", "power"}
        How :func:`~napari_seamless_unet.core.regions.propose_regions` picks the regions.
    measure : {"entropy", "disagreement"}
        What the map measures (:func:`~napari_seamless_unet.core.uncertainty.uncertainty`); default
        ``core.regions.PROPOSAL_MEASURE``.
    """

    def __init__(
        self,
        model,
        image,
        *,
        axes: str,
        index=(),
        plane=(),
        size=128,
        count=4,
        exclude=None,
        device=None,
        sampling="top",
        measure=PROPOSAL_MEASURE,
    ):
        self.model, self.image, self.axes, self.index, self.plane = model, image, axes, tuple(index), tuple(plane)
        self.size, self.count, self.exclude, self.device = int(size), int(count), exclude, device
        self.sampling, self.measure = sampling, measure
        self._stop = threading.Event()

    def cancel(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> Generator[Progress, None, Proposal | None]:
        from ..core.uncertainty import iter_uncertainty

        image = np.asarray(self.image[self.index]) if self.index else self.image
        gen = iter_uncertainty(
            self.model, image, axes=self.axes, name="the image", device=self.device, measure=self.measure
        )
        while True:
            if self._stop.is_set():
                gen.close()
                return None
            try:
                event = next(gen)
            except StopIteration as done:
                values = done.value
                break
            yield event
        exclude = None if self.exclude is None else np.asarray(self.exclude, dtype=bool)
        regions = propose_regions(values, size=self.size, count=self.count, exclude=exclude, sampling=self.sampling)
        yield Progress(1, 1, "regions", {"regions": len(regions)})
        return Proposal(values, regions, self.plane)
