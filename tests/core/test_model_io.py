import errno
import os
import pickle

import numpy as np
import pytest
import torch

from napari_seamless_unet import UNet, load_model, predict, save_model
from napari_seamless_unet.core import model_io
from napari_seamless_unet.core.errors import ModelFileError


def small_model():
    torch.manual_seed(0)
    return UNet(in_channels=2, num_classes=3, base_channels=4, depth=2, task="semantic", class_names=["a", "b", "c"])


def test_round_trip_keeps_weights_and_everything_needed_to_predict(tmp_path):
    model = small_model()
    model.metadata = {"history": {"loss": [1.0, 0.5]}, "axes": "CYX"}
    path = save_model(model, tmp_path / "m.unet.pt")
    loaded = load_model(path)
    assert loaded.config == model.config
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert loaded.metadata["history"]["loss"] == [1.0, 0.5]
    assert loaded.metadata["versions"]["torch"] == torch.__version__
    image = np.random.default_rng(0).random((2, 40, 40)).astype(np.float32)
    np.testing.assert_array_equal(predict(model.eval(), image), predict(loaded, image))


def test_training_state_loads_with_weights_only(tmp_path):
    model = small_model()
    opt = torch.optim.Adam(model.parameters())
    model(torch.zeros(1, 2, 60, 60)).sum().backward()
    opt.step()
    path = save_model(model, tmp_path / "ckpt.unet.pt", training_state={"optimizer": opt.state_dict(), "step": 7})
    payload = torch.load(path, weights_only=True)
    assert payload["training_state"]["step"] == 7


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_malicious_pickle_is_refused_and_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.unet.pt"
    torch.save({"format": "napari-seamless-unet", "format_version": 1, "x": _Payload()}, path)
    with pytest.raises(ModelFileError, match="refused") as refused:
        load_model(path)
    assert not (tmp_path / "pwned").exists()
    # The message says how to get a safe file, never PyTorch's advice to load it unsafely.
    assert "weights_only" not in str(refused.value) and "save_model" in str(refused.value)
    # A raw pickle file (not a torch archive) is refused too.
    raw = tmp_path / "raw.unet.pt"
    raw.write_bytes(pickle.dumps(_Payload()))
    with pytest.raises(ModelFileError):
        load_model(raw)
    assert not (tmp_path / "pwned").exists()


def test_missing_truncated_foreign_and_newer_files(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "nope.unet.pt")
    good = save_model(small_model(), tmp_path / "good.unet.pt")
    truncated = tmp_path / "truncated.unet.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelFileError, match="truncated"):
        load_model(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save(UNet(base_channels=2, depth=1).state_dict(), foreign)
    with pytest.raises(ModelFileError, match="not a napari-seamless-unet model file"):
        load_model(foreign)
    text = tmp_path / "notes.unet.pt"
    text.write_text("hello")
    with pytest.raises(ModelFileError):
        load_model(text)
    payload = torch.load(good, weights_only=True)
    payload["format_version"] = model_io.FORMAT_VERSION + 1
    newer = tmp_path / "newer.unet.pt"
    torch.save(payload, newer)
    with pytest.raises(ModelFileError, match="upgrade"):
        load_model(newer)
    with pytest.raises(ModelFileError, match="folder"):
        load_model(tmp_path)


def test_full_disk_leaves_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "m.unet.pt"
    save_model(small_model(), path)
    before = path.read_bytes()

    def failing_save(obj, file):
        file.write(b"partial garbage")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(model_io.torch, "save", failing_save)
    with pytest.raises(OSError, match="No space"):
        save_model(UNet(base_channels=2, depth=1), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.unet.pt"]  # no temporary file left behind
    load_model(path)


def test_an_image_is_not_mistaken_for_unsafe_code(tmp_path):
    import tifffile

    tif = tmp_path / "cells.tif"
    tifffile.imwrite(tif, np.zeros((8, 8), np.uint8))
    with pytest.raises(ModelFileError, match="not a napari-seamless-unet model file") as err:
        load_model(tif)
    assert "run code" not in str(err.value)
