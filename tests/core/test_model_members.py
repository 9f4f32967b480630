"""Ensembles: ``UNet(members=K)``, K networks of one architecture that predict their mean probabilities."""

import numpy as np
import pytest
import torch

from napari_seamless_unet import UNet, load_model, predict, save_model
from napari_seamless_unet.core.model import count_conv_layers, forward_flops


def test_the_output_is_the_log_of_the_members_mean_probabilities(device):
    torch.manual_seed(0)
    net = UNet(1, 3, 4, 2, members=3).to(device).eval()
    x = torch.randn(2, 1, 60, 76, device=device)
    with torch.inference_mode():
        out = net(x)
        members = net.member_logits(x)
    assert len(members) == 3 and out.shape == members[0].shape == (2, 3, 20, 36)
    mean = sum(torch.softmax(m, dim=1) for m in members) / 3
    assert torch.allclose(torch.softmax(out, dim=1), mean, atol=1e-6)
    assert torch.allclose(out.exp().sum(dim=1), torch.ones(2, 20, 36, device=device), atol=1e-5)
    # independently initialised: the members disagree
    assert not torch.allclose(members[0], members[1])
    # the first member is the network's own layers: a one-member network with its weights gives its logits
    single = UNet(1, 3, 4, 2).to(device).eval()
    single.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("other_members.")})
    with torch.inference_mode():
        assert torch.equal(single(x), members[0])


def test_one_member_is_the_paper_network_with_the_keys_of_older_files():
    net = UNet(base_channels=4, depth=2)
    assert net.members == 1 and "members" not in net.config  # files stay readable by versions without members
    assert not any(k.startswith("other_members") for k in net.state_dict())
    with torch.device("meta"):
        paper = UNet(members=2)
    assert count_conv_layers(paper) == 2 * 23
    assert UNet(**paper.config).config == paper.config and paper.config["members"] == 2
    assert forward_flops(paper, (572, 572)) == 2 * forward_flops(UNet(), (572, 572))
    assert "members=2" in repr(paper)


@pytest.mark.parametrize("members", [0, 1.5, True])
def test_bad_member_counts_fail(members):
    with pytest.raises(ValueError, match="members"):
        UNet(base_channels=2, depth=1, members=members)


def test_an_ensemble_is_saved_loaded_and_tiled_exactly(tmp_path, device):
    torch.manual_seed(1)
    net = UNet(1, 2, 4, 2, dropout=0.0, members=2).eval()
    image = np.random.default_rng(0).random((90, 117), dtype=np.float32)
    whole = predict(net, image, device=device, precision="fp32")[1]
    tiled = predict(net, image, device=device, precision="fp32", tile_shape=(60, 60))[1]
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
    path = save_model(net, tmp_path / "ensemble.unet.pt")
    loaded = load_model(path)
    assert loaded.members == 2
    np.testing.assert_array_equal(predict(loaded, image, device=device, precision="fp32")[1], whole)
    # probabilities are the members' mean: between the two members' own
    single = [UNet(1, 2, 4, 2, dropout=0.0).eval() for _ in range(2)]
    state = net.state_dict()
    single[0].load_state_dict({k: v for k, v in state.items() if not k.startswith("other_members.")})
    single[1].load_state_dict({k[len("other_members.0.") :]: v for k, v in state.items() if k.startswith("other_")})
    each = [predict(s, image, device=device, precision="fp32")[1] for s in single]
    np.testing.assert_allclose(whole, (each[0] + each[1]) / 2, atol=1e-5)
    assert np.abs(each[0] - each[1]).max() > 0.01  # two different networks
