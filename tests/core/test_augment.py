"""Augmentation keeps image, labels and weights aligned."""

from __future__ import annotations

import numpy as np
import torch

from napari_seamless_unet.core.augment import Augmentation, PlaneStore, sample_batch
from napari_seamless_unet.core.synthetic import touching_discs


def _store(device="cpu", seed=0):
    _, labels = touching_discs((96, 80), n_objects=12, seed=seed)
    classes = (labels % 3).astype(np.int64)  # three classes, with edges in many directions
    image = (classes * 10.0).astype(np.float32)[None]  # the image is a function of the labels
    weight = np.ones(labels.shape, np.float32)
    weight[:, :8] = 0  # an unannotated strip
    return PlaneStore([(image, classes, weight)], torch.device(device)), classes


def test_labels_follow_the_image(device):
    store, classes = _store(device)
    aug = Augmentation(brightness=0, contrast=0, gamma=0)
    g = torch.Generator().manual_seed(1)
    image, target, weight = sample_batch(store, 60, 6, aug, g)
    assert image.shape == (6, 1, 60, 60) and target.shape == (6, 60, 60) and weight.shape == (6, 60, 60)
    assert set(torch.unique(target).tolist()) <= set(np.unique(classes).tolist())
    # Where bilinear interpolation stayed inside one label region, image / 10 is exactly that label.
    pure = torch.isclose(image[:, 0] / 10, image[:, 0].div(10).round(), atol=1e-4)
    agree = image[:, 0].div(10).round().long() == target
    assert pure.float().mean() > 0.5
    assert agree[pure].float().mean() > 0.99


def test_augmentations_vary_and_are_reproducible(device):
    store, _ = _store(device)
    aug = Augmentation()
    a = sample_batch(store, 44, 4, aug, torch.Generator().manual_seed(5))
    b = sample_batch(store, 44, 4, aug, torch.Generator().manual_seed(5))
    c = sample_batch(store, 44, 4, aug, torch.Generator().manual_seed(6))
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    assert not torch.equal(a[1], c[1])
    assert not torch.equal(a[1][0], a[1][1])


def test_unannotated_pixels_get_zero_weight(device):
    store, _ = _store(device)
    # Mark the unannotated strip with its own target value: wherever it is sampled, its weight must be 0.
    store.tensors[0][2, :, :8] = 7
    _image, target, weight = sample_batch(store, 60, 8, Augmentation(), torch.Generator().manual_seed(2))
    assert (target == 7).any()
    assert (weight[target == 7] == 0).all()
    assert (weight[target != 7] > 0).all()


def test_source_margin_covers_rotation_and_deformation():
    aug = Augmentation(elastic_std=10)
    assert aug.source_margin(100) >= 50 * 2**0.5 + 40
    assert Augmentation(rotation=0, elastic_std=0).source_margin(100) < 55


def test_elastic_deformation_is_defined_in_pixels_not_per_tile():
    """A small tile is deformed as gently as the paper's 572-pixel tile: the same local strain."""
    from napari_seamless_unet.core.augment import Augmentation, elastic_field

    aug = Augmentation(elastic_std=10.0, elastic_grid=3)

    def strain(tile: int) -> float:
        g = torch.Generator().manual_seed(0)
        field = elastic_field(64, tile, aug, g)
        return float(field.diff(dim=-1).abs().mean())

    small, paper = strain(92), strain(572)
    assert 0.6 < small / paper < 1.6  # with a 3x3 grid over every tile, the 92-pixel tile would strain ~6x more
    field = elastic_field(4, 92, aug, torch.Generator().manual_seed(1))
    assert field.shape == (4, 2, 92, 92) and float(field.abs().max()) <= 40.0
