"""Training a 3D network: volumes in, 3D tiles, the weight map with voxel spacing, a model that labels in 3D."""

from __future__ import annotations

import numpy as np
import pytest

from napari_seamless_unet import load_model, segment
from napari_seamless_unet.core.errors import UNetInputError
from napari_seamless_unet.core.instances import instances_from_probabilities
from napari_seamless_unet.core.metrics import match_instances
from napari_seamless_unet.core.train import TrainConfig, train
from napari_seamless_unet.core.train.defaults import network_geometry, training_tile_shape


def touching_spheres(shape=(12, 40, 40), spacing=(2.0, 1.0, 1.0), seed=0):
    """Bright balls (in physical units) that touch in pairs, on a dim noisy background; labels 1..n."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, spacing)), indexing="ij")
    labels = np.zeros(shape, np.int32)
    centres = [(11.0, 10.0, 10.0), (11.0, 10.0, 20.0), (11.0, 28.0, 14.0), (11.0, 28.0, 29.0)]
    for k, (cz, cy, cx) in enumerate(centres, start=1):
        inside = (zz - cz) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2 <= 5.5**2
        labels[inside & (labels == 0)] = k
    image = (labels > 0) * rng.uniform(0.6, 1.0, shape) + rng.normal(0, 0.08, shape)
    return image.astype(np.float32), labels


def test_a_tiny_3d_network_learns_touching_spheres_and_segments_them_in_3d(device, tmp_path):
    image, labels = touching_spheres()
    config = TrainConfig(
        ndim=3,
        voxel_size=(2.0, 1.0, 1.0),
        base_channels=4,
        depth=1,
        steps=60,
        learning_rate=5e-3,
        val_every=30,
        validation_fraction=0,
        device=device,
        seed=0,
        save_path=str(tmp_path / "sph.unet.pt"),
        axes="ZYX",
    )
    model, history = train([image], [labels], config=config)
    assert model.ndim == 3 and model.voxel_size == (2.0, 1.0, 1.0)
    assert np.mean(history["loss"][-10:]) < 0.6 * np.mean(history["loss"][:5])
    assert len(history["tile_shape"]) == 3
    loaded = load_model(tmp_path / "sph.unet.pt")
    assert loaded.ndim == 3 and loaded.metadata["train_config"]["ndim"] == 3
    found = segment(loaded, image, axes="ZYX", device=device)
    assert found.shape == labels.shape and found.dtype == np.int32
    # objects are labelled in 3D: every true ball is one object through its planes
    assert match_instances(found, labels)["foreground_iou"] > 0.5


def test_ndim_3_needs_volumes():
    image, labels = touching_spheres()
    with pytest.raises(UNetInputError, match="no Z axis"):
        train([image[5]], [labels[5]], config=TrainConfig(ndim=3, steps=1, axes="YX"))


def test_the_3d_training_tile_spans_about_the_same_physical_length_along_z():
    config = TrainConfig(ndim=3, voxel_size=(3.0, 1.0, 1.0), depth=2)
    geometry = network_geometry(config)
    tile = training_tile_shape(geometry, 88, config.voxel_size, [(64, 200, 200)])
    out = geometry.output_shape(tile)
    assert out[1] == out[2] == 48
    assert abs(out[0] * 3.0 - out[1]) <= 3.0 * geometry.step[0]  # z: 16 planes of 3 = 48 in-plane pixels
    # no longer than the volume needs
    thin = training_tile_shape(geometry, 88, config.voxel_size, [(5, 200, 200)])
    assert geometry.output_shape(thin)[0] < out[0]


def test_3d_training_resolves_and_records_its_settings(device):
    image, labels = touching_spheres()
    config = TrainConfig(ndim=3, voxel_size=(2.0, 1.0, 1.0), base_channels=2, depth=1, steps=2, device=device)
    result = train([image], [labels], config=config)
    assert result.settings["ndim"] == 3 and len(result.settings["tile_shape"]) == 3
    assert tuple(result.model.metadata["train_config"]["voxel_size"]) == (2.0, 1.0, 1.0)


def test_instances_from_probabilities_of_a_3d_model_connect_objects_across_z():
    probabilities = np.zeros((2, 6, 20, 20), np.float32)
    probabilities[1, 1:5, 4:9, 4:9] = 0.9  # one object through four planes
    probabilities[1, 2:4, 12:17, 12:17] = 0.9  # another
    probabilities[0] = 1 - probabilities[1]
    volume = instances_from_probabilities(probabilities, axes="CZYX", ndim=3)
    assert len(np.unique(volume)) == 3
    planes = instances_from_probabilities(probabilities, axes="CZYX")  # 2D: every plane on its own
    assert len(np.unique(planes)) == 4 + 2 + 1


def test_a_3d_models_voxel_size_reaches_the_post_processing():
    from napari_seamless_unet.core.postprocess import label_plane

    _, labels = touching_spheres(spacing=(3.0, 1.0, 1.0))
    foreground = (labels > 0).astype(np.float32)
    probabilities = np.stack([1 - foreground, foreground])
    options = {"method": "watershed", "threshold": 0.5, "min_size": 0, "fill_holes": True, "restore_borders": True}
    physical = instances_from_probabilities(probabilities, axes="CZYX", ndim=3, spacing=(3.0, 1.0, 1.0), **options)
    expected = label_plane(foreground, ndim=3, spacing=(3.0, 1.0, 1.0), **options)
    np.testing.assert_array_equal(physical, expected)
    voxels = instances_from_probabilities(probabilities, axes="CZYX", ndim=3, **options)
    assert not np.array_equal(physical, voxels)  # the watershed's distances differ with the voxel size
