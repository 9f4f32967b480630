"""The weighted loss: unannotated pixels neither count nor dilute it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_seamless_unet.core.augment import Augmentation, PlaneStore, sample_batch
from napari_seamless_unet.core.model import UNet
from napari_seamless_unet.core.synthetic import touching_discs
from napari_seamless_unet.core.train import weighted_loss


def test_ignored_pixels_do_not_contribute():
    img, lab = touching_discs((80, 80), n_objects=8, seed=2)
    target = (lab > 0).astype(np.int64)
    weight = np.ones(lab.shape, np.float32)
    weight[20:50, 10:70] = 0
    other = target.copy()
    other[20:50, 10:70] = 1 - other[20:50, 10:70]  # flip every ignored label
    model = UNet(1, 2, 4, 2, 0.0)
    results = []
    for t in (target, other):
        store = PlaneStore([(img[None], t, weight)], torch.device("cpu"))
        image, tgt, w = sample_batch(store, 60, 3, Augmentation(), torch.Generator().manual_seed(0))
        assert (w == 0).any()
        model.zero_grad()
        loss = weighted_loss(model(image), tgt, w)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    assert torch.equal(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1], strict=True):
        assert torch.equal(a, b)
    # ...while flipping annotated labels does change the loss.
    changed = target.copy()
    changed[55:70] = 1 - changed[55:70]
    store = PlaneStore([(img[None], changed, weight)], torch.device("cpu"))
    image, tgt, w = sample_batch(store, 60, 3, Augmentation(), torch.Generator().manual_seed(0))
    assert not torch.equal(weighted_loss(model(image), tgt, w).detach(), results[0][0])


def test_loss_normalised_by_annotated_pixels():
    logits = torch.zeros(1, 2, 4, 4)
    target = torch.zeros(1, 6, 6, dtype=torch.long)
    weight = torch.zeros(1, 6, 6)
    weight[0, 1:3, 1:5] = 1.0  # 8 pixels inside the 4x4 output region
    assert weighted_loss(logits, target, weight).item() == pytest.approx(np.log(2), rel=1e-6)
