"""3D augmentation keeps image, labels and weights aligned and respects anisotropic voxel spacing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_seamless_unet.core.augment import Augmentation
from napari_seamless_unet.core.augment3d import (
    VolumeStore,
    _cubic_weights,
    _sampling_offsets,
    elastic_field_3d,
    sample_batch_3d,
)
from napari_seamless_unet.core.tiling import reflect_indices

NO_AUGMENTATION = Augmentation(elastic_std=0, flip=False, rotate90=False, rotation=0, brightness=0, contrast=0, gamma=0)


def _label_volume(shape=(12, 40, 36), seed=0):
    """Blocky labels 0..3 with edges along every axis."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 4, size=(shape[0] // 3 + 1, shape[1] // 6 + 1, shape[2] // 6 + 1))
    return np.kron(coarse, np.ones((3, 6, 6), dtype=np.int64))[: shape[0], : shape[1], : shape[2]]


def _store(device="cpu", seed=0):
    classes = _label_volume(seed=seed)
    image = classes.astype(np.float32)[None]  # the image is the label volume
    weight = np.ones(classes.shape, np.float32)
    weight[:, :, :6] = 0  # an unannotated slab
    return VolumeStore([(image, classes, weight)], torch.device(device)), classes


def test_shapes_and_dtypes(device):
    store, classes = _store(device)
    image, target, weight = sample_batch_3d(store, (5, 20, 16), 3, Augmentation(), torch.Generator().manual_seed(0))
    assert image.shape == (3, 1, 5, 20, 16) and image.dtype == torch.float32
    assert target.shape == (3, 5, 20, 16) and target.dtype == torch.long
    assert weight.shape == (3, 5, 20, 16) and weight.dtype == torch.float32
    assert image.device.type == torch.device(device).type
    assert set(torch.unique(target).tolist()) <= set(np.unique(classes).tolist())


def test_volumes_are_drawn_by_size():
    small = (np.zeros((1, 2, 4, 4), np.float32), np.zeros((2, 4, 4)), np.ones((2, 4, 4)))
    large = (np.zeros((1, 6, 4, 4), np.float32), np.zeros((6, 4, 4)), np.ones((6, 4, 4)))
    store = VolumeStore([small, large], torch.device("cpu"))
    assert len(store) == 2 and store.tensors[0].shape == (3, 2, 4, 4)
    assert torch.allclose(store.probabilities, torch.tensor([0.25, 0.75], dtype=torch.float64))


def _coordinates_volume(shape):
    """Image channels are the x, y and z coordinates; the target numbers every voxel."""
    z, y, x = np.indices(shape)
    image = np.stack([x, y, z]).astype(np.float32)
    code = (z * shape[1] + y) * shape[2] + x
    return VolumeStore([(image, code, np.ones(shape, np.float32))], torch.device("cpu"))


def _mirrored_start(coords: np.ndarray, size: int) -> int | None:
    """The start whose mirrored indices the sampled source coordinates are, or None."""
    for start in range(-2 * size, 2 * size):
        if np.array_equal(coords, reflect_indices(start, start + len(coords), size)):
            return start
    return None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_without_augmentation_a_sample_is_a_mirrored_crop(seed):
    shape, tile = (7, 30, 26), (5, 12, 10)
    store = _coordinates_volume(shape)
    image, target, _ = sample_batch_3d(store, tile, 6, NO_AUGMENTATION, torch.Generator().manual_seed(seed))
    code = target.numpy()
    sz, sy, sx = code // (shape[1] * shape[2]), code // shape[2] % shape[1], code % shape[2]
    for b in range(code.shape[0]):
        # Labels are read at integer positions: an exact crop with mirrored borders, in the source orientation.
        starts = [
            _mirrored_start(sz[b, :, 0, 0], shape[0]),
            _mirrored_start(sy[b, 0, :, 0], shape[1]),
            _mirrored_start(sx[b, 0, 0, :], shape[2]),
        ]
        assert None not in starts, starts
        zi, yi, xi = (reflect_indices(s, s + t, n) for s, t, n in zip(starts, tile, shape, strict=True))
        assert np.array_equal(sz[b], np.broadcast_to(zi[:, None, None], tile))
        assert np.array_equal(sy[b], np.broadcast_to(yi[None, :, None], tile))
        assert np.array_equal(sx[b], np.broadcast_to(xi[None, None, :], tile))
        # The image is the same crop shifted by the sample's sub-voxel fraction (at most half a voxel), the same
        # everywhere away from the mirror folds, where linear interpolation of a coordinate is exact.
        for channel, src, n in ((0, sx[b], shape[2]), (1, sy[b], shape[1]), (2, sz[b], shape[0])):
            inside = (src >= 1) & (src <= n - 2)
            offset = np.abs(image[b, channel].numpy() - src)[inside]
            assert offset.max() <= 0.5 + 1e-4
            assert offset.max() - offset.min() < 1e-4


