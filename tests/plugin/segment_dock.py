"""The Segment dock set up in code, as the widget tests use it: an image layer, a model file, the CPU."""

from __future__ import annotations

from napari_seamless_unet.plugin._predict_widget import PredictWidget


def segment_dock(viewer, image_name: str, model_path) -> PredictWidget:
    widget = PredictWidget(viewer)
    widget.image.value = viewer.layers[image_name]
    widget.device.value = "cpu"
    widget.model_file.value = str(model_path)
    return widget
