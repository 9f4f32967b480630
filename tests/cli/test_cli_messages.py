"""Messages say what to do: help shows every default, info prints the settings as a table."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from napari_seamless_unet.cli import build_parser


@pytest.mark.parametrize("command", ["train", "predict", "segment", "postprocess", "demo", "info", "export"])
def test_help_shows_every_default(command):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    formatter = sub._get_formatter()
    for action in sub._actions:
        if not action.option_strings or action.dest == "help":
            continue
        assert "default" in formatter._get_help_string(action), f"{command} {action.option_strings[-1]}"
    assert "(default: " in sub.format_help()


@pytest.fixture
def model_file(tmp_path):
    from napari_seamless_unet.core.synthetic import touching_discs
    from napari_seamless_unet.core.train import TrainConfig, train

    image, labels = touching_discs((64, 64), n_objects=5, seed=0)
    path = tmp_path / "m.unet.pt"
    train([image], [labels], config=TrainConfig(base_channels=4, depth=2, steps=1, device="cpu", save_path=str(path)))
    return path


def test_info_prints_training_settings_as_a_table(model_file):
    out = subprocess.run(
        [sys.executable, "-m", "napari_seamless_unet", "info", str(model_file)], capture_output=True, text=True
    ).stdout
    assert "{" not in out and "'" not in out.split("training settings:")[-1]  # no dict dump
    rows = out.split("training settings:")[1].splitlines()[1:4]
    assert all(re.match(r"^  [a-z][a-z .]+ {2,}\S", row) for row in rows), rows
