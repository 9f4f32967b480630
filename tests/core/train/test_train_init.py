"""Fine-tuning with ``train(..., init=...)``: the architecture is the parent's, the weights move, the file records
its lineage, and settings that contradict the parent are refused before any work."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_seamless_unet import UNet, UNetInputError, load_model, save_model, train
from napari_seamless_unet.core.train.lineage import weights_digest


@pytest.fixture(scope="module")
def parent(discs):
    from napari_seamless_unet.core.train import TrainConfig

    config = TrainConfig(
        base_channels=4, depth=2, dropout=0.0, tile_size=60, steps=3, val_every=1000, device="cpu", seed=0
    )
    return train(*discs, config=config).model


def test_fine_tuning_keeps_the_architecture_and_moves_the_weights(parent, discs, tiny, state_equal):
    before = {k: v.clone() for k, v in parent.state_dict().items()}
    child = train(*discs, config=tiny(base_channels=None, depth=None, tile_size=None, steps=3, seed=1), init=parent)
    assert child.model.config == parent.config  # channels, depth, classes, task, normalisation
    assert not state_equal(child.model, parent)
    assert all(torch.equal(before[k], v) for k, v in parent.state_dict().items())  # the parent is not changed
    assert child.history["step"] == [1, 2, 3]  # a new run: its own schedule from step 0


def test_the_model_file_records_its_parent_and_its_data(parent, discs, tiny, tmp_path):
    path = save_model(parent, tmp_path / "parent.unet.pt")
    child = train(*discs, config=tiny(steps=2, save_path=str(tmp_path / "child.unet.pt")), init=path)
    saved = load_model(tmp_path / "child.unet.pt")
    (entry,) = saved.metadata["lineage"]
    assert entry["model"] == str(path)
    assert entry["weights_sha256"] == weights_digest(parent.state_dict())
    assert entry["steps"] == 3
    assert entry["training_data"] == parent.metadata["training_data"]
    data = saved.metadata["training_data"]
    assert data["planes"] >= 1 and data["annotated_pixels"] > 0 and len(data["sha256"]) == 64
    # a grandchild lists both ancestors, oldest first
    grandchild = train(*discs, config=tiny(steps=1), init=child.model)
    assert [e["weights_sha256"] for e in grandchild.model.metadata["lineage"]] == [
        weights_digest(parent.state_dict()),
        weights_digest(child.model.state_dict()),
    ]


def test_a_model_from_random_weights_has_no_lineage(parent):
    assert parent.metadata["lineage"] == []


def test_the_parents_task_is_followed_when_left_at_the_default(discs, tiny):
    semantic = UNet(1, 2, 4, 2, task="semantic")
    labels = [(lab > 0).astype(np.int32) for lab in discs[1]]
    child = train(discs[0], labels, config=tiny(steps=1), init=semantic)  # TrainConfig's default task: instances
    assert child.model.task == "semantic"


def test_contradicting_settings_are_refused(discs, tiny):
    semantic = UNet(1, 2, 4, 2, task="semantic")
    instances = UNet(1, 2, 4, 2, task="instances")
    with pytest.raises(UNetInputError, match="instances model"):
        train(*discs, config=tiny(task="semantic"), init=instances)
    with pytest.raises(UNetInputError, match="2 instance classes"):
        train(*discs, config=tiny(instance_classes=3), init=instances)
    with pytest.raises(UNetInputError, match="not both"):
        train(*discs, config=tiny(resume_from="x.unet.pt"), init=semantic)
    with pytest.raises(UNetInputError, match="init must be"):
        train(*discs, config=tiny(), init=42)
    with pytest.raises(UNetInputError, match="starter models"):
        train(*discs, config=tiny(), init="no-such-model.unet.pt")


def test_a_starter_model_name_is_an_init(discs, tiny, monkeypatch, tmp_path):
    from napari_seamless_unet.core import starters

    model = UNet(1, 2, 4, 2, task="instances")
    path = save_model(model, tmp_path / "nuclei.unet.pt")
    monkeypatch.setattr(starters, "starter_path", lambda name: path)
    child = train(*discs, config=tiny(steps=1), init="nuclei")
    assert child.model.metadata["lineage"][0]["model"] == "starter model 'nuclei'"


def test_the_shipped_nuclei_starter_loads_and_segments():
    from napari_seamless_unet import load_starter, segment, starter_models
    from napari_seamless_unet.core.synthetic import clustered_nuclei

    assert "nuclei" in starter_models()
    model = load_starter("nuclei")
    assert model.task == "instances" and model.metadata["starter"]["name"] == "nuclei"
    image, truth = clustered_nuclei((128, 128), n_clusters=2, seed=5)
    from napari_seamless_unet.core.metrics import average_precision

    assert average_precision(segment(model, image), truth) > 0.5  # nuclei of an image it never saw


def test_an_unknown_starter_is_refused():
    from napari_seamless_unet import ModelFileError
    from napari_seamless_unet.core.starters import starter_path

    with pytest.raises(ModelFileError, match="no starter model"):
        starter_path("mitochondria")
