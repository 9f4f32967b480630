"""One (image layer, Labels layer) row of the Train dock's training data."""

from __future__ import annotations

from magicgui.widgets import ComboBox, Container, PushButton
from qtpy.QtWidgets import QSizePolicy

from . import _layers
from ._common import layer_choices, pick_default_layer
from ._ui import compact_combo, name_in_tooltip


class _PairRow:
    """One (image layer, Labels layer) training pair: two combo boxes and a small remove button in a row."""

    def __init__(self, widget):
        self.image = ComboBox(label="image", choices=lambda _: layer_choices(widget.viewer, "Image"), nullable=True)
        self.labels = ComboBox(label="labels", choices=lambda _: layer_choices(widget.viewer, "Labels"), nullable=True)
        compact_combo(self.image, chars=5)  # two in a row: both stretch to share the dock's width
        compact_combo(self.labels, chars=5)
        name_in_tooltip(self.image, "image to train on")
        name_in_tooltip(self.labels, "its annotation (a Labels layer of the same size)")
        self.remove = PushButton(text="✕", tooltip="remove this pair")
        self.remove.native.setFixedWidth(self.remove.native.fontMetrics().horizontalAdvance("✕") + 18)
        self.remove.native.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.container = Container(widgets=[self.image, self.labels, self.remove], layout="horizontal", labels=False)
        self.container.margins = (0, 0, 0, 0)
        self.image.changed.connect(self._guess_labels)
        pick_default_layer(self.image, widget.viewer, "Image")
        self._guess_labels()

    def _guess_labels(self, *_):
        guess = _layers.guess_labels_layer(self.image.value, [lab for lab in self.labels.choices if lab is not None])
        if guess is not None:
            self.labels.value = guess
