"""Screenshots of the two widgets in use, for the README: ``xvfb-run -a python scripts/screenshot_widgets.py``.

For each window size asked for (default: a 1366 x 768 laptop screen and a 1920 x 1080 desktop one), opens a
viewer window of that size, loads the touching-discs sample, docks "Train U-Net" and "Segment with U-Net" through
the plugin manifest, trains a tiny network briefly on the CPU, segments the image with it and saves
``docs/images/widgets-<width>x<height>.png`` (kept under 500 kB).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtGui import QImage
from qtpy.QtWidgets import QApplication

PLUGIN = "napari-seamless-unet"
MAX_BYTES = 500_000


def wait_until_idle(widget, timeout: float = 600.0) -> None:
    """Process Qt events until the widget's thread worker has finished and its results are shown."""
    app = QApplication.instance()
    deadline = time.monotonic() + timeout
    while widget.busy:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{type(widget).__name__} still busy after {timeout} s")
        app.processEvents()
        time.sleep(0.02)
    app.processEvents()


def save_png(array: np.ndarray, path: Path, max_bytes: int = MAX_BYTES) -> Path:
    """Save an RGBA screenshot as PNG, scaling it down until the file is smaller than ``max_bytes``."""
    array = np.ascontiguousarray(array[..., :4], dtype=np.uint8)
    h, w = array.shape[:2]
    image = QImage(array.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()
    path.parent.mkdir(parents=True, exist_ok=True)
    scale = 1.0
    while True:
        scaled = (
            image if scale == 1.0 else image.scaledToWidth(int(w * scale), Qt.TransformationMode.SmoothTransformation)
        )
        scaled.convertToFormat(QImage.Format.Format_RGB888).save(str(path), "PNG")
        if path.stat().st_size < max_bytes or scale < 0.3:
            return path
        scale *= 0.85


def settle(rounds: int = 20) -> None:
    app = QApplication.instance()
    for _ in range(rounds):
        app.processEvents()
        time.sleep(0.01)


def screenshot(size: tuple[int, int], output: Path, steps: int) -> Path:
    """One screenshot of a ``size`` window after a short training and a segmentation."""
    viewer = napari.Viewer(title="napari-seamless-unet")
    window = viewer.window._qt_window
    window.resize(*size)  # first the window, then the docks: as a user on that screen opens them
    viewer.open_sample(PLUGIN, "touching_discs")
    settle()
    _, train = viewer.window.add_plugin_dock_widget(PLUGIN, "Train U-Net")
    _, segment = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment with U-Net")
    settle()

    with tempfile.TemporaryDirectory() as folder:
        train.preset.value = "tiny"  # the "tiny" preset: a minute on a laptop CPU
        train.steps.value = steps
        train.preview_every.value = 25
        train.device.value = "cpu"
        train.save_path.value = str(Path(folder) / "discs.unet.pt")
        train.start()
        wait_until_idle(train)
        if train.last_model is None:
            raise RuntimeError(f"training failed: {train.status.value}")

        segment.image.value = viewer.layers["touching discs"]
        segment.device.value = "cpu"
        segment.start()
        wait_until_idle(segment)
        if segment.last_layer is None:
            raise RuntimeError(f"segmentation failed: {segment.status.value}")
        # The status and the file field name the temporary folder: show where a user's file would be instead.
        train.status.value = train.status.value.replace(folder, str(Path("~/unet-models")))
        train.save_path.line_edit.value = str(Path("~/unet-models/discs.unet.pt"))

    # Show the image with the new segmentation; the annotation and the preview stay in the layer list.
    viewer.layers["touching discs labels"].visible = False
    if train.preview_layer is not None:
        train.preview_layer.visible = False
    viewer.layers.selection.active = segment.last_layer
    viewer.reset_view()
    # Pop-up notifications would cover the canvas: the status lines of the widgets say the same.
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for popup in window.findChildren(NapariQtNotification):
        popup.hide()
    viewer.window._qt_viewer.canvas.native.setFocus()
    train.steps.native.lineEdit().deselect()  # no text field shows a selection
    settle()
    # Where a dock scrolls, show its end: the status, the plot, the result.
    for widget in (train, segment):
        bar = widget.scroll_area.verticalScrollBar()
        bar.setValue(bar.maximum())
    settle()
    canvas = viewer.window._qt_viewer.canvas.native
    print(f"window {window.width()}x{window.height()}, canvas {canvas.width()}x{canvas.height()}")
    path = save_png(viewer.screenshot(canvas_only=False, flash=False), output)
    print(f"saved {path} ({path.stat().st_size // 1000} kB)")
    viewer.close()
    return path


def main(argv=None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", nargs="+", default=["1366x768", "1920x1080"], help="window sizes WIDTHxHEIGHT (default: %(default)s)"
    )
    parser.add_argument("--folder", type=Path, default=Path(__file__).resolve().parents[1] / "docs/images")
    parser.add_argument("--steps", type=int, default=600, help="training steps of the tiny network")
    args = parser.parse_args(argv)
    paths = []
    for text in args.sizes:
        width, height = (int(n) for n in text.lower().split("x"))
        paths.append(screenshot((width, height), args.folder / f"widgets-{width}x{height}.png", args.steps))
    return paths


if __name__ == "__main__":
    main()
