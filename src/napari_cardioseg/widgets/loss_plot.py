"""The Train widget's loss display: a moving average of the loss and a tiny plot of it.

Single batches are noisy, so the loss is shown smoothed, as an exponential moving average
``s = (1 - a) s + a loss`` with ``a = LOSS_SMOOTHING``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from qtpy.QtCore import QPointF, Qt
from qtpy.QtGui import QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QWidget

LOSS_SMOOTHING = 0.1  # weight of the newest batch in the shown loss (moving average)


def smooth(previous: float | None, loss: float, alpha: float = LOSS_SMOOTHING) -> float:
    """One step of the exponential moving average: ``(1 - alpha) * previous + alpha * loss``.

    The first loss (``previous`` None) starts the average.
    """
    return loss if previous is None else (1 - alpha) * previous + alpha * loss


class LossPlot(QWidget):
    """A tiny line plot of the smoothed loss per step (drawn with QPainter; no axes)."""

    def __init__(self) -> None:
        super().__init__()
        self.values: list[float] = []
        self.setFixedHeight(60)
        self.setToolTip("Smoothed training loss per step: it should fall, then level off.")

    def set_values(self, values: Sequence[float]) -> None:
        """Show ``values`` (redrawn at the next paint)."""
        self.values = list(values)
        self.update()

    def paintEvent(self, _event: Any) -> None:
        """Draw the finite values as a green line on black, scaled to the widget."""
        painter = QPainter(self)
        painter.fillRect(self.rect(), Qt.GlobalColor.black)
        values = [v for v in self.values if np.isfinite(v)]
        if len(values) >= 2:
            low, high = min(values), max(values)
            span = (high - low) or 1.0
            w, h = self.width() - 4, self.height() - 4
            step = w / (len(values) - 1)
            line = QPolygonF([QPointF(2 + i * step, 2 + h * (high - v) / span)
                              for i, v in enumerate(values)])
            painter.setPen(QPen(Qt.GlobalColor.green, 1.5))
            painter.drawPolyline(line)
        painter.end()
