"""Defaults that fit the device: what the config leaves open is chosen, recorded, and never overrides the user."""

from __future__ import annotations

import pytest
import torch

from napari_seamless_unet.core.model_io import load_model
from napari_seamless_unet.core.train import TrainConfig, learning_rate_factor, resolve_defaults, train


def test_cpu_defaults_are_a_small_network_without_dropout(monkeypatch):
    from napari_seamless_unet.core.train import defaults

    monkeypatch.setattr(defaults, "cpu_has_native_bf16", lambda: False)  # with it, "precision" is chosen too
    config, settings = resolve_defaults(TrainConfig(), torch.device("cpu"), [(512, 512)])
    assert (config.base_channels, config.depth, config.dropout, config.batch_size) == (16, 4, 0.0, 1)
    assert config.members == 1  # an ensemble only where a time budget buys the steps
    assert config.tile_size == 228 + 184  # about 228 output pixels a side
    assert set(settings["automatic"]) == {
        "base_channels",
        "depth",
        "dropout",
        "batch_norm",
        "tile_size",
        "batch_size",
        "members",
        "learning_rate",
    }


def test_explicit_values_and_presets_win():
    config, settings = resolve_defaults(TrainConfig(base_channels=8, tile_size=252), torch.device("cpu"), [(512, 512)])
    assert config.base_channels == 8 and config.tile_size == 252 and "base_channels" not in settings["automatic"]
    paper, _ = resolve_defaults(TrainConfig(preset="paper"), torch.device("cpu"), [(512, 512)])
    assert (paper.base_channels, paper.depth, paper.dropout, paper.tile_size) == (64, 4, 0.5, 572)


def test_the_automatic_depth_fits_the_smallest_image():
    config, _ = resolve_defaults(TrainConfig(), torch.device("cpu"), [(512, 512), (60, 300)])
    assert config.depth == 3  # depth 4 needs 92 pixels of context, depth 3 needs 44


def test_the_resolved_settings_are_recorded_in_the_model_file(tmp_path, device):
    from napari_seamless_unet.core.synthetic import touching_discs

    image, labels = touching_discs((128, 128), n_objects=8, seed=0)
    path = tmp_path / "auto.unet.pt"
    config = TrainConfig(base_channels=4, depth=2, steps=2, save_path=str(path), device=device)
    result = train([image], [labels], config=config)
    stored = load_model(path).metadata
    assert stored["history"]["settings"] == result.settings
    assert result.settings["base_channels"] == 4 and "base_channels" not in result.settings["automatic"]
    assert "tile_size" in result.settings["automatic"] and result.settings["device"].startswith(device)
    assert stored["train_config"]["tile_size"] == result.settings["tile_size"]  # the stored config is complete


def test_learning_rate_warms_up_then_decays_to_a_small_share():
    factors = [learning_rate_factor(f, "cosine", 0.1) for f in (0.0, 0.05, 0.1, 0.55, 1.0)]
    assert factors[0] < factors[1] < factors[2] == 1.0 > factors[3] > factors[4] == 0.02
    assert learning_rate_factor(0.7, "constant", 0.1) == 1.0


def test_with_a_time_budget_the_largest_network_that_takes_enough_steps_is_chosen(monkeypatch):
    from napari_seamless_unet.core.train import defaults

    cost = {2: 0.008, 3: 0.04, 4: 0.2}  # seconds of the bare step (a whole step: STEP_OVERHEAD times)
    monkeypatch.setattr(
        defaults,
        "_step_seconds",
        lambda base, depth, tile, channels, device, batch_norm=False, voxel_size=None, precision="auto": cost[depth],
    )
    cpu = torch.device("cpu")
    for budget, depth in ((30 * 4, 2), (150 * 4, 3), (100_000, 4)):
        config, settings = resolve_defaults(TrainConfig(time_budget=budget), cpu, [(512, 512)])
        assert config.depth == depth, (budget, settings)
        assert settings["step_seconds"]
    # A step limit, a chosen network or a preset: no timing.
    for given in (TrainConfig(time_budget=30, steps=100), TrainConfig(time_budget=30, depth=4)):
        config, settings = resolve_defaults(given, cpu, [(512, 512)])
        assert config.depth == 4 and "step_seconds" not in settings


