"""The Segment dock's measurements: a table of the objects of the labels it adds, as the layer's ``features``.

:class:`Measuring` (mixed into the dock) measures an instance model's labels with
:func:`~napari_seamless_unet.core.measure.measure` in a thread worker once they are added (and again when they
are labelled again), under the image's intensities and in the units of the image layer's ``scale`` (a 2D model's
stack plane by plane, with a ``z`` column); sets the table as the Labels layer's ``features`` (napari shows an
object's row under the cursor, and in its *Features table widget*); and saves it as CSV.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import CheckBox, Container, PushButton
from qtpy.QtWidgets import QFileDialog

from ..core import axes as ax
from ..core.measure import measure
from ..io import write_csv
from . import _layers
from ._common import UserError, report_exception, start_worker
from ._ui import status_label


class Measuring:
    """Mixin of the Segment dock: ``measure_objects`` (ticked: measure), ``save_table_button``, ``table`` (the last
    measurements, a dict of columns) and ``table_layer`` (the Labels layer they describe)."""

    table: dict | None = None
    table_layer = None
    measure_worker = None
    _measuring = None  # (labels layer, image layer, image axes, per plane) of the last measurement asked for

    def _make_measure_widgets(self) -> None:
        """``measure_objects`` (for the dock's options) and ``measure_row`` (the save button and a status line,
        shown once there is something to say: the dock keeps its height on a laptop screen until then)."""
        self.measure_objects = CheckBox(
            text="measure the objects",
            value=True,
            tooltip="instance models: after segmenting, a table of the objects (area or volume, centroid, bounding "
            "box, eccentricity, diameter, mean and max intensity, in the units of the image's scale) becomes the "
            "labels layer's features",
        )
        self.save_table_button = PushButton(text="Save measurements (CSV)…", enabled=False)
        self.save_table_button.changed.connect(lambda *_: self.save_measurements())
        self.measure_status = status_label("")
        self.measure_row = Container(widgets=[self.measure_status, self.save_table_button], labels=False)
        self.measure_row.margins = (0, 0, 0, 0)
        self.measure_row.visible = False

    def measure_layer(self, labels_layer, image_layer, axes: str, model):
        """Measure ``labels_layer`` (segmented from ``image_layer`` with ``axes``) in a thread worker and set its
        ``features``; returns the worker, or None (a semantic model, or measuring not ticked)."""
        if model.task != "instances":
            return None
        self._measuring = (labels_layer, image_layer, axes, model.ndim == 2)
        return self.measure_again(labels_layer)

    def measure_again(self, labels_layer):
        """Measure ``labels_layer`` again (its labels changed) if it is the layer last measured."""
        if self._measuring is None or self._measuring[0] is not labels_layer or not self.measure_objects.value:
            return None
        _, image_layer, axes, per_plane = self._measuring
        labels = _layers.layer_data(labels_layer)
        image = _layers.layer_data(image_layer)
        spacing = _layers.voxel_size(image_layer, axes)
        channel_axis = axes.index("C") if "C" in axes else None
        request = self._measuring

        def run():
            yield "measuring"
            return measure(
                labels,
                image,
                axes=ax.spatial_axes(axes),
                spacing=spacing,
                per_plane=per_plane,
                channel_axis=channel_axis,
            )

        self.measure_status.value = "Measuring the objects…"
        self.measure_row.visible = True
        self.measure_worker = start_worker(
            run,
            yielded=lambda _: None,
            returned=lambda table: self._on_measured(request, labels_layer, table),
            errored=self._on_measure_errored,
            finished=self._on_measure_finished,
        )
        return self.measure_worker

    def _on_measured(self, request, labels_layer, table) -> None:
        if isinstance(table, UserError):
            self.measure_status.value = report_exception(table.error, "Measuring")
            return
        if request is not self._measuring:  # a newer measurement was asked for meanwhile
            return
        labels_layer.features = {"index": np.asarray(table.get("label", []), dtype=np.int64), **table}
        self.table, self.table_layer = table, labels_layer
        self.save_table_button.enabled = True
        count = len(table.get("label", []))
        self.measure_status.value = (
            f"Measured {count} objects: the features of {labels_layer.name!r} (shown under the cursor, and in "
            "Layers > Metadata > Features table)."
        )

    def _on_measure_errored(self, err) -> None:
        self.measure_status.value = report_exception(err, "Measuring", notify=False)

    def _on_measure_finished(self) -> None:
        self.measure_worker = None

    def save_measurements(self, path: str | None = None) -> str | None:
        """Write the last measurements to a CSV file (asked for when ``path`` is None); returns the path written."""
        if self.table is None:
            return None
        if path is None:
            default = f"{self.table_layer.name}.csv" if self.table_layer is not None else "measurements.csv"
            path, _ = QFileDialog.getSaveFileName(self, "Save measurements", default, "CSV files (*.csv)")
            if not path:
                return None
        written = write_csv(path, self.table)
        self.measure_status.value = f"Saved {len(self.table.get('label', []))} objects' measurements to {written}."
        return str(written)
