"""Model files and checkpoints: round trip, exact resume, a checkpoint that survives SIGKILL."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from napari_seamless_unet.core.errors import UNetInputError
from napari_seamless_unet.core.model_io import load_model
from napari_seamless_unet.core.predict import predict
from napari_seamless_unet.core.synthetic import touching_discs
from napari_seamless_unet.core.train import best_path, train


def test_model_round_trip_and_training_state(discs, tmp_path, tiny, state_equal):
    path = tmp_path / "m.unet.pt"
    model, history = train(*discs, config=tiny(steps=3, val_every=2, save_path=str(path)))
    loaded = load_model(path)
    assert loaded.task == "instances" and loaded.config == model.config
    assert state_equal(loaded, model.cpu())
    assert loaded.metadata["train_config"]["steps"] == 3
    assert loaded.metadata["history"]["loss"] == pytest.approx(history["loss"])
    for key in ("val_step", "val_loss", "val_iou", "val_ap50", "steps_per_second", "data_time_fraction"):
        assert key in loaded.metadata["history"]
    payload = torch.load(path, map_location="cpu", weights_only=True)
    state = payload["training_state"]
    assert state["step"] == 3 and "state" in state["optimizer"]
    assert best_path(path).name == "m.best.unet.pt" and best_path(path).exists()
    np.testing.assert_array_equal(predict(loaded, discs[0][0]), predict(model, discs[0][0]))


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_resume_continues_exactly(discs, tmp_path, optimizer, tiny, state_equal):
    # Dropout on, so that the random stream of the network (not only the augmentation's) must be restored too.
    config = tiny(steps=6, optimizer=optimizer, dropout=0.5, val_every=2)
    full, h_full = train(*discs, config=config)
    path = tmp_path / "ck.unet.pt"
    calls = []
    _, h1 = train(
        *discs,
        config=dataclasses.replace(config, save_path=str(path)),
        should_stop=lambda: len(calls) >= 3,
        progress=lambda done, total: calls.append(done),
    )
    assert h1["stopped"] and h1["stop_reason"] == "stopped" and h1["step"] == [1, 2, 3]
    assert h1["val_step"] == [2, 3]  # the early stop validated the last step too
    # Resuming without steps finishes the interrupted plan, whatever used torch's RNG in between.
    torch.rand(100)
    resumed, h2 = train(
        *discs, config=dataclasses.replace(config, steps=None, resume_from=str(path), save_path=str(path))
    )
    assert h2["step"] == [1, 2, 3, 4, 5, 6] and not h2["stopped"] and h2["stop_reason"] == "steps"
    assert state_equal(resumed, full)
    assert h2["loss"] == h_full["loss"]
    assert h2["elapsed_seconds"] > h1["elapsed_seconds"]
    saved = load_model(path)
    assert saved.metadata["history"]["step"][-1] == 6 and state_equal(saved, full)
    # steps given on resume: that many more.
    _, h3 = train(*discs, config=dataclasses.replace(config, steps=3, resume_from=str(path)))
    assert h3["step"] == [1, 2, 3, 4, 5, 6, 7, 8, 9]


def test_resuming_a_finished_run_needs_steps(discs, tmp_path, tiny):
    path = tmp_path / "done.unet.pt"
    train(*discs, config=tiny(steps=2, save_path=str(path)))
    with pytest.raises(UNetInputError, match="already finished its 2 planned steps"):
        train(*discs, config=tiny(steps=None, resume_from=str(path)))
    _, history = train(*discs, config=tiny(steps=1, resume_from=str(path)))
    assert history["step"] == [1, 2, 3]


def test_sigkill_leaves_resumable_checkpoint(tmp_path, tiny):
    path = tmp_path / "killed.unet.pt"
    script = textwrap.dedent(
        f"""
        import torch
        torch.set_num_threads(1)
        from napari_seamless_unet.core.synthetic import touching_discs
        from napari_seamless_unet.core.train import TrainConfig, train
        img, lab = touching_discs((64, 64), n_objects=6, seed=0)
        train([img], [lab], config=TrainConfig(base_channels=4, depth=2, dropout=0.0, tile_size=60, steps=100000,
              checkpoint_every=2, val_every=100000, device="cpu", save_path={str(path)!r}))
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not path.exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert path.exists(), proc.stderr.read().decode() if proc.poll() is not None else "no checkpoint in time"
        time.sleep(0.3)  # let it be in the middle of further steps and checkpoint writes
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    model = load_model(path)
    step = torch.load(path, weights_only=True)["training_state"]["step"]
    assert step >= 2 and step % 2 == 0
    img, lab = touching_discs((64, 64), n_objects=6, seed=0)
    resumed, history = train([img], [lab], config=tiny(steps=2, checkpoint_every=2, resume_from=str(path)))
    assert history["step"][-2:] == [step + 1, step + 2]
    assert resumed.config == model.config
