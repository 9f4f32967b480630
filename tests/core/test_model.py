import pytest
import torch
from torch import nn

from napari_seamless_unet import UNet
from napari_seamless_unet.core.errors import InvalidShapeError
from napari_seamless_unet.core.model import count_conv_layers, flops_per_output_pixel, forward_flops


def test_paper_network_has_23_conv_layers_and_maps_572_to_388():
    net = UNet()
    assert count_conv_layers(net) == 23
    assert net.output_shape((572, 572)) == (388, 388)
    with torch.inference_mode():
        out = net.eval()(torch.zeros(1, 1, 572, 572))
    assert out.shape == (1, 2, 388, 388)


def test_architecture_follows_the_paper():
    net = UNet(base_channels=64, depth=4)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    ups = [m for m in net.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert all(c.padding == (0, 0) for c in convs), "convolutions must be unpadded"
    assert [c.out_channels for c in convs[:10:2]] == [64, 128, 256, 512, 1024]  # doubling down the path
    assert all(u.stride == (2, 2) and u.kernel_size == (2, 2) for u in ups)
    assert [(u.in_channels, u.out_channels) for u in ups] == [(1024, 512), (512, 256), (256, 128), (128, 64)]
    assert convs[-1].kernel_size == (1, 1) and convs[-1].out_channels == 2
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.modules()) == 1  # one module reused at every level
    assert any(isinstance(m, nn.Dropout2d) for m in net.modules())


def test_he_initialisation_std():
    torch.manual_seed(0)
    net = UNet(base_channels=32, depth=2)
    conv = net.down[1][2]  # 64 -> 64, 3x3: fan_in = 576
    expected = (2.0 / (conv.in_channels * 9)) ** 0.5
    assert conv.weight.std().item() == pytest.approx(expected, rel=0.05)
    assert torch.count_nonzero(conv.bias) == 0


@pytest.mark.parametrize("depth,tile,out", [(1, 18, 2), (2, 60, 20), (3, 124, 36), (4, 188, 4), (4, 572, 388)])
def test_small_configurations_run(depth, tile, out, device):
    net = UNet(in_channels=3, num_classes=4, base_channels=2, depth=depth).to(device).eval()
    with torch.inference_mode():
        y = net(torch.zeros(2, 3, tile, tile + 2**depth, device=device))
    assert y.shape == (2, 4, out, out + 2**depth)
    assert net.output_shape((tile, tile)) == (out, out)


def test_invalid_input_fails_early_with_nearest_sizes():
    net = UNet(base_channels=2, depth=4)
    with pytest.raises(InvalidShapeError, match=r"572 or 588|nearest valid"):
        net(torch.zeros(1, 1, 580, 572))
    with pytest.raises(InvalidShapeError, match="channel"):
        net(torch.zeros(1, 3, 572, 572))


@pytest.mark.parametrize("kwargs", [{"depth": 0}, {"num_classes": 1}, {"dropout": 1.5}, {"task": "panoptic"}])
def test_bad_constructor_arguments(kwargs):
    with pytest.raises(ValueError):
        UNet(**kwargs)


def test_config_rebuilds_the_same_architecture():
    net = UNet(in_channels=2, num_classes=3, base_channels=4, depth=2, dropout=0.1, task="semantic")
    clone = UNet(**net.config)
    assert clone.config == net.config
    assert [p.shape for p in clone.parameters()] == [p.shape for p in net.parameters()]


def test_batch_norm_is_optional_and_old_configs_load_without_it():
    net = UNet(base_channels=4, depth=2, batch_norm=True)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == 10  # one per 3x3 convolution
    assert UNet(**net.config).config == net.config
    old = {k: v for k, v in UNet(base_channels=4, depth=2).config.items() if k != "batch_norm"}
    plain = UNet(**old)
    assert not plain.batch_norm and not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    # the layer indices of a network without batch norm are those of files written before the option existed
    assert "down.0.2.weight" in plain.state_dict()


def test_flop_count_matches_torch_counter():
    from torch.utils.flop_counter import FlopCounterMode

    net = UNet(base_channels=8, depth=3).eval()
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        net(torch.zeros(1, 1, 124, 140))
    assert forward_flops(net, (124, 140)) == pytest.approx(counter.get_total_flops(), rel=0.01)
    # Useful work per output pixel is less than what a finite tile executes per output pixel.
    assert flops_per_output_pixel(net) * 36 * 52 < forward_flops(net, (124, 140))
