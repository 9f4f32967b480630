"""3D networks: the shape arithmetic per axis, and overlap-tile prediction of volumes equal to one pass."""

import numpy as np
import pytest
import torch

from napari_seamless_unet import UNet, load_model, predict, save_model
from napari_seamless_unet.core import shapes
from napari_seamless_unet.core.errors import InvalidShapeError, UNetInputError
from napari_seamless_unet.core.layers import Conv3d
from napari_seamless_unet.core.model import count_conv_layers, forward_flops
from napari_seamless_unet.core.tiling import TileGrid, reflect_indices


def test_isotropic_3d_network_has_the_papers_arithmetic_on_every_axis():
    model = UNet(base_channels=2, depth=4, ndim=3)
    assert model.halo == (92, 92, 92)
    assert model.output_shape((572, 572, 572)) == (388, 388, 388)
    assert count_conv_layers(model) == 23
    assert all(isinstance(m, torch.nn.Conv3d) for m in model.modules() if isinstance(m, torch.nn.Conv2d | Conv3d))


def test_anisotropic_voxels_convolve_and_pool_in_plane_first():
    rules = shapes.anisotropic_rules((3.0, 1.0, 1.0), 3)
    z, y, x = rules
    assert y == x == shapes.AxisRule.paper(3)
    assert z.kernels[0] == 1 and z.pools[0] == 1  # z 3x coarser: in-plane only at the first level
    assert z.kernels[1:] == (3, 3, 3) and z.pools[1:] == (2, 2)
    assert shapes.anisotropic_rules((1, 1, 1), 3) == (shapes.AxisRule.paper(3),) * 3
    model = UNet(base_channels=2, depth=3, ndim=3, voxel_size=(3, 1, 1))
    assert model.halo[0] < model.halo[1] == shapes.halo(3)
    first = model.down[0][0]
    assert first.kernel_size == (1, 3, 3)
    assert model.pools[0].kernel_size == (1, 2, 2)
    # the per-axis arithmetic agrees with what the network does
    z = model.geometry.min_input_shape[0] + model.geometry.step[0]
    shape = (z, model.geometry.min_input_shape[1], model.geometry.min_input_shape[2])
    with torch.inference_mode():
        assert tuple(model(torch.zeros(1, 1, *shape)).shape[2:]) == model.output_shape(shape)


@pytest.mark.parametrize(
    "cin,cout,kernel", [(1, 4, (3, 3, 3)), (4, 4, (3, 3, 3)), (4, 8, (3, 3, 3)), (3, 5, (1, 3, 3))]
)
def test_conv3d_through_2d_convolutions_equals_conv3d(cin, cout, kernel):
    torch.manual_seed(0)
    conv = Conv3d(cin, cout, kernel)
    x = torch.randn(2, cin, 6, 11, 9)
    expected = torch.nn.functional.conv3d(x, conv.weight, conv.bias)
    torch.testing.assert_close(conv(x), expected, atol=1e-5, rtol=1e-5)
    # and its gradients, which training relies on
    x.requires_grad_(True)
    conv(x).square().sum().backward()
    grad = x.grad.clone()
    x.grad = None
    torch.nn.functional.conv3d(x, conv.weight, conv.bias).square().sum().backward()
    torch.testing.assert_close(grad, x.grad, atol=1e-4, rtol=1e-4)


def test_invalid_3d_shapes_fail_early_with_the_nearest_valid_shape():
    model = UNet(base_channels=2, depth=2, ndim=3)
    with pytest.raises(InvalidShapeError, match="Nearest valid input shape"):
        model(torch.zeros(1, 1, 47, 48, 48))
    with pytest.raises(InvalidShapeError, match="depth, height, width"):
        model(torch.zeros(1, 1, 48, 48))


