"""Input checks: every message names the problem and the fix, before any training work."""

from __future__ import annotations

import time

import numpy as np
import pytest

from napari_seamless_unet.core.errors import UNetInputError
from napari_seamless_unet.core.synthetic import touching_discs
from napari_seamless_unet.core.train import train


def _error_cases():
    img, lab = touching_discs((64, 64), n_objects=6, seed=0)
    float_lab = lab.astype(np.float32)
    float_lab[3, 3] = 0.5
    nan_img = img.copy()
    nan_img[5, 5] = np.nan
    return {
        "shape mismatch": ([img], [lab[:60]], {}, ["labels 0", "(60, 64)", "same pixels"]),
        "float labels": ([img], [float_lab], {}, ["non-integer", "round"]),
        "negative labels": ([img], [lab - 1], {}, ["negative", "relabel"]),
        "empty labels": ([img], [np.zeros_like(lab)], {}, ["empty", "paint"]),
        "no background": ([img], [np.ones_like(lab)], {}, ["no background", "unlabelled='ignore'"]),
        "all ignored": ([img], [np.zeros_like(lab)], {"unlabelled": "ignore"}, ["no annotated pixels", "paint"]),
        "nan image": ([nan_img], [lab], {}, ["NaN", "nan_to_num"]),
        "bool image": ([img > 0.5], [lab], {}, ["bool", "astype"]),
        "string labels": ([img], [lab.astype(str)], {}, ["not a label image", "astype"]),
        "constant image": ([np.full_like(img, 3.0)], [lab], {}, ["constant", "Remove it"]),
        "zero steps": ([img], [lab], {"steps": 0}, ["steps", "positive integer"]),
        "negative steps": ([img], [lab], {"steps": -5}, ["steps", "positive integer"]),
        "too small": ([img[:10, :10]], [lab[:10, :10]], {}, ["smaller than the network's context", "depth 1"]),
        "channel count": (
            [img, np.stack([img, img], 0)],
            [lab, lab],
            {},
            ["2 channel(s)", "same channels as the first"],
        ),
        "pair count": ([img, img], [lab], {}, ["2 training images but 1 label", "one label image per image"]),
        "bad tile": ([img], [lab], {"tile_size": 61}, ["not valid", "Nearest valid"]),
        "second pair": ([img, img], [lab, lab[:, :50]], {}, ["labels 1", "same pixels"]),
    }


@pytest.mark.parametrize("case", list(_error_cases()))
def test_input_errors_name_the_fix(case, tiny):
    images, labels, overrides, expected = _error_cases()[case]
    started = time.perf_counter()
    with pytest.raises(UNetInputError) as info:
        train(images, labels, config=tiny(**overrides))
    for text in expected:
        assert text in str(info.value), (text, str(info.value))
    assert time.perf_counter() - started < 2.0  # reported before any training work


def test_error_messages_use_given_names(discs, tiny):
    images, labels = discs
    with pytest.raises(UNetInputError, match="'cells'"):
        train([images[0]], [labels[0][:-1]], config=tiny(steps=1), names=["cells"])
