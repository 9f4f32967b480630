"""The training loss: the paper's pixel-wise softmax cross-entropy, weighted by the weight map."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..model import center_crop


def weighted_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Pixel-wise softmax cross-entropy weighted by the map, on the network's output region.

    ``target`` and ``weight`` cover the input tile and are center-cropped to the output. The sum is divided by
    the number of pixels with non-zero weight, so unannotated pixels neither count nor dilute the loss.
    """
    size = logits.shape[2:]
    target, weight = center_crop(target, size), center_crop(weight, size)
    pixel = F.cross_entropy(logits.float(), target, reduction="none")
    return (pixel * weight).sum() / (weight > 0).sum().clamp_min(1)