def test_labels_follow_the_image_under_all_augmentations(device):
    store, classes = _store(device)
    aug = Augmentation(brightness=0, contrast=0, gamma=0, elastic_std=6)
    image, target, _ = sample_batch_3d(store, (6, 24, 24), 6, aug, torch.Generator().manual_seed(1), (3.0, 1.0, 1.0))
    assert set(torch.unique(target).tolist()) <= set(np.unique(classes).tolist())
    # Where trilinear interpolation stayed inside one label region, the image is exactly that label.
    pure = torch.isclose(image[:, 0], image[:, 0].round(), atol=1e-4)
    agree = image[:, 0].round().long() == target
    assert pure.float().mean() > 0.4
    assert agree[pure].float().mean() > 0.99


def test_z_flips_and_rot90_keep_image_and_labels_aligned():
    store, _ = _store()
    aug = Augmentation(elastic_std=0, flip=True, rotate90=True, rotation=0, brightness=0, contrast=0, gamma=0)
    image, target, _ = sample_batch_3d(store, (6, 16, 16), 16, aug, torch.Generator().manual_seed(3), (3.0, 1.0, 1.0))
    # Nearest and trilinear reads agree wherever the image is a whole label: at least every voxel whose
    # neighbours in the sub-voxel shift share its label. With flips and 90-degree turns only, both must agree.
    pure = torch.isclose(image[:, 0], image[:, 0].round(), atol=1e-4)
    assert pure.float().mean() > 0.5
    assert torch.equal(image[:, 0].round().long()[pure], target[pure])


def test_z_flips_and_rot90_happen():
    """The coordinate volume shows which way each sample's axes run: z is flipped, y and x swap, never z."""
    store = _coordinates_volume((9, 30, 30))
    aug = Augmentation(elastic_std=0, flip=True, rotate90=True, rotation=0, brightness=0, contrast=0, gamma=0)
    image, _, _ = sample_batch_3d(store, (4, 8, 8), 32, aug, torch.Generator().manual_seed(4))
    x, y, z = image[:, 0], image[:, 1], image[:, 2]
    dz_along_z = (z[:, 2, 4, 4] - z[:, 1, 4, 4]).round()
    assert {-1.0, 1.0} <= set(dz_along_z.tolist())  # flipped or not (away from folds)
    # z never changes within a plane of the sample: no rotation mixes z with y or x.
    assert torch.allclose(z.amax(dim=(2, 3)), z.amin(dim=(2, 3)), atol=1e-4)
    x_runs_along_rows = (x[:, 2, 4, 5] - x[:, 2, 4, 4]).abs().round() == 1
    assert x_runs_along_rows.any() and (~x_runs_along_rows).any()  # some samples turned by 90 degrees
    assert (y[:, 2, 4, 5] - y[:, 2, 4, 4]).abs().round()[~x_runs_along_rows].eq(1).all()


def test_unannotated_voxels_get_zero_weight(device):
    store, _ = _store(device)
    store.tensors[0][2, :, :, :6] = 7  # the unannotated slab gets its own target value
    _, target, weight = sample_batch_3d(
        store, (6, 20, 20), 8, Augmentation(), torch.Generator().manual_seed(2), (2.5, 1.0, 1.0)
    )
    assert (target == 7).any()
    assert (weight[target == 7] == 0).all()
    assert (weight[target != 7] > 0).all()


