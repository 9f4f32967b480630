"""Fixtures for the command-line tests: small synthetic TIFFs and tiny model files written in tmp_path."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from napari_seamless_unet import UNet, save_model
from napari_seamless_unet.core.synthetic import touching_discs


@pytest.fixture
def cli(capsys):
    """``cli(*argv)`` runs the command line in this process: ``(exit status, stdout, stderr)``."""
    from napari_seamless_unet.cli import main

    def run(*argv):
        try:
            status = main([str(a) for a in argv])
        except SystemExit as exit_:
            status = exit_.code
        out, err = capsys.readouterr()
        return status, out, err

    return run


@pytest.fixture
def discs(tmp_path):
    """A 2D image and its instance labels as TIFFs; returns (image_path, labels_path, image, labels)."""
    image, labels = touching_discs((96, 112), n_objects=10, radius=(7, 12), seed=3)
    image_path, labels_path = tmp_path / "discs.tif", tmp_path / "discs_labels.tif"
    tifffile.imwrite(image_path, image)
    tifffile.imwrite(labels_path, labels.astype(np.uint16))
    return image_path, labels_path, image, labels


def _save(model: UNet, path):
    torch.manual_seed(0)
    model.reset_parameters()
    save_model(model, path)
    return path


@pytest.fixture
def instance_model(tmp_path):
    """An untrained tiny instance model (depth 2: halo 20 px) saved to a file."""
    return _save(UNet(base_channels=4, depth=2, dropout=0.0, task="instances"), tmp_path / "tiny.unet.pt")


@pytest.fixture
def semantic_model(tmp_path):
    """An untrained tiny 3-class semantic model saved to a file."""
    model = UNet(num_classes=3, base_channels=4, depth=2, dropout=0.0, task="semantic")
    return _save(model, tmp_path / "semantic.unet.pt")
