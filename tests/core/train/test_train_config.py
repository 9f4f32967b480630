"""TrainConfig: augmentation nested in one Augmentation, flat keywords, deprecated flat names, stored forms."""

from __future__ import annotations

import dataclasses
import inspect
import json
import warnings

import pytest
import torch

from napari_seamless_unet.core.augment import Augmentation
from napari_seamless_unet.core.errors import UNetInputError
from napari_seamless_unet.core.model import UNet
from napari_seamless_unet.core.model_io import load_model, save_model
from napari_seamless_unet.core.train import TrainConfig, train

# metadata["train_config"] as version 0.1 wrote it: augmentation as flat keys (and a key this version may not know).
OLD_FLAT = {
    "task": "semantic", "unlabelled": "background", "ignore_label": None, "num_classes": None, "base_channels": 64,
    "depth": 4, "dropout": 0.5, "tile_size": None, "batch_size": 1, "steps": 20, "time_budget": None,
    "optimizer": "adam", "learning_rate": None, "weight_decay": 0.0, "w0": 10.0, "sigma": 5.0,
    "balance_classes": True, "elastic_std": 4.0, "elastic_grid": 3, "flip": False, "rotate90": True,
    "rotation": 180.0, "brightness": 0.1, "contrast": 0.2, "gamma": 0.2, "validation_fraction": 0.2,
    "val_every": None, "save_path": "m.unet.pt", "checkpoint_every": 50, "resume_from": None, "seed": 0,
    "device": None, "precision": "auto", "axes": None,
    "normalization": {"mode": "percentile", "low": 1.0, "high": 99.8}, "retired_setting": 1,
}  # fmt: skip


def test_augmentation_defaults_live_in_augmentation():
    assert TrainConfig().augmentation == Augmentation()
    assert "elastic_std" not in {f.name for f in dataclasses.fields(TrainConfig)}


def test_flat_keywords_set_the_nested_augmentation():
    config = TrainConfig(elastic_std=5, flip=False, steps=3)
    assert config.augmentation == Augmentation(elastic_std=5, flip=False)
    assert config.steps == 3
    assert config == TrainConfig(augmentation=Augmentation(elastic_std=5, flip=False), steps=3)
    assert TrainConfig(elastic_std=None).augmentation == Augmentation()  # None: as augmentation has it


def test_augmentation_as_object_or_dict():
    aug = Augmentation(rotation=0, gamma=0)
    assert TrainConfig(augmentation=aug).augmentation is aug
    assert TrainConfig(augmentation={"rotation": 0, "gamma": 0}).augmentation == aug
    with pytest.raises(UNetInputError, match="unknown augmentation setting"):
        TrainConfig(augmentation={"elastic": 3})
    with pytest.raises(UNetInputError, match="must be an Augmentation"):
        TrainConfig(augmentation=3)


def test_flat_and_nested_must_agree():
    aug = Augmentation(elastic_std=3)
    assert TrainConfig(augmentation=aug, elastic_std=3).augmentation == aug  # the same value twice is fine
    with pytest.raises(UNetInputError) as info:
        TrainConfig(augmentation=aug, elastic_std=5, flip=True)
    message = str(info.value)
    assert "elastic_std=3" in message and "elastic_std=5" in message
    assert "dataclasses.replace(augmentation, elastic_std=5)" in message


def test_flat_keywords_are_in_the_signature():
    parameters = inspect.signature(TrainConfig).parameters
    assert parameters["augmentation"].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    for name in ("elastic_std", "elastic_grid", "flip", "rotate90", "rotation", "brightness", "contrast", "gamma"):
        assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY and parameters[name].default is None
    with pytest.raises(TypeError):
        TrainConfig(elastic=3)


def test_flat_names_are_deprecated_aliases():
    config = TrainConfig(elastic_std=5)
    with pytest.warns(DeprecationWarning, match=r"config\.augmentation\.elastic_std") as record:
        assert config.elastic_std == 5
    assert record[0].filename == __file__  # the warning points at the caller
    with pytest.warns(DeprecationWarning, match=r"dataclasses\.replace\(config\.augmentation, flip=\.\.\.\)"):
        config.flip = False
    assert config.augmentation == Augmentation(elastic_std=5, flip=False)


def test_dataclasses_replace_and_copy():
    config = TrainConfig(elastic_std=5, steps=7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecated alias is read on the way
        other = dataclasses.replace(config, task="semantic")
        assert other.augmentation == config.augmentation and other.task == "semantic" and other.steps == 7
        new = Augmentation(flip=False)
        assert dataclasses.replace(config, augmentation=new).augmentation is new
        assert dataclasses.replace(config, elastic_std=5).augmentation == config.augmentation
    with pytest.raises(UNetInputError, match="flip"):
        dataclasses.replace(config, flip=False)  # config flips: replace its augmentation instead
    copied = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert copied == config


def test_to_dict_is_nested_and_round_trips():
    config = TrainConfig(task="semantic", elastic_std=4.0, flip=False, save_path="m.unet.pt")
    stored = config.to_dict()
    assert stored["augmentation"] == dataclasses.asdict(Augmentation(elastic_std=4.0, flip=False))
    assert "elastic_std" not in stored
    assert TrainConfig.from_dict(stored) == config


def test_from_dict_reads_the_old_flat_form():
    config = TrainConfig.from_dict(OLD_FLAT)
    assert config == TrainConfig(
        task="semantic",
        base_channels=64,
        depth=4,
        dropout=0.5,
        batch_size=1,
        steps=20,
        elastic_std=4.0,
        flip=False,
        save_path="m.unet.pt",
    )
    assert config.augmentation == Augmentation(elastic_std=4.0, flip=False)


def test_from_dict_ignores_unknown_nested_settings():
    stored = TrainConfig(rotation=0).to_dict()
    stored["augmentation"]["shear"] = 0.3  # from a newer version
    assert TrainConfig.from_dict(stored).augmentation == Augmentation(rotation=0)


def test_old_model_file_config_loads(tmp_path):
    model = UNet(1, 3, 4, 2, 0.0, task="semantic")
    model.metadata = {"train_config": OLD_FLAT, "history": {}}
    path = save_model(model, tmp_path / "old.unet.pt")
    config = TrainConfig.from_dict(load_model(path).metadata["train_config"])
    assert config.augmentation == Augmentation(elastic_std=4.0, flip=False) and config.task == "semantic"


def test_training_uses_the_nested_augmentation_and_stores_it(discs, tiny, tmp_path):
    path = tmp_path / "aug.unet.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # training reads no deprecated alias
        flat, _ = train(*discs, config=tiny(steps=2, elastic_std=3, rotation=0, save_path=str(path)))
    nested, _ = train(*discs, config=tiny(steps=2, augmentation=Augmentation(elastic_std=3, rotation=0)))
    default, _ = train(*discs, config=tiny(steps=2))
    weights = [torch.cat([p.detach().flatten() for p in m.parameters()]) for m in (flat, nested, default)]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])
    stored = load_model(path).metadata["train_config"]
    assert stored["augmentation"]["elastic_std"] == 3 and stored["augmentation"]["rotation"] == 0
    assert TrainConfig.from_dict(stored).augmentation == Augmentation(elastic_std=3, rotation=0)