def single_pass(model: UNet, volume: np.ndarray) -> np.ndarray:
    """One forward pass over the whole mirror-extended (Z, Y, X) volume: what every tiling must reproduce."""
    offset, scale = model.normalization.statistics(volume[None], 0)
    norm = (volume - offset[0]) * scale[0]
    geometry = model.geometry
    stride = [step * -(-n // step) for n, step in zip(volume.shape, geometry.step)]
    size = geometry.input_shape_for_output(stride)
    index = np.ix_(*(reflect_indices(-h, -h + s, n) for h, s, n in zip(geometry.halo, size, volume.shape)))
    with torch.inference_mode():
        logits = model(torch.from_numpy(np.ascontiguousarray(norm[index], dtype=np.float32))[None, None])
    crop = tuple(slice(0, n) for n in volume.shape)
    return torch.softmax(logits, 1)[0][(slice(None), *crop)].numpy()


@pytest.mark.parametrize(
    "depth,voxel_size,shape",
    [(1, None, (9, 23, 31)), (2, (3, 1, 1), (7, 45, 38)), (2, None, (21, 25, 22)), (3, (2, 1, 1), (11, 45, 44))],
)
def test_tiled_3d_prediction_equals_one_pass(depth, voxel_size, shape, device):
    torch.manual_seed(depth)
    model = UNet(1, 3, base_channels=2, depth=depth, ndim=3, voxel_size=voxel_size, dropout=0).eval()
    volume = np.random.default_rng(depth).random(shape).astype(np.float32)
    expected = single_pass(model, volume)
    geometry = model.geometry
    halves = geometry.input_shape_for_output([step * -(-n // (2 * step)) for n, step in zip(shape, geometry.step)])
    tiles = [halves]  # about two tiles per axis
    if depth < 3:
        tiles.append(tuple(m + s for m, s in zip(geometry.min_input_shape, geometry.step)))  # one step per axis
    for tile in tiles:
        result = predict(model, volume, axes="ZYX", tile_shape=tile, device=device, precision="fp32")
        assert len(TileGrid.for_tile_shape(shape, tile, geometry)) > 1
        np.testing.assert_allclose(result, expected, atol=2e-5)


def test_3d_model_predicts_every_volume_of_a_time_lapse_and_channels():
    torch.manual_seed(0)
    model = UNet(2, 2, base_channels=2, depth=1, ndim=3, dropout=0).eval()
    movie = np.random.default_rng(0).random((2, 9, 2, 20, 21)).astype(np.float32)  # TZCYX
    result = predict(model, movie, axes="TZCYX", device="cpu")
    assert result.shape == (2, 2, 9, 20, 21)
    alone = predict(model, movie[1], axes="ZCYX", device="cpu")
    np.testing.assert_allclose(result[:, 1], alone, atol=1e-6)


def test_3d_model_refuses_an_image_without_z():
    model = UNet(base_channels=2, depth=1, ndim=3)
    with pytest.raises(UNetInputError, match=r"3D network.*no Z axis"):
        predict(model, np.zeros((30, 30), np.float32))


def test_3d_model_file_records_ndim_and_voxel_size(tmp_path):
    model = UNet(base_channels=2, depth=2, ndim=3, voxel_size=(2.5, 0.5, 0.5))
    path = save_model(model, tmp_path / "m.unet.pt") or tmp_path / "m.unet.pt"
    loaded = load_model(path)
    assert loaded.ndim == 3 and loaded.voxel_size == (2.5, 0.5, 0.5)
    assert loaded.geometry.rules == model.geometry.rules
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)


def test_forward_flops_counts_3d_convolutions():
    model = UNet(base_channels=2, depth=1, ndim=3)
    shape = (20, 20, 20)
    # level 0: 1->2 and 2->2 convs of 27 taps; bottom 2->4, 4->4; up 4->2 (1 tap), 4->2, 2->2; head 2->2
    sizes = [18, 16, 6, 4, 8, 6, 4, 4]
    taps = [27, 27, 27, 27, 1, 27, 27, 1]
    channels = [(1, 2), (2, 2), (2, 4), (4, 4), (4, 2), (4, 2), (2, 2), (2, 2)]
    expected = sum(2 * a * b * t * s**3 for (a, b), t, s in zip(channels, taps, sizes))
    assert forward_flops(model, shape) == expected
