"""The validation split: a seeded share of the planes, never all of them, never none."""

from __future__ import annotations

import numpy as np
import pytest

from napari_seamless_unet.core.train import TrainConfig
from napari_seamless_unet.core.train.data import Plane
from napari_seamless_unet.core.train.split import split


def _planes(n: int) -> list[Plane]:
    blank = np.zeros((4, 4))
    return [Plane(blank[None], blank[None], blank, blank > 0, None, name=str(i)) for i in range(n)]


@pytest.mark.parametrize(("n", "fraction", "n_val"), [(10, 0.2, 2), (10, 0.01, 1), (3, 0.99, 2), (2, 0.5, 1)])
def test_split_holds_out_a_share(n, fraction, n_val):
    planes = _planes(n)
    train, val = split(planes, TrainConfig(validation_fraction=fraction))
    assert len(val) == n_val and len(train) == n - n_val
    assert {p.name for p in train} | {p.name for p in val} == {p.name for p in planes}
    assert not {p.name for p in train} & {p.name for p in val}


def test_split_is_seeded():
    planes = _planes(20)
    names = [[p.name for p in split(planes, TrainConfig(seed=s))[1]] for s in (0, 0, 1)]
    assert names[0] == names[1] != names[2]


@pytest.mark.parametrize(("n", "fraction"), [(1, 0.2), (5, 0.0)])
def test_one_plane_or_no_fraction_validates_on_the_training_planes(n, fraction):
    planes = _planes(n)
    train, val = split(planes, TrainConfig(validation_fraction=fraction))
    assert train == planes and val == planes
