"""Qt views of measurement tables: a sortable model with header tooltips, and the summary."""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtCore import QAbstractTableModel, QModelIndex, Qt
from qtpy.QtWidgets import QTableWidget, QTableWidgetItem

from ..core.table import Table


def format_value(value: Any) -> str:
    """Format a cell as text: integers whole, floats to 4 significant digits, NaN empty."""
    if isinstance(value, str | np.str_):
        return str(value)
    if isinstance(value, np.integer):
        return str(int(value))
    return "" if not np.isfinite(value) else f"{value:.4g}"


class TableModel(QAbstractTableModel):
    """Read-only Qt model over a :class:`Table`.

    Cells are formatted only when shown, and sorting reorders an index array, so tables of many
    thousands of rows stay responsive. ``tooltips`` maps column names to the text shown on their header.
    """

    def __init__(self, table: Table | None = None) -> None:
        super().__init__()
        self.tooltips: dict[str, str] = {}
        self.set_table(table or Table())

    def set_table(self, table: Table, tooltips: dict[str, str] | None = None) -> None:
        """Show ``table``, with ``tooltips`` for its column headers."""
        self.beginResetModel()
        self.table = table
        self.tooltips = tooltips or {}
        self.order = np.arange(len(table))
        self.endResetModel()

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        """Return the number of table rows (none under a valid parent: the model is flat)."""
        return 0 if parent.isValid() else len(self.table)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        """Return the number of table columns (none under a valid parent: the model is flat)."""
        return 0 if parent.isValid() else len(self.table.names)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        """Return the formatted cell at ``index`` for the display role, else None."""
        if role != Qt.ItemDataRole.DisplayRole or not index.isValid():
            return None
        return format_value(self.table.columns[self.table.names[index.column()]]
                            [self.order[index.row()]])

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        """Return a column's name, or its tooltip, for the horizontal header."""
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(self.table.names):
            return None
        name = self.table.names[section]
        if role == Qt.ItemDataRole.DisplayRole:
            return name
        if role == Qt.ItemDataRole.ToolTipRole:
            return self.tooltips.get(name)
        return None

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sort rows by ``column`` (strings as text, numbers with NaN as the largest)."""
        if not 0 <= column < len(self.table.names):
            return
        self.layoutAboutToBeChanged.emit()
        values = self.table.columns[self.table.names[column]]
        if values.dtype.kind in "US":
            self.order = np.argsort(values, kind="stable")
        else:
            self.order = np.argsort(np.nan_to_num(values.astype(float), nan=np.inf), kind="stable")
        if order == Qt.SortOrder.DescendingOrder:
            self.order = self.order[::-1]
        self.layoutChanged.emit()


def fill_summary(view: QTableWidget, summary: Table, tooltips: dict[str, str]) -> None:
    """One row per summary column (tooltip: its description), one column per image/slice."""
    view.setRowCount(len(summary.names))
    view.setColumnCount(len(summary))
    view.setVerticalHeaderLabels(summary.names)
    for row, name in enumerate(summary.names):
        stat, _, base = name.partition("_")
        text = tooltips.get(name) or (f"{stat} of: {tooltips[base]}" if base in tooltips else "")
        header = view.verticalHeaderItem(row)
        if header is not None:
            header.setToolTip(text)
        for col in range(len(summary)):
            view.setItem(row, col, QTableWidgetItem(format_value(summary[name][col])))


def features_of(objects: Table) -> dict[str, np.ndarray]:
    """Return a layer ``features`` table: one row per label value (the first row of each)."""
    _, first = np.unique(objects["label"], return_index=True)
    columns = {"index": objects["label"][first]}
    columns.update({k: v[first] for k, v in objects.columns.items() if k != "label"})
    return columns
