"""The validation split: a strip of every plane is held out, so no plane is lost to training."""

from __future__ import annotations

import numpy as np
import pytest

from napari_seamless_unet.core.train import TrainConfig
from napari_seamless_unet.core.train.data import Plane
from napari_seamless_unet.core.train.split import split


def _plane(h: int, w: int, name: str = "p") -> Plane:
    rng = np.random.default_rng(h * 1000 + w)
    image = rng.random((1, h, w)).astype(np.float32)
    target = (rng.random((h, w)) > 0.5).astype(np.int64)
    weight = np.ones((h, w), np.float32)
    return Plane(image, image.copy(), target, np.ones((h, w), bool), target.copy(), weight, name=name)


@pytest.mark.parametrize(("h", "w", "fraction"), [(100, 60, 0.2), (60, 100, 0.2), (64, 64, 0.25), (90, 90, 0.1)])
def test_every_plane_gives_a_strip_to_validation_and_the_rest_to_training(h, w, fraction):
    plane = _plane(h, w)
    context = 12
    train, val = split([plane, _plane(h, w, "q")], TrainConfig(validation_fraction=fraction), context)
    assert len(train) == len(val) == 2
    axis = 0 if h >= w else 1
    size = (h, w)[axis]
    held = round(fraction * size)
    t, v = train[0], val[0]
    assert t.target.shape[axis] == size - held and t.target.shape[1 - axis] == (h, w)[1 - axis]
    # The training part is exactly the start of the plane.
    np.testing.assert_array_equal(
        t.image, plane.image[:, : size - held] if axis == 0 else plane.image[..., : size - held]
    )
    # The validation part: the strip plus real context before it; only the strip is scored.
    assert v.target.shape[axis] == held + context
    scored = v.scored[axis]
    assert scored.stop - scored.start == held
    assert v.valid.sum() == held * (h, w)[1 - axis] and v.weight[~v.valid].max() == 0
    strip = plane.target[size - held :] if axis == 0 else plane.target[:, size - held :]
    np.testing.assert_array_equal(v.target[v.scored], strip)


def test_no_pixel_is_trained_on_and_scored():
    plane = _plane(80, 80)
    train, val = split([plane], TrainConfig(validation_fraction=0.3), 10)
    trained_rows = train[0].target.shape[0]
    first_scored_row = 80 - val[0].target.shape[0] + val[0].scored[0].start
    assert trained_rows == first_scored_row


def test_planes_too_small_for_a_strip_validate_on_the_training_data():
    planes = [_plane(20, 20)]
    with pytest.warns(UserWarning, match="too small"):
        train, val = split(planes, TrainConfig(validation_fraction=0.2), 5)
    assert train == planes and val == planes


def test_no_fraction_validates_on_the_training_planes():
    planes = [_plane(64, 64)]
    train, val = split(planes, TrainConfig(validation_fraction=0.0), 5)
    assert train == planes and val == planes