def test_reproducible_for_a_seed(device):
    store, _ = _store(device)
    aug, spacing = Augmentation(), (3.0, 1.0, 1.0)
    a = sample_batch_3d(store, (4, 16, 16), 3, aug, torch.Generator().manual_seed(5), spacing)
    b = sample_batch_3d(store, (4, 16, 16), 3, aug, torch.Generator().manual_seed(5), spacing)
    c = sample_batch_3d(store, (4, 16, 16), 3, aug, torch.Generator().manual_seed(6), spacing)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    assert not torch.equal(a[0], c[0])


def test_elastic_displacements_are_physical():
    """Along a z three times coarser, displacements are a third as many voxels, and so is the strain per voxel."""
    aug = Augmentation(elastic_std=10.0)
    ratio = 3.0
    field = elastic_field_3d(160, (16, 32, 32), aug, torch.Generator().manual_seed(0), (ratio, 1.0, 1.0))
    assert field.shape == (160, 3, 16, 32, 32)
    std_x, std_y, std_z = (float(field[:, k].std()) for k in range(3))
    assert 0.75 < std_z * ratio / std_x < 1.33
    assert 0.75 < std_y / std_x < 1.33
    assert 4.0 < std_x < 12.0  # about elastic_std, a little less between control points
    # The same physical strain along z and x: the x displacement changes ratio times faster per z voxel.
    along_x = float(field[:, 0].diff(dim=-1).abs().mean())
    along_z = float(field[:, 0].diff(dim=-3).abs().mean())
    assert 0.6 < along_z / (ratio * along_x) < 1.6
    isotropic = elastic_field_3d(160, (16, 32, 32), aug, torch.Generator().manual_seed(0))
    assert 0.75 < float(isotropic[:, 2].std()) / float(isotropic[:, 0].std()) < 1.33


def test_cubic_weights_match_torch_bicubic():
    n, size = 4, 37
    values = torch.randn(n, dtype=torch.float64)
    expected = F.interpolate(values.view(1, 1, 1, n), size=(1, size), mode="bicubic", align_corners=True).view(-1)
    u = torch.arange(size, dtype=torch.float64) * (n - 1) / (size - 1)
    assert torch.allclose(_cubic_weights(u, n) @ values, expected, atol=1e-6)


@pytest.mark.parametrize("spacing", [(3.0, 1.0, 1.0), (2.0, 1.0, 0.5)])
def test_reads_stay_within_the_rotated_tile_and_the_clamped_deformation(spacing):
    """A sample reads within its in-plane half diagonal (physical) plus 4 std of deformation, z within its half
    depth plus 4 std / ratio: no rotation reaches along z, and a coarse z is deformed by fewer voxels."""
    aug = Augmentation(elastic_std=10)
    tile = (9, 30, 20)
    offsets = _sampling_offsets(64, tile, aug, torch.Generator().manual_seed(7), spacing, torch.device("cpu"))
    assert offsets.shape == (64, *tile, 3)
    rz, ry = spacing[0] / spacing[2], spacing[1] / spacing[2]
    diagonal = np.hypot(ry * 29 / 2, 19 / 2)  # in x pixels
    reach = offsets.abs().amax(dim=(0, 1, 2, 3)).tolist()  # (x, y, z)
    assert reach[0] <= diagonal + 40 + 1e-3
    assert reach[1] <= diagonal / ry + 40 / ry + 1e-3
    assert reach[2] <= 4 + 40 / rz + 1e-3
    assert reach[2] > 4 + 0.2 * 10 / rz  # deformed along z, but by voxels of z
    still = _sampling_offsets(2, tile, NO_AUGMENTATION, torch.Generator(), spacing, torch.device("cpu"))
    assert still.abs().amax(dim=(0, 1, 2, 3)).tolist() == [9.5, 14.5, 4.0]
