"""A small live plot of the training loss and validation metric, drawn with QPainter (no matplotlib needed)."""

from __future__ import annotations

import math

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

# name -> (colour, axis): "loss" series share the left axis, "metric" series the right axis fixed to [0, 1].
SERIES = {
    "loss": ("#4fc3f7", "loss"),
    "val loss": ("#ffb74d", "loss"),
    "val metric": ("#81c784", "metric"),
}


class LossPlot(QWidget):
    """Training loss, validation loss (left axis) and a validation metric in [0, 1] (right axis) against steps.

    Attributes
    ----------
    series : dict[str, list[tuple[float, float]]]
        The points drawn, by series name (``"loss"``, ``"val loss"``, ``"val metric"``).
    metric_name : str
        Legend text of the metric series (e.g. ``"val IoU"``).
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self.series: dict[str, list[tuple[float, float]]] = {name: [] for name in SERIES}
        self.metric_name = "val metric"
        self.setMinimumHeight(140)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def clear(self) -> None:
        for points in self.series.values():
            points.clear()
        self.update()

    def add_point(self, name: str, x: float, y: float) -> None:
        if y is None or not math.isfinite(float(y)):
            return
        self.series[name].append((float(x), float(y)))
        self.update()

    def paintEvent(self, event):
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        fg = self.palette().color(self.foregroundRole())
        margin_l, margin_r, margin_t, margin_b = 42, 34, 18, 20
        area = QRectF(margin_l, margin_t, self.width() - margin_l - margin_r, self.height() - margin_t - margin_b)
        painter.setPen(QPen(fg, 1))
        painter.drawRect(area)

        points = [p for name, (_, axis) in SERIES.items() if axis == "loss" for p in self.series[name]]
        everything = [p for pts in self.series.values() for p in pts]
        if not everything:
            painter.drawText(area, Qt.AlignmentFlag.AlignCenter, "loss and validation appear here")
            painter.end()
            return
        x_max = max(max(x for x, _ in everything), 1.0)
        losses = [y for _, y in points] or [0.0, 1.0]
        y_lo, y_hi = min(0.0, min(losses)), max(losses)
        if y_hi <= y_lo:
            y_hi = y_lo + 1.0

        def to_screen(x, y, axis):
            lo, hi = (y_lo, y_hi) if axis == "loss" else (0.0, 1.0)
            return QPointF(area.left() + area.width() * x / x_max, area.bottom() - area.height() * (y - lo) / (hi - lo))

        small = painter.font()
        small.setPointSizeF(max(6.0, small.pointSizeF() * 0.8))
        painter.setFont(small)
        painter.drawText(QRectF(0, area.top() - 6, margin_l - 4, 14), Qt.AlignmentFlag.AlignRight, f"{y_hi:.3g}")
        painter.drawText(QRectF(0, area.bottom() - 8, margin_l - 4, 14), Qt.AlignmentFlag.AlignRight, f"{y_lo:.3g}")
        painter.drawText(QRectF(area.right() + 3, area.top() - 6, margin_r, 14), Qt.AlignmentFlag.AlignLeft, "1")
        painter.drawText(QRectF(area.right() + 3, area.bottom() - 8, margin_r, 14), Qt.AlignmentFlag.AlignLeft, "0")
        painter.drawText(
            QRectF(area.left(), area.bottom() + 2, area.width(), 16), Qt.AlignmentFlag.AlignRight, f"step {x_max:g}"
        )

        legend_x = area.left()
        for name, (colour, axis) in SERIES.items():
            pts = self.series[name]
            if not pts:
                continue
            pen = QPen(QColor(colour), 2)
            painter.setPen(pen)
            path = QPainterPath(to_screen(*pts[0], axis))
            for x, y in pts[1:]:
                path.lineTo(to_screen(x, y, axis))
            painter.drawPath(path)
            if len(pts) == 1 or name != "loss":
                for x, y in pts:
                    painter.drawEllipse(to_screen(x, y, axis), 2.5, 2.5)
            label = self.metric_name if name == "val metric" else name
            label = f"{label} {pts[-1][1]:.3g}"
            painter.drawText(QRectF(legend_x, 2, 160, 14), Qt.AlignmentFlag.AlignLeft, label)
            legend_x += painter.fontMetrics().horizontalAdvance(label) + 14
        painter.end()