def test_a_network_that_does_not_see_the_objects_whole_gives_way_to_a_deeper_one(monkeypatch):
    """Contexts 40 / 88 / 184 pixels at depths 2 / 3 / 4: a deeper network wins while it takes STEPS_FLOOR steps."""
    from napari_seamless_unet.core.train import defaults

    cost = {2: 0.02, 3: 0.06, 4: 0.2}  # whole step: STEP_OVERHEAD times these
    monkeypatch.setattr(
        defaults,
        "_step_seconds",
        lambda base, depth, tile, channels, device, batch_norm=False, voxel_size=None, precision="auto": cost[depth],
    )
    cpu = torch.device("cpu")
    budget = 600  # STEPS_WANTED steps of 0.06 s, STEPS_FLOOR of 0.24 s
    for diameter, depth in ((None, 2), (25, 2), (71, 3), (150, 3), (400, 3)):
        config, settings = resolve_defaults(
            TrainConfig(time_budget=budget), cpu, [(512, 512)], object_diameter=diameter
        )
        assert config.depth == depth, (diameter, settings)
        assert settings.get("object_diameter") == (None if diameter is None else diameter)
    cost[4] = 0.15  # now depth 4 takes 2667 steps in the budget: wide objects get it, small ones do not
    assert resolve_defaults(TrainConfig(time_budget=budget), cpu, [(512, 512)], object_diameter=150)[0].depth == 4
    assert resolve_defaults(TrainConfig(time_budget=budget), cpu, [(512, 512)], object_diameter=25)[0].depth == 2
    # Too short a budget for the deeper network's STEPS_FLOOR: the steps rule alone.
    assert resolve_defaults(TrainConfig(time_budget=60), cpu, [(512, 512)], object_diameter=71)[0].depth == 2


@pytest.mark.parametrize("bf16_share, chosen", [(0.5, "bf16"), (0.95, "fp32")])
def test_on_a_cpu_with_native_bf16_auto_trains_in_bf16_where_it_measures_faster(monkeypatch, bf16_share, chosen):
    from napari_seamless_unet.core.train import defaults

    timed = []

    def step_seconds(base, depth, tile, channels, device, batch_norm=False, voxel_size=None, precision="auto"):
        timed.append(precision)
        return {2: 0.008, 3: 0.035, 4: 0.075}[depth] * (bf16_share if precision == "bf16" else 1.0)

    monkeypatch.setattr(defaults, "_step_seconds", step_seconds)
    monkeypatch.setattr(defaults, "cpu_has_native_bf16", lambda: True)
    cpu = torch.device("cpu")
    config, settings = resolve_defaults(TrainConfig(time_budget=600), cpu, [(512, 512)])
    assert config.precision == ("bf16" if chosen == "bf16" else "auto") and settings["precision"] == chosen
    assert ("precision" in settings["automatic"]) == (chosen == "bf16")
    assert settings["step_seconds"]["16/2/104 bf16"] == pytest.approx(1.5 * 0.008 * bf16_share)
    # Half the step buys a deeper network for the same STEPS_WANTED steps (0.06 s whole steps in 600 s).
    assert config.depth == (4 if chosen == "bf16" else 3)
    # The user's precision wins, and nothing is timed in bf16 for it.
    timed.clear()
    config, settings = resolve_defaults(TrainConfig(time_budget=600, precision="fp32"), cpu, [(512, 512)])
    assert "bf16" not in timed and settings["precision"] == "fp32" and config.depth == 3
    # Without native bf16 (or for 3D, which takes bf16 there anyway) "auto" times float32 only.
    monkeypatch.setattr(defaults, "cpu_has_native_bf16", lambda: False)
    timed.clear()
    assert resolve_defaults(TrainConfig(time_budget=600), cpu, [(512, 512)])[1]["precision"] == "fp32"
    assert "bf16" not in timed


def test_object_diameter_is_the_area_weighted_median():
    from types import SimpleNamespace

    import numpy as np

    from napari_seamless_unet.core.train.scale import object_diameter

    target = np.zeros((64, 64), dtype=np.int64)
    target[2:12, 2:12] = 1  # 100 pixels
    target[30:50, 30:50] = 1  # 400 pixels: holds 4/5 of the object pixels
    everything = np.ones(target.shape, dtype=bool)
    plane = SimpleNamespace(target=target, valid=everything, objects=None)
    assert object_diameter([plane]) == pytest.approx(2 * np.sqrt(400 / np.pi))
    plane = SimpleNamespace(target=target, valid=np.zeros(target.shape, dtype=bool), objects=None)
    assert object_diameter([plane]) is None
    # Instances: the objects, not the components (two touching squares are two objects).
    objects = np.zeros_like(target)
    objects[2:12, 2:12], objects[2:12, 12:22] = 1, 2
    plane = SimpleNamespace(target=(objects > 0).astype(np.int64), valid=everything, objects=objects)
    assert object_diameter([plane]) == pytest.approx(2 * np.sqrt(100 / np.pi))
    assert object_diameter([SimpleNamespace(target=np.ones((4, 8, 8)), valid=None, objects=None)]) is None  # 3D


def test_the_timing_probe_leaves_the_random_state_alone():
    from napari_seamless_unet.core.train.defaults import _step_seconds

    state = torch.get_rng_state()
    assert _step_seconds(4, 2, 60, (1, 2), torch.device("cpu")) > 0
    assert torch.equal(state, torch.get_rng_state())


