"""Qt layout helpers that keep the docks small enough for a laptop screen (1366 x 768) beside the canvas.

Each dock puts its content in a scroll area (so its minimum height is small), advanced settings go into
collapsible sections, combo boxes do not grow with long layer names, status text wraps over the full width, and
buttons keep their natural width.
"""

from __future__ import annotations

from magicgui.widgets import ComboBox, Container, Label
from qtpy.QtCore import QSize, Qt, QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QDockWidget,
    QFrame,
    QHBoxLayout,
    QMainWindow,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

#: Width of the dock content, in pixels: enough for the settings, narrow enough to leave half a 1366 px
#: screen to the canvas next to napari's layer list. On a wider window a dock asks for up to ``DOCK_SHARE`` of it.
DOCK_WIDTH = 300
DOCK_MAX_WIDTH = 420
DOCK_SHARE = 0.22
#: Height a dock asks for at most when the plugin's docks do not fit their area together (the rest scrolls).
DOCK_HEIGHT = 460
#: Characters a combo box shows before eliding (its width does not depend on the longest layer name).
COMBO_CHARS = 8


def compact_combo(combo: ComboBox, chars: int = COMBO_CHARS) -> ComboBox:
    """Make a combo box as narrow as ``chars`` characters allow, whatever its choices (long names are elided)."""
    native = combo.native
    native.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    native.setMinimumContentsLength(chars)
    native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
    return combo


def name_in_tooltip(combo: ComboBox, what: str) -> ComboBox:
    """Show the full name of the chosen layer in the combo box's tooltip (the box itself may elide it)."""

    def update(*_):
        value = combo.value
        combo.tooltip = f"{what}: {value.name}" if value is not None and hasattr(value, "name") else what

    combo.changed.connect(update)
    update()
    return combo


def compact_widgets(container: Container) -> Container:
    """:func:`compact_combo` every combo box of ``container``."""
    for widget in container:
        if isinstance(widget, ComboBox):
            compact_combo(widget)
    return container


def section(title: str, widgets: list, tooltip: str = "") -> tuple[QCollapsible, Container]:
    """A collapsed section titled ``title`` holding a labelled form of ``widgets``; returns (section, form)."""
    form = compact_widgets(Container(widgets=widgets))
    form.margins = (0, 0, 0, 0)
    collapsible = QCollapsible(title, expandedIcon="▾", collapsedIcon="▸")
    collapsible.setDuration(120)
    collapsible.addWidget(form.native)
    collapsible.layout().setContentsMargins(0, 0, 0, 0)
    collapsible.layout().setSpacing(0)
    if tooltip:
        collapsible.toggleButton().setToolTip(tooltip)
    return collapsible, form


def status_label(text: str) -> Label:
    """A status line that wraps and uses the full width of its dock."""
    label = Label(value=text)
    native = label.native
    native.setWordWrap(True)
    native.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    policy = QSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Minimum)
    policy.setHeightForWidth(True)
    native.setSizePolicy(policy)
    native.setMinimumWidth(0)
    return label


def natural_width(*buttons) -> QWidget:
    """A row of buttons at their natural width, aligned left (no stretched buttons)."""
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    for button in buttons:
        native = getattr(button, "native", button)
        native.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Fixed)
        layout.addWidget(native)
    layout.addStretch()
    return row


class ScrollingDock:
    """Mixin for a dock widget (a QWidget) whose content scrolls: ``self.content_layout`` receives the widgets."""

    def _setup_scrolling(self) -> QVBoxLayout:
        content = QWidget()
        content.setObjectName("seamless_unet_content")
        self.content_layout = QVBoxLayout(content)
        self.content_layout.setContentsMargins(6, 4, 6, 4)
        scroll = QScrollArea()
        scroll.setObjectName("seamless_unet_scroll")
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        self.scroll_area, self.content = scroll, content
        return self.content_layout

    _balanced = False

    def showEvent(self, event):
        super().showEvent(event)
        if not self._balanced:
            self._balanced = True
            QTimer.singleShot(0, self._balance_docks)

    def _balance_docks(self) -> None:
        """Share the height of the dock area among the plugin's docks by their size hints.

        Qt gives the space of a dock area to the dock that came first and leaves the next one its minimum height;
        with two docks on a laptop screen that hides the second one's buttons.
        """
        dock = self.parent()
        main = dock.parent() if dock is not None else None
        if not isinstance(dock, QDockWidget) or not isinstance(main, QMainWindow) or dock.isFloating():
            return
        area = main.dockWidgetArea(dock)
        docks = [
            d
            for d in main.findChildren(QDockWidget)
            if main.dockWidgetArea(d) == area
            and d.isVisible()
            and not d.isFloating()
            and isinstance(d.widget(), ScrollingDock)
        ]
        if len(docks) > 1:
            title = dock.height() - self.height()
            needs = [d.widget().content.sizeHint().height() + title for d in docks]
            if sum(needs) > sum(d.height() for d in docks):
                needs = [min(n, DOCK_HEIGHT + title) for n in needs]
            main.resizeDocks(docks, needs, Qt.Orientation.Vertical)

    def _scroll_extra(self) -> int:
        return self.scroll_area.verticalScrollBar().sizeHint().width() + 2

    def minimumSizeHint(self) -> QSize:
        # Never narrower than the content (no horizontal scrolling), but as low as a few lines.
        width = max(self.content.minimumSizeHint().width(), 200) + self._scroll_extra()
        return QSize(width, 120)

    def sizeHint(self) -> QSize:
        preferred = DOCK_WIDTH
        main = self.window()
        if main is not self:  # docked: a share of the window's width
            preferred = int(min(DOCK_MAX_WIDTH, max(DOCK_WIDTH, DOCK_SHARE * main.width())))
        width = max(self.content.minimumSizeHint().width(), preferred) + self._scroll_extra()
        return QSize(width, min(self.content.sizeHint().height(), DOCK_HEIGHT))
