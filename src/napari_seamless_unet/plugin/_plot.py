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
X_TITLE, LOSS_TITLE, METRIC_TITLE = "step", "loss", "score"


class LossPlot(QWidget):
    """Training loss, validation loss (left axis) and a validation score in [0, 1] (right axis) against steps.

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
        self.setMinimumHeight(150)
        # Grows into the height a large screen leaves to the dock.
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def clear(self) -> None:
        for points in self.series.values():
            points.clear()
        self.update()

    def add_point(self, name: str, x: float, y: float) -> None:
        if y is None or not math.isfinite(float(y)):
            return
        self.series[name].append((float(x), float(y)))
        self.update()

    def axis_titles(self) -> tuple[str, str, str]:
        """Titles of the x axis, the left (loss) axis and the right (score) axis."""
        return X_TITLE, LOSS_TITLE, METRIC_TITLE

    def legend(self) -> list[str]:
        """Legend entries of the series drawn, with their last value, e.g. ``["loss 0.21", "val IoU 0.8"]``."""
        entries = []
        for name in SERIES:
            points = self.series[name]
            if points:
                label = self.metric_name if name == "val metric" else name
                entries.append(f"{label} {points[-1][1]:.3g}")
        return entries

    def _legend_layout(self, metrics, width: float) -> list[tuple[float, float, str, str]]:
        """(x, row, colour, text) of each legend entry, wrapped to ``width``."""
        swatch, gap = 16, 14
        x, row, placed = 0.0, 0, []
        entries = [(SERIES[name][0], text) for name, text in zip([n for n in SERIES if self.series[n]], self.legend())]
        for colour, text in entries:
            needed = swatch + 4 + metrics.horizontalAdvance(text)
            if x > 0 and x + needed > width:
                x, row = 0.0, row + 1
            placed.append((x, row, colour, text))
            x += needed + gap
        return placed

    def paintEvent(self, event):
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        fg = self.palette().color(self.foregroundRole())
        metrics = painter.fontMetrics()
        line = metrics.height()
        everything = [p for pts in self.series.values() for p in pts]
        has_metric = bool(self.series["val metric"])
        legend = self._legend_layout(metrics, self.width() - 8)
        legend_rows = (max(row for _, row, _, _ in legend) + 1) if legend else 0

        small = painter.font()
        small.setPointSizeF(max(6.0, small.pointSizeF() * 0.85))
        painter.setFont(small)
        small_metrics = painter.fontMetrics()
        tick = small_metrics.height()
        margin_l = 10 + line + small_metrics.horizontalAdvance("0.000")
        margin_r = (10 + line + small_metrics.horizontalAdvance("0.0")) if has_metric else 12
        margin_t = 6 + legend_rows * (line + 2) + tick // 2
        margin_b = 4 + tick + line
        area = QRectF(margin_l, margin_t, self.width() - margin_l - margin_r, self.height() - margin_t - margin_b)
        painter.setPen(QPen(fg, 1))
        painter.drawRect(area)

        # Axis titles: "step" under the x axis, "loss" along the left axis, "score" along the right one.
        painter.setFont(self.font())
        painter.drawText(
            QRectF(area.left(), area.bottom() + tick, area.width(), line), Qt.AlignmentFlag.AlignHCenter, X_TITLE
        )
        self._draw_vertical(painter, LOSS_TITLE, QPointF(2, area.center().y()), -90)
        if has_metric:
            self._draw_vertical(painter, METRIC_TITLE, QPointF(self.width() - 2, area.center().y()), 90)
        painter.setFont(small)

        if not everything:
            painter.drawText(area, Qt.AlignmentFlag.AlignCenter, "loss and validation\nappear here")
            painter.end()
            return
        points = [p for name, (_, axis) in SERIES.items() if axis == "loss" for p in self.series[name]]
        x_max = max(max(x for x, _ in everything), 1.0)
        losses = [y for _, y in points] or [0.0, 1.0]
        y_lo, y_hi = min(0.0, min(losses)), max(losses)
        if y_hi <= y_lo:
            y_hi = y_lo + 1.0

        def to_screen(x, y, axis):
            lo, hi = (y_lo, y_hi) if axis == "loss" else (0.0, 1.0)
            return QPointF(area.left() + area.width() * x / x_max, area.bottom() - area.height() * (y - lo) / (hi - lo))

        # Tick labels: the ends of each axis.
        right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        left = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
        label_w = margin_l - line - 8
        painter.drawText(QRectF(area.left() - label_w - 3, area.top() - tick / 2, label_w, tick), right, f"{y_hi:.3g}")
        painter.drawText(
            QRectF(area.left() - label_w - 3, area.bottom() - tick / 2, label_w, tick), right, f"{y_lo:.3g}"
        )
        if has_metric:
            painter.drawText(QRectF(area.right() + 3, area.top() - tick / 2, margin_r, tick), left, "1")
            painter.drawText(QRectF(area.right() + 3, area.bottom() - tick / 2, margin_r, tick), left, "0")
        painter.drawText(QRectF(area.left(), area.bottom() + 1, area.width(), tick), Qt.AlignmentFlag.AlignLeft, "0")
        painter.drawText(
            QRectF(area.left(), area.bottom() + 1, area.width(), tick), Qt.AlignmentFlag.AlignRight, f"{x_max:g}"
        )

        for name, (colour, axis) in SERIES.items():
            pts = self.series[name]
            if not pts:
                continue
            painter.setPen(QPen(QColor(colour), 2))
            path = QPainterPath(to_screen(*pts[0], axis))
            for x, y in pts[1:]:
                path.lineTo(to_screen(x, y, axis))
            painter.drawPath(path)
            if len(pts) == 1 or name != "loss":
                for x, y in pts:
                    painter.drawEllipse(to_screen(x, y, axis), 2.5, 2.5)

        # Legend above the plot: a line in the series' colour, then its name and last value, in the text colour.
        painter.setFont(self.font())
        for x, row, colour, text in legend:
            y = 4 + row * (line + 2) + line / 2
            painter.setPen(QPen(QColor(colour), 3))
            painter.drawLine(QPointF(4 + x, y), QPointF(4 + x + 16, y))
            painter.setPen(QPen(fg, 1))
            painter.drawText(QRectF(4 + x + 20, y - line / 2, 400, line), left, text)
        painter.end()

    @staticmethod
    def _draw_vertical(painter: QPainter, text: str, anchor: QPointF, angle: float) -> None:
        """``text`` rotated by ``angle`` degrees, centred on ``anchor`` along the rotated baseline."""
        metrics = painter.fontMetrics()
        painter.save()
        painter.translate(anchor)
        painter.rotate(angle)
        w = metrics.horizontalAdvance(text)
        painter.drawText(QRectF(-w / 2, 0, w, metrics.height()), Qt.AlignmentFlag.AlignCenter, text)
        painter.restore()
