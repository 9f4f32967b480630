"""``seamless-unet train --init``: fine-tuning a saved model; its lineage in the new file and in ``info``; the
options that contradict the model; ``info --starters``."""

from __future__ import annotations

import json

import pytest

from napari_seamless_unet import load_model


def test_init_from_a_model_file_records_its_parent(cli, tmp_path, discs, instance_model, device):
    image_path, labels_path, _, _ = discs
    out = tmp_path / "tuned.unet.pt"
    argv = ["train", image_path, labels_path, "--init", instance_model, "-o", out, "--steps", 2, "--device", device]
    status, stdout, stderr = cli(*argv)
    assert status == 0, stderr
    assert f"fine-tuning {instance_model}" in stderr
    assert f"started from: {instance_model}" in stdout
    model = load_model(out)
    assert (model.base_channels, model.depth, model.task) == (4, 2, "instances")  # the parent's network
    lineage = model.metadata["lineage"]
    assert [entry["model"] for entry in lineage] == [str(instance_model)]
    assert len(lineage[0]["weights_sha256"]) == 64
    assert model.metadata["training_data"]["planes"] == 1

    status, stdout, _ = cli("info", out)
    assert status == 0
    assert "lineage:" in stdout and str(instance_model) in stdout
    assert "training data:  1 plane(s) of 96 x 112" in stdout
    status, stdout, _ = cli("info", out, "--json")
    info = json.loads(stdout)
    assert info["lineage"][0]["model"] == str(instance_model)
    assert "lineage" not in info["other_metadata"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--task", "semantic"], "is a instances model, but --task semantic was given"),
        (["--depth", "3"], "--init keeps the network of the model it starts from: leave out --depth"),
        (["--size", "tiny"], "leave out --size"),
    ],
)
def test_init_refuses_options_that_contradict_the_model(cli, discs, instance_model, options, message):
    image_path, labels_path, _, _ = discs
    status, _, stderr = cli("train", image_path, labels_path, "--init", instance_model, *options)
    assert status == 1
    assert message in stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr


def test_init_semantic_model_refuses_instances_task(cli, discs, semantic_model):
    image_path, labels_path, _, _ = discs
    status, _, stderr = cli("train", image_path, labels_path, "--init", semantic_model, "--task", "instances")
    assert status == 1
    assert "is a semantic model, but --task instances was given" in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_init_missing_starter_file_is_one_line(cli, discs, monkeypatch):
    from napari_seamless_unet.core import starters
    from napari_seamless_unet.core.errors import ModelFileError

    def missing(name):
        raise ModelFileError(f"the starter model {name!r} is missing from this installation")

    monkeypatch.setattr(starters, "starter_path", missing)
    image_path, labels_path, _, _ = discs
    status, _, stderr = cli("train", image_path, labels_path, "--init", "nuclei", "--steps", 1)
    assert status == 1
    assert "the starter model 'nuclei' is missing" in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_init_unknown_model_is_one_line(cli, tmp_path, discs):
    image_path, labels_path, _, _ = discs
    status, _, stderr = cli("train", image_path, labels_path, "--init", tmp_path / "nope.unet.pt")
    assert status == 1
    assert "nope.unet.pt" in stderr and len(stderr.strip().splitlines()) == 1


def test_info_starters_lists_the_starter_models(cli):
    from napari_seamless_unet.core.starters import starter_models

    status, stdout, stderr = cli("info", "--starters")
    assert status == 0, stderr
    for name, description in starter_models().items():
        assert name in stdout
        assert description.split(":")[0] in stdout
    assert cli("info")[0] == 2  # a model or --starters
