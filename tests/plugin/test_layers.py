"""Layer conversion: axes of 2D, stacks, RGB, channels; lazy dask data; multiscale level 0; current plane."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from napari.layers import Image, Labels

from napari_seamless_unet.core.errors import InvalidShapeError, UNetInputError
from napari_seamless_unet.plugin import _layers


@pytest.mark.parametrize(
    ("shape", "kwargs", "expected"),
    [
        ((32, 40), {}, "YX"),
        ((5, 32, 40), {}, "ZYX"),
        ((3, 5, 32, 40), {}, "TZYX"),
        ((32, 40, 3), {"rgb": True}, "YXC"),
        ((4, 32, 40, 3), {"rgb": True}, "ZYXC"),
        ((6, 2, 32, 40), {"axis_labels": ("t", "c", "y", "x")}, "TCYX"),
    ],
)
def test_image_axes(shape, kwargs, expected):
    layer = Image(np.zeros(shape, np.float32), **kwargs)
    assert _layers.image_axes(layer) == expected


def test_channels_first_with_a_multichannel_model():
    layer = Image(np.zeros((2, 32, 40), np.float32))
    assert _layers.image_axes(layer) == "ZYX"
    assert _layers.image_axes(layer, in_channels=2) == "CYX"


def test_dask_layers_stay_lazy_and_multiscale_uses_level_0():
    lazy = da.zeros((4, 64, 64), chunks=(1, 64, 64), dtype=np.float32)
    layer = Image(lazy)
    assert _layers.layer_data(layer) is lazy
    pyramid = [np.zeros((64, 64), np.float32), np.zeros((32, 32), np.float32)]
    multi = Image(pyramid, multiscale=True)
    assert _layers.layer_data(multi) is pyramid[0]
    assert _layers.image_axes(multi) == "YX"


def test_spatial_transform_drops_the_colour_axis():
    rgb = Image(np.zeros((4, 16, 16, 3), np.uint8), rgb=True, scale=(2.0, 0.5, 0.5), translate=(1, 2, 3))
    assert _layers.spatial_transform(rgb, "ZYXC") == {"scale": (2.0, 0.5, 0.5), "translate": (1.0, 2.0, 3.0)}
    channels = Image(np.zeros((2, 16, 16), np.float32), scale=(1.0, 0.3, 0.4))
    assert _layers.spatial_transform(channels, "CYX") == {"scale": (0.3, 0.4), "translate": (0.0, 0.0)}


def test_current_plane_follows_the_viewer_through_the_layer_transform(make_napari_viewer):
    viewer = make_napari_viewer()
    layer = viewer.add_image(np.zeros((6, 3, 20, 20), np.float32), scale=(1.0, 2.0, 1.0, 1.0), translate=(0, 4, 0, 0))
    viewer.dims.set_point(0, 4)
    viewer.dims.set_point(1, 8)  # world z = 8 is data z = (8 - 4) / 2 = 2
    assert _layers.current_plane(layer, viewer, "TZYX") == {"T": 4, "Z": 2}


def _pair(image, labels, **kwargs):
    return Image(image, name="img", **kwargs), Labels(labels, name="lab")


def test_training_data_keeps_only_annotated_planes():
    image = np.random.default_rng(0).random((5, 24, 24)).astype(np.float32)
    labels = np.zeros((5, 24, 24), np.int32)
    labels[1, 3:8, 3:8] = 1
    labels[3, 10:15, 10:15] = 2
    data = _layers.training_data([_pair(image, labels)])
    assert data.axes == "YX" and data.channels == 1
    assert len(data.images) == 2
    np.testing.assert_array_equal(data.images[0], image[1])
    np.testing.assert_array_equal(data.labels[1], labels[3])
    assert "2 annotated plane(s) of 5" in data.summary


def test_training_data_moves_rgb_channels_first():
    image = np.zeros((24, 24, 3), np.uint8)
    image[..., 1] = 7
    labels = np.zeros((24, 24), np.int32)
    labels[2:5, 2:5] = 1
    data = _layers.training_data([_pair(image, labels, rgb=True)])
    assert data.axes == "CYX" and data.channels == 3
    assert data.images[0].shape == (3, 24, 24)
    assert np.all(data.images[0][1] == 7) and np.all(data.images[0][0] == 0)


@pytest.mark.parametrize(
    ("pairs", "error", "message"),
    [
        ([], UNetInputError, "no training data"),
        ([(Image(np.zeros((8, 8))), None)], UNetInputError, "no Labels layer"),
        ([(None, Labels(np.ones((8, 8), int)))], UNetInputError, "choose an image layer"),
        ([_pair(np.zeros((8, 8)), np.ones((8, 9), int))], InvalidShapeError, "must cover the same pixels"),
        ([_pair(np.zeros((8, 8)), np.zeros((8, 8), int))], UNetInputError, "have no annotation"),
    ],
)
def test_training_data_errors_name_the_problem(pairs, error, message):
    with pytest.raises(error, match=message):
        _layers.training_data(pairs)


def test_training_data_rejects_mixed_channel_counts():
    grey = _pair(np.zeros((8, 8)), np.ones((8, 8), int))
    rgb = _pair(np.zeros((8, 8, 3), np.uint8), np.ones((8, 8), int), rgb=True)
    with pytest.raises(UNetInputError, match="channel"):
        _layers.training_data([grey, rgb])


def test_guess_labels_layer_prefers_the_name_then_the_shape():
    image = Image(np.zeros((8, 8)), name="cells")
    other = Labels(np.zeros((8, 8), int), name="other")
    mine = Labels(np.zeros((8, 8), int), name="cells labels")
    wrong = Labels(np.zeros((9, 9), int), name="cells wrong shape")
    assert _layers.guess_labels_layer(image, [other, wrong, mine]) is mine
    assert _layers.guess_labels_layer(image, [wrong, other]) is other
    assert _layers.guess_labels_layer(image, [wrong]) is None
