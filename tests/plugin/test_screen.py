"""Both docks fit beside the canvas on a 1366 x 768 laptop screen."""

from __future__ import annotations

import numpy as np
from qtpy.QtGui import QImage
from qtpy.QtWidgets import QApplication

PLUGIN = "napari-seamless-unet"
SCREEN = (1366, 768)


def _settle(qtbot, rounds: int = 10):
    for _ in range(rounds):
        QApplication.processEvents()
        qtbot.wait(10)


def _laptop_viewer(make_napari_viewer, qtbot):
    """A shown viewer window of 1366 x 768 with the sample data, then both docks (as a laptop user opens them)."""
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(*SCREEN)
    viewer.open_sample(PLUGIN, "touching_discs")
    _settle(qtbot, 3)
    train_dock, train = viewer.window.add_plugin_dock_widget(PLUGIN, "Train U-Net")
    segment_dock, segment = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment with U-Net")
    _settle(qtbot)
    return viewer, window, (train_dock, train), (segment_dock, segment)


def test_both_docks_fit_a_1366x768_screen(make_napari_viewer, qtbot, tmp_path):
    viewer, window, (train_dock, train), (segment_dock, segment) = _laptop_viewer(make_napari_viewer, qtbot)
    hint = window.minimumSizeHint()
    assert hint.width() <= SCREEN[0] and hint.height() <= SCREEN[1], hint
    assert window.width() <= SCREEN[0] and window.height() <= SCREEN[1], window.size()
    canvas = viewer.window._qt_viewer.canvas.native
    assert canvas.width() >= window.width() / 2, (canvas.width(), window.width())
    # Both docks are visible, side by side with the canvas, and each shows its run button.
    for dock, button in ((train_dock, train.train_button), (segment_dock, segment.run_button)):
        assert dock.isVisible() and dock.height() >= 200, dock.size()
        assert not button.native.visibleRegion().isEmpty()  # not scrolled out of view
    screenshot = viewer.screenshot(canvas_only=False, flash=False)
    assert screenshot.shape[1] <= SCREEN[0] and screenshot.shape[0] <= SCREEN[1]
    path = tmp_path / "laptop.png"
    array = np.ascontiguousarray(screenshot[..., :4])
    QImage(array.data, array.shape[1], array.shape[0], 4 * array.shape[1], QImage.Format.Format_RGBA8888).save(
        str(path)
    )
    assert path.stat().st_size > 10_000


def test_advanced_settings_are_in_collapsed_sections(make_napari_viewer, qtbot):
    from napari_seamless_unet.plugin._train_widget import TrainWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32), np.float32), name="img")
    widget = TrainWidget(viewer)
    assert list(widget.sections) == ["network", "augmentation", "schedule", "validation"]
    assert [s.text() for s in widget.sections.values()] == ["Network", "Augmentation", "Schedule", "Validation"]
    assert not any(s.isExpanded() for s in widget.sections.values())
    # Settings in a collapsed section still reach the configuration.
    widget.elastic.value = 0.0
    widget.flips.value = False
    widget.learning_rate.value = 0.0005
    widget.tile_size.value = 0
    widget.validation_share.value = 30
    config = widget.make_config()
    assert config.elastic_std == 0.0 and not config.flip and not config.rotate90
    assert config.learning_rate == 0.0005 and config.tile_size is None and config.validation_fraction == 0.3
    # The defaults are those of the trainer.
    defaults = TrainWidget(viewer).make_config()
    assert (defaults.contrast, defaults.brightness, defaults.gamma, defaults.learning_rate) == (0.2, 0.1, 0.2, None)


def test_no_stretched_buttons_and_a_full_width_status(make_napari_viewer, qtbot):
    _, _, (_, train), (_, segment) = _laptop_viewer(make_napari_viewer, qtbot)
    row = train._pair_rows[0]
    # The remove button of an image/labels pair is small, the combo boxes share the rest of the row.
    assert row.remove.native.width() <= 40
    assert row.remove.native.width() < row.image.native.width() / 2
    content = train.content.width()
    assert train.add_pair_button.native.width() < content / 2
    for widget, buttons in ((train, (train.train_button, train.stop_button)), (segment, (segment.run_button,))):
        for button in buttons:
            assert button.native.width() < widget.content.width() * 0.6
        # A long status wraps over (nearly) the whole width of the dock.
        widget.status.value = "word " * 60
        _settle(qtbot, 3)
        assert widget.status.native.width() >= widget.content.width() - 30
        assert widget.status.native.height() > 2 * widget.status.native.fontMetrics().height()
