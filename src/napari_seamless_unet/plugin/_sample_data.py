"""Sample data: a synthetic image of touching discs and its instance labels (generated, nothing downloaded)."""

from __future__ import annotations

from ..core.synthetic import touching_discs


def make_touching_discs():
    """The ``touching_discs`` image and labels as two layers, ready to train on and segment.

    Returns
    -------
    list of LayerData tuples
        An Image layer ``"touching discs"`` and a Labels layer ``"touching discs labels"`` (256 x 256).
    """
    image, labels = touching_discs(shape=(256, 256), seed=0)
    return [
        (image, {"name": "touching discs"}, "image"),
        (labels, {"name": "touching discs labels", "opacity": 0.4}, "labels"),
    ]
