"""The widget says why training ended, which file holds which model, and shows progress against the right limit."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from napari_seamless_unet.core.train import best_path
from napari_seamless_unet.plugin._jobs import format_duration, stop_reason, training_outcome
from napari_seamless_unet.plugin._train_widget import PRESETS, TrainWidget

TIMEOUT = 120_000


def _widget(viewer, tmp_path, steps):
    widget = TrainWidget(viewer)
    widget.preset.value = PRESETS["tiny (8 channels, depth 2)"]
    widget.steps.value = steps
    widget.device.value = "cpu"
    widget.preview_every.value = 0
    widget.save_path.value = str(tmp_path / "cells.unet.pt")
    return widget


def _run(qtbot, widget):
    assert widget.start() is not None, widget.status.value
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)


def _config(steps=200, time_budget=None):
    return SimpleNamespace(steps=steps, time_budget=time_budget)


def _history(last, **extra):
    return {"step": list(range(1, last + 1)), "stopped": False, "best_step": None, **extra}


@pytest.mark.parametrize(
    ("history", "config", "reason"),
    [
        (_history(200), _config(200), "steps"),
        (_history(113), _config(200, 60.0), "time_budget"),
        (_history(40, stopped=True), _config(200), "stopped"),
        (_history(11, stopped=True, diverged=True), _config(200), "diverged"),
        # The trainer's own word wins over the inference.
        (_history(113, stop_reason="stopped", stopped=True), _config(200, 60.0), "stopped"),
        (_history(200, stop_reason="time_budget"), _config(200, 60.0), "time_budget"),
    ],
)
def test_stop_reason(history, config, reason):
    assert stop_reason(history, config) == reason


def test_messages_say_why_training_ended(tmp_path):
    path = tmp_path / "cells.unet.pt"
    folder = f" in {tmp_path}."
    assert training_outcome(_history(113), _config(200, 60.0), path) == (
        "Finished: 113 steps in the 60 s time limit. Saved cells.unet.pt (last step)" + folder
    )
    assert training_outcome(_history(40, stopped=True), _config(), path).startswith(
        "Stopped by you at step 40 (model saved). Saved cells.unet.pt (last step)"
    )
    assert training_outcome(_history(11, stopped=True, diverged=True), _config(), path).startswith(
        "Stopped at step 12: the loss diverged; kept the weights of step 11 — lower the learning rate. "
        "Saved cells.unet.pt (weights of step 11)"
    )
    assert training_outcome(_history(200), _config(), None) == (
        "Finished: 200 steps. Not saved: no file name given (the model is kept for this session)."
    )
    # The best model is named only when its file was written.
    history = _history(400, best_step=350)
    assert "cells.best.unet.pt" not in training_outcome(history, _config(400), path)
    best_path(path).write_bytes(b"")
    assert training_outcome(history, _config(400), path) == (
        "Finished: 400 steps. Saved cells.unet.pt (last step) and cells.best.unet.pt "
        "(best validation score, step 350)" + folder
    )


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.6, "0.6 s"), (60, "60 s"), (90.5, "90.5 s"), (600, "10 min"), (5400, "90 min")]
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_a_normal_end_names_both_files(qtbot, viewer, tmp_path, notes):
    widget = _widget(viewer, tmp_path, steps=6)
    _run(qtbot, widget)
    assert not notes["error"], notes["error"]
    best_step = widget.last_history["best_step"]
    assert best_step is not None and best_path(tmp_path / "cells.unet.pt").exists()
    assert widget.status.value.startswith(
        "Finished: 6 steps. Saved cells.unet.pt (last step) and cells.best.unet.pt (best validation score, "
        f"step {best_step}) in {tmp_path}. Network: 8 channels, depth 2,"
    )
    assert notes["info"][-1] == widget.status.value
    assert widget.last_stop_reason == "steps"
    assert widget.progress_bar.value() == widget.progress_bar.maximum()


def test_a_time_limit_ends_training_at_100_percent(qtbot, viewer, tmp_path, notes):
    widget = _widget(viewer, tmp_path, steps=1_000_000)
    widget.time_budget.value = 0.01  # minutes: 0.6 s
    seen = []
    forward = widget._on_yielded

    def record(event):
        forward(event)
        seen.append(widget.progress_bar.value())

    widget._on_yielded = record
    _run(qtbot, widget)
    assert not notes["error"], notes["error"]
    steps = widget.last_history["step"][-1]
    assert 1 <= steps < 1_000_000
    assert widget.last_stop_reason == "time_budget"
    assert widget.status.value.startswith(f"Finished: {steps} steps in the 0.6 s time limit. Saved cells.unet.pt")
    # The bar followed the clock (not steps / 1,000,000, which stays at 0) and ends full.
    assert max(seen) > 0
    assert widget.progress_bar.value() == widget.progress_bar.maximum()


def test_stopped_by_the_user(qtbot, viewer, tmp_path, notes):
    widget = _widget(viewer, tmp_path, steps=100_000)
    forward = widget._on_yielded

    def stop_after_the_first_step(event):
        forward(event)
        if getattr(event, "stage", None) == "train":
            widget.stop()

    widget._on_yielded = stop_after_the_first_step
    _run(qtbot, widget)
    steps = widget.last_history["step"][-1]
    assert widget.status.value.startswith(f"Stopped by you at step {steps} (model saved). Saved cells.unet.pt")
    assert widget.last_stop_reason == "stopped"
    assert widget.progress_bar.value() < widget.progress_bar.maximum()


def test_a_diverged_training_says_what_to_do(viewer, tmp_path, notes):
    widget = _widget(viewer, tmp_path, steps=200)
    widget.job = widget.make_job()
    widget.progress_bar.setValue(55)
    history = _history(11, stopped=True, diverged=True)
    widget._on_returned((object(), history))
    assert re.match(
        r"Stopped at step 12: the loss diverged; kept the weights of step 11 — lower the learning rate\. "
        r"Saved cells\.unet\.pt \(weights of step 11\) in ",
        widget.status.value,
    )
    assert widget.progress_bar.value() == 55  # not 100 %: it did not end normally


def test_the_loss_plot_has_axis_titles_and_a_legend(qtbot, viewer, tmp_path, notes):
    widget = _widget(viewer, tmp_path, steps=6)
    _run(qtbot, widget)
    plot = widget.plot
    assert plot.axis_titles() == ("step", "loss", "score")
    assert [text.rsplit(" ", 1)[0] for text in plot.legend()] == ["loss", "val loss", "val AP50"]
    image = plot.grab().toImage()  # paints without error
    assert not image.isNull()
    image.save(str(tmp_path / "plot.png"))


def test_the_end_message_shows_the_settings_chosen_for_the_device():
    history = _history(50)
    history["settings"] = {
        "base_channels": 16,
        "depth": 2,
        "tile_size": 104,
        "batch_size": 1,
        "learning_rate": 0.003,
        "device": "cpu",
        "automatic": ["base_channels", "depth"],
    }
    message = training_outcome(history, _config(50), None)
    assert "Network: 16 channels, depth 2, tiles of 104 px, batch 1, learning rate 0.003 (chosen for cpu)." in message
    history["settings"]["members"] = 4
    message = training_outcome(history, _config(50), None)
    assert "tiles of 104 px, batch 1, 4 members, learning rate 0.003 (chosen for cpu)." in message