def test_a_smaller_preset_keeps_the_device_dropout_only_the_paper_preset_has_the_papers():
    tiny, _ = resolve_defaults(TrainConfig(preset="tiny"), torch.device("cpu"), [(256, 256)])
    assert (tiny.base_channels, tiny.depth, tiny.dropout) == (8, 2, 0.0)


def test_batch_norm_is_recorded_and_a_resumed_model_keeps_its_own(tmp_path, device):
    from napari_seamless_unet.core.synthetic import touching_discs

    image, labels = touching_discs((96, 96), n_objects=6, seed=1)
    path = tmp_path / "bn.unet.pt"
    config = TrainConfig(base_channels=4, depth=2, steps=3, batch_norm=True, save_path=str(path), device=device)
    result = train([image], [labels], config=config)
    assert result.settings["batch_norm"] is True and "batch_norm" not in result.settings["automatic"]
    loaded = load_model(path)
    assert loaded.batch_norm and loaded.config["batch_norm"] is True
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in loaded.modules())
    resumed = train([image], [labels], config=TrainConfig(resume_from=str(path), steps=2, device=device))
    assert resumed.model.batch_norm and resumed.settings["batch_norm"] is True


def test_on_a_cpu_with_native_bf16_auto_trains_a_given_network_in_bf16_when_it_is_large_enough(monkeypatch):
    """A network the trainer does not time (given, a preset, a step count) follows a rule on its size, not a timing,
    so the same seed and steps give the same run: bf16 from BF16_MIN_STEP_GFLOP of forward work a step."""
    from napari_seamless_unet.core.model import UNet, forward_flops
    from napari_seamless_unet.core.train import defaults

    monkeypatch.setattr(defaults, "_step_seconds", lambda *a, **k: pytest.fail("a given network is not timed"))
    monkeypatch.setattr(defaults, "cpu_has_native_bf16", lambda: True)
    cpu, planes = torch.device("cpu"), [(512, 512)]
    for given in (
        TrainConfig(base_channels=16, depth=4, tile_size=316, steps=100),  # 3.8 GFLOP
        TrainConfig(preset="paper"),
        TrainConfig(steps=50),  # the device's network: 16/4 on 412-pixel tiles, a step count
        TrainConfig(base_channels=32, depth=3, tile_size=188, time_budget=60),  # given: not timed
    ):
        config, settings = resolve_defaults(given, cpu, planes)
        assert config.precision == "bf16" and settings["precision"] == "bf16", given
        assert "precision" in settings["automatic"]
    for small in (TrainConfig(base_channels=16, depth=3, tile_size=188), TrainConfig(base_channels=8, depth=4)):
        config, settings = resolve_defaults(small, cpu, planes)
        flops = forward_flops(UNet(1, 2, config.base_channels, config.depth), (config.tile_size,) * 2)
        assert flops < defaults.BF16_MIN_STEP_GFLOP * 1e9
        assert (
            config.precision == "auto" and settings["precision"] == "fp32" and "precision" not in settings["automatic"]
        )
    # The user's precision wins; without native bf16 "auto" stays float32.
    assert resolve_defaults(TrainConfig(preset="paper", precision="fp32"), cpu, planes)[1]["precision"] == "fp32"
    monkeypatch.setattr(defaults, "cpu_has_native_bf16", lambda: False)
    assert resolve_defaults(TrainConfig(preset="paper"), cpu, planes)[1]["precision"] == "fp32"


@pytest.mark.parametrize("began_with_bf16", [False, True])
def test_a_resumed_run_keeps_the_precision_it_began_with(monkeypatch, tmp_path, began_with_bf16):
    from napari_seamless_unet.core.synthetic import touching_discs
    from napari_seamless_unet.core.train import defaults

    image, labels = touching_discs((160, 160), n_objects=6, seed=0)
    path = tmp_path / "run.unet.pt"
    monkeypatch.setattr(defaults, "cpu_has_native_bf16", lambda: began_with_bf16)
    network = {"base_channels": 64, "depth": 2, "tile_size": 104, "device": "cpu"}  # 4.6 GFLOP a forward pass
    first = train([image], [labels], config=TrainConfig(steps=2, save_path=str(path), **network))
    assert first.settings["precision"] == ("bf16" if began_with_bf16 else "fp32")
    monkeypatch.setattr(defaults, "cpu_has_native_bf16", lambda: not began_with_bf16)  # as on another CPU
    resumed = train([image], [labels], config=TrainConfig(resume_from=str(path), steps=1, device="cpu"))
    assert resumed.settings["precision"] == first.settings["precision"]
    # A fine-tuning (no training state) is a new run: the rule of this CPU.
    tuned = train([image], [labels], config=TrainConfig(steps=1, device="cpu"), init=first.model)
    assert tuned.settings["precision"] == ("fp32" if began_with_bf16 else "bf16")
