"""The measurement table in napari, for the README: ``xvfb-run -a python scripts/screenshot_measurements.py``.

Opens a 1600 x 900 viewer with the touching-discs sample (given a pixel size of 0.5 µm), trains a tiny network
briefly on the CPU in the "Train U-Net" dock, segments the image in "Segment with U-Net" (which measures the
objects into the labels layer's features), docks napari's own "Features table widget" beside them, hovers an
object (its measurements in the status bar) and saves ``docs/images/measurements.png`` (under 500 kB).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import napari
from qtpy.QtCore import Qt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screenshot_widgets import PLUGIN, save_png, settle, wait_until_idle

PIXEL = 0.5  # µm


def screenshot(size: tuple[int, int], output: Path, steps: int, model: Path | None = None) -> Path:
    """The picture; ``model``: a model file to segment with (trained and saved there first if missing)."""
    viewer = napari.Viewer(title="napari-seamless-unet")
    window = viewer.window._qt_window
    window.resize(*size)
    viewer.open_sample(PLUGIN, "touching_discs")
    for layer in viewer.layers:
        layer.scale = (PIXEL, PIXEL)
    settle()
    _, train = viewer.window.add_plugin_dock_widget(PLUGIN, "Train U-Net")
    segment_dock, segment = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment with U-Net")
    with tempfile.TemporaryDirectory() as folder:
        if model is None or not model.exists():
            train.preset.value = "tiny"
            train.steps.value = steps
            train.device.value = "cpu"
            train.save_path.value = str(model or Path(folder) / "discs.unet.pt")
            train.start()
            wait_until_idle(train)
            if train.last_model is None:
                raise RuntimeError(f"training failed: {train.status.value}")
        else:
            segment.model_file.value = str(model)
        segment.image.value = viewer.layers["touching discs"]
        segment.device.value = "cpu"
        segment.min_size.value = 20  # the fragments a one-minute network leaves
        segment.start()
        wait_until_idle(segment)
        while segment.measure_worker is not None:
            settle(1)
        if segment.table is None:
            raise RuntimeError(f"no measurements: {segment.measure_status.value}")
    # The table beside the canvas; the Train dock closed to give it room.
    viewer.window.remove_dock_widget(train.parent())
    table_dock, _ = viewer.window.add_plugin_dock_widget("napari", "Features table widget", tabify=False)
    settle()
    window.resizeDocks([segment_dock, table_dock], [size[1] // 2, size[1] // 2], Qt.Orientation.Vertical)
    window.resizeDocks([segment_dock], [int(0.4 * size[0])], Qt.Orientation.Horizontal)
    settle()
    bar = segment.scroll_area.verticalScrollBar()
    bar.setValue(bar.maximum())  # the dock's end: the status lines and "Save measurements (CSV)"
    viewer.layers["touching discs labels"].visible = False
    if train.preview_layer is not None:
        train.preview_layer.visible = False
    labels = segment.last_layer
    viewer.layers.selection.active = labels
    viewer.reset_view()
    settle()
    # Hover the largest object: napari's status bar shows its row of the table.
    largest = int(segment.table["area"].argmax())
    y, x = segment.table["centroid_y"][largest], segment.table["centroid_x"][largest]
    viewer.cursor.position = (y, x)
    viewer.window._qt_viewer.canvas.native.setFocus()
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for popup in window.findChildren(NapariQtNotification):
        popup.hide()
    settle(40)
    path = save_png(viewer.screenshot(canvas_only=False, flash=False), output)
    print(f"{len(segment.table['label'])} objects; saved {path} ({path.stat().st_size // 1000} kB)")
    viewer.close()
    return path


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1600x900", help="window size WIDTHxHEIGHT (default: %(default)s)")
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).resolve().parents[1] / "docs/images/measurements.png"
    )
    parser.add_argument("--steps", type=int, default=600, help="training steps of the tiny network")
    parser.add_argument(
        "--model", type=Path, default=None, help="segment with this model file (trained first if missing)"
    )
    args = parser.parse_args(argv)
    width, height = (int(n) for n in args.size.lower().split("x"))
    return screenshot((width, height), args.output, args.steps, args.model)


if __name__ == "__main__":
    main()
