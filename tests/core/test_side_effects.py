"""A call leaves the caller's model, the global random states and torch's global flags as it found them."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from napari_seamless_unet import UNet, predict, segment
from napari_seamless_unet.core.errors import UNetInputError


def tiny(task="instances", num_classes=2):
    torch.manual_seed(0)
    return UNet(in_channels=1, num_classes=num_classes, base_channels=4, depth=2, task=task)


def model_state(model: torch.nn.Module) -> dict:
    return {
        "devices": {str(p.device) for p in model.parameters()},
        "dtypes": {p.dtype for p in model.parameters()},
        # nn.Module.to(memory_format=channels_last) works in place and leaves 4D weights non-contiguous
        "contiguous": all(t.is_contiguous() for t in model.state_dict().values()),
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "values": {k: v.detach().clone() for k, v in model.state_dict().items()},
    }


def global_state() -> dict:
    cudnn = torch.backends.cudnn
    state = {
        "python_rng": random.getstate(),
        "numpy_rng": np.random.get_state()[1].copy(),  # noqa: NPY002 (the legacy global state is what a call must not touch)
        "torch_rng": torch.get_rng_state(),
        "grad_enabled": torch.is_grad_enabled(),
        "default_dtype": torch.get_default_dtype(),
        "threads": torch.get_num_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "matmul_precision": torch.get_float32_matmul_precision(),
        "cudnn": (cudnn.benchmark, cudnn.deterministic, cudnn.enabled, cudnn.allow_tf32),
    }
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def assert_same(before: dict, after: dict) -> None:
    assert before.keys() == after.keys()
    for key, value in before.items():
        other = after[key]
        if key == "values":
            for name, tensor in value.items():
                assert torch.equal(tensor, other[name]), f"parameter {name} changed"
        elif isinstance(value, torch.Tensor):
            assert torch.equal(value, other), key
        elif isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, other, err_msg=key)
        elif key == "cuda_rng":
            assert all(torch.equal(a, b) for a, b in zip(value, other)), key
        else:
            assert value == other, f"{key}: {value} -> {other}"


@pytest.mark.parametrize("call", [predict, segment])
@pytest.mark.parametrize("training", [True, False])
def test_prediction_leaves_the_model_and_globals_untouched(call, training, device):
    model = tiny().train(training)
    image = np.random.default_rng(0).random((70, 90)).astype(np.float32)
    model_before, globals_before = model_state(model), global_state()
    call(model, image, device=device, tile_shape=(60, 60))
    assert_same(model_before, model_state(model))
    assert_same(globals_before, global_state())


def test_a_model_on_another_dtype_is_predicted_in_float32_and_left_in_its_dtype():
    model = tiny().to(torch.float64)
    image = np.random.default_rng(0).random((40, 40)).astype(np.float32)
    before = model_state(model)
    predict(model, image)
    assert_same(before, model_state(model))


def test_segment_refuses_an_out_array_too_small_for_instance_ids():
    model = tiny()
    image = np.random.default_rng(0).random((40, 50)).astype(np.float32)
    with pytest.raises(UNetInputError, match=r"uint8.*cannot hold instance ids.*int32"):
        segment(model, image, out=np.zeros((40, 50), np.uint8))
    with pytest.raises(UNetInputError, match="int16"):
        segment(model, image, out=np.zeros((40, 50), np.int16))
    out = np.zeros((40, 50), np.uint32)
    assert segment(model, image, out=out) is out


def test_semantic_out_needs_room_for_the_class_ids_and_probabilities_need_floats():
    model = tiny(task="semantic", num_classes=3)
    image = np.random.default_rng(0).random((40, 50)).astype(np.float32)
    segment(model, image, out=np.zeros((40, 50), np.uint8))  # classes 0..2 fit
    with pytest.raises(UNetInputError, match="float32"):
        predict(model, image, out=np.zeros((3, 40, 50), np.int32))
    with pytest.raises(UNetInputError, match="shape"):
        segment(model, image, out=np.zeros((40, 49), np.uint8))


def test_training_with_a_seed_leaves_the_global_random_states_untouched():
    from napari_seamless_unet.core.synthetic import touching_discs
    from napari_seamless_unet.core.train import TrainConfig, train

    image, labels = touching_discs((64, 64), n_objects=5, seed=0)
    config = TrainConfig(base_channels=4, depth=2, tile_size=60, steps=3, val_every=2, device="cpu", seed=0)
    before = global_state()
    first, _ = train([image], [labels], config=config)
    assert_same(before, global_state())
    torch.manual_seed(123)  # whatever the caller's random state is, a seeded run gives the same weights
    second, _ = train([image], [labels], config=config)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
