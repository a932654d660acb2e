"""Measure and Evaluate widgets: thin faces on ``core.measure`` and ``core.metrics``.

Measure: a Labels layer (+ optional intensity image and cell mask) → per-object and summary
tables (sortable; clicking a row centres the viewer on the object), the object table as the
layer's ``features`` (napari shows the values on hover), a histogram and an orientation rose
plot, and exports (object CSV, summary CSV, object masks as calibrated TIFF).
Evaluate: prediction vs ground truth (+ optional ignore mask) → metrics table.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, Label, LineEdit, PushButton, SpinBox
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.layers import Image, Labels
from qtpy.QtCore import QAbstractTableModel, QModelIndex, Qt
from qtpy.QtWidgets import QFileDialog, QTableView, QTableWidget, QTableWidgetItem

from ..core.errors import CardiosegError
from ..core.io import write_tiff
from ..core.measure import KINDS, MeasureResult, measure_iter
from ..core.measure.objects import OBJECT_MODES
from ..core.metrics import evaluate
from ..core.table import Table
from ._common import output_layer_kwargs, report_error, show_info, spatial_scale, start_generator

if TYPE_CHECKING:
    import napari


class TableModel(QAbstractTableModel):
    """Read-only Qt model over a :class:`Table`; cells are formatted only when shown, and
    sorting reorders an index array, so tables of many thousands of rows stay responsive."""

    def __init__(self, table: Table | None = None) -> None:
        super().__init__()
        self.set_table(table or Table())

    def set_table(self, table: Table) -> None:
        self.beginResetModel()
        self.table = table
        self.order = np.arange(len(table))
        self.endResetModel()

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.table)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.table.names)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role != Qt.ItemDataRole.DisplayRole or not index.isValid():
            return None
        value = self.table.columns[self.table.names[index.column()]][self.order[index.row()]]
        if isinstance(value, np.integer):
            return str(int(value))
        return "" if not np.isfinite(value) else f"{value:.4g}"

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.table.names[section]
        return None

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        if not 0 <= column < len(self.table.names):
            return
        self.layoutAboutToBeChanged.emit()
        values = np.asarray(self.table.columns[self.table.names[column]], dtype=float)
        self.order = np.argsort(np.nan_to_num(values, nan=np.inf), kind="stable")
        if order == Qt.SortOrder.DescendingOrder:
            self.order = self.order[::-1]
        self.layoutChanged.emit()


def _parse_pixel_size(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in re.split(r"[,\s]+", text.strip()) if v)
    except ValueError as exc:
        raise CardiosegError(f"pixel size {text!r} is not a list of numbers") from exc


def _ask_path(parent: Any, title: str, suggestion: str, filters: str) -> Path | None:
    path, _ = QFileDialog.getSaveFileName(parent, title, suggestion, filters)
    return Path(path) if path else None


class MeasureWidget(Container):
    """Measure Z-disks or shapes of a Labels layer; tables, plots and exports."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        self._viewer = napari_viewer
        self._labels_layer = ComboBox(label="labels", choices=self._labels_layers)
        self._image = ComboBox(label="image", choices=self._image_layers, nullable=True, value=None)
        self._cell = ComboBox(label="cell mask", choices=self._mask_layers, nullable=True,
                              value=None)
        self._kind = ComboBox(label="kind", choices=list(KINDS), value="zdisk")
        self._pixel = LineEdit(label="pixel size (µm)")
        self._mode = ComboBox(label="objects", choices=list(OBJECT_MODES), value="auto")
        self._min_size = SpinBox(label="min size (px)", value=0, min=0, max=10**9)
        self._class = SpinBox(label="class (0 = all)", value=0, min=0, max=2**31 - 1,
                              tooltip="measure one class of a multi-class prediction, split into "
                                      "connected components")
        self._run = PushButton(text="Measure")
        self._status = Label(value="")
        self._column = ComboBox(label="histogram", choices=[])
        self._export_objects = PushButton(text="Export objects CSV")
        self._export_summary = PushButton(text="Export summary CSV")
        self._export_masks = PushButton(text="Export masks TIFF")
        super().__init__(widgets=[
            self._labels_layer, self._image, self._cell, self._kind, self._pixel, self._mode,
            self._min_size, self._class, self._run, self._status, self._column, self._export_objects,
            self._export_summary, self._export_masks,
        ])
        self.model = TableModel()
        self.view = QTableView()
        self.view.setModel(self.model)
        self.view.setSortingEnabled(True)
        self.view.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.summary_view = QTableWidget()
        self.figure = Figure(figsize=(3.5, 3.0), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        for widget in (self.view, self.summary_view, self.canvas):
            self.native.layout().addWidget(widget)
        self.result: MeasureResult | None = None
        self.worker = None
        self._source: Labels | None = None
        self._labels_layer.changed.connect(self._pixel_from_layer)
        self._run.changed.connect(self.measure)
        self._column.changed.connect(self._plot)
        self.view.clicked.connect(lambda index: self.go_to(int(self.model.order[index.row()])))
        self._export_objects.changed.connect(lambda: self.export("objects"))
        self._export_summary.changed.connect(lambda: self.export("summary"))
        self._export_masks.changed.connect(lambda: self.export("masks"))
        napari_viewer.layers.events.inserted.connect(self.reset_choices)
        napari_viewer.layers.events.removed.connect(self.reset_choices)
        self._pixel_from_layer()

    def _labels_layers(self, _widget: Any = None) -> list[tuple[str, Labels]]:
        return [(ly.name, ly) for ly in self._viewer.layers if isinstance(ly, Labels)]

    def _image_layers(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return [(ly.name, ly) for ly in self._viewer.layers if isinstance(ly, Image)]

    def _mask_layers(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return [(ly.name, ly) for ly in self._viewer.layers if isinstance(ly, Labels | Image)]

    def _pixel_from_layer(self) -> None:
        layer = self._labels_layer.value
        if layer is not None:
            self._pixel.value = " ".join(f"{s:g}" for s in spatial_scale(layer))
            self._kind.value = "shapes" if layer.data.ndim == 3 else "zdisk"

    def measure(self) -> None:
        """Measure the chosen layer in a worker; tables, features and plots follow."""
        layer = self._labels_layer.value
        try:
            if layer is None:
                raise CardiosegError("add or choose a Labels layer first")
            spacing = _parse_pixel_size(self._pixel.value)
            image = None if self._image.value is None else np.asarray(self._image.value.data)
            cell = None if self._cell.value is None else np.asarray(self._cell.value.data)
        except CardiosegError as exc:
            report_error(exc)
            return
        self._source = layer
        self._run.enabled = False
        self._status.value = "measuring..."
        self.worker = start_generator(
            measure_iter, np.asarray(layer.data), spacing, self._kind.value, image=image,
            cell_mask=cell, mode=self._mode.value, min_size=self._min_size.value,
            class_value=self._class.value or None, owner=self, on_yield=self._progress,
            on_return=self.show_result, on_finish=self._finished, total=1,
        )

    def _progress(self, step: Any) -> None:
        self._status.value = f"measured {step.done} / {step.total} objects"
        pbar = getattr(self.worker, "pbar", None)
        if pbar is not None:
            if pbar.total != step.total:
                pbar.total = step.total
                pbar.events.total(value=step.total)
            pbar.n = step.done
            pbar.events.value(value=step.done)

    def _finished(self) -> None:
        self._run.enabled = True

    def show_result(self, result: MeasureResult) -> None:
        """Fill the tables, set the layer features, update the plots."""
        self.result = result
        self.model.set_table(result.objects)
        self._fill_summary(result.summary)
        self._status.value = f"{len(result.objects)} objects"
        target = self._target_layer(result)
        target.features = self._features(result.objects)
        self._column.choices = [n for n in result.objects.names if n not in ("label", "z")]
        self._plot()

    def _target_layer(self, result: MeasureResult) -> Labels:
        """The input layer when its values are the objects, else an ``objects`` layer on top."""
        source = self._source
        if np.array_equal(np.asarray(source.data), result.labels):
            return source
        name = f"{source.name} objects"
        if name in self._viewer.layers:
            layer = self._viewer.layers[name]
            layer.data = result.labels
            return layer
        return self._viewer.add_labels(result.labels, **output_layer_kwargs(source, name))

    @staticmethod
    def _features(objects: Table) -> dict[str, np.ndarray]:
        """One row per label value (the first, for labels measured on several slices)."""
        _, first = np.unique(objects["label"], return_index=True)
        columns = {"index": objects["label"][first]}
        columns.update({k: v[first] for k, v in objects.columns.items() if k != "label"})
        return columns

    def _fill_summary(self, summary: Table) -> None:
        table = self.summary_view
        table.setRowCount(len(summary.names))
        table.setColumnCount(len(summary))
        table.setVerticalHeaderLabels(summary.names)
        for col in range(len(summary)):
            for row, name in enumerate(summary.names):
                value = float(summary[name][col])
                table.setItem(row, col, QTableWidgetItem("" if not np.isfinite(value)
                                                         else f"{value:.4g}"))

    def _plot(self) -> None:
        self.figure.clear()
        if self.result is None:
            self.canvas.draw_idle()
            return
        objects = self.result.objects
        rose = "orientation_deg" in objects.names
        column = self._column.value
        if column in objects.names:
            ax = self.figure.add_subplot(1, 2 if rose else 1, 1)
            values = np.asarray(objects[column], dtype=float)
            ax.hist(values[np.isfinite(values)], bins=30)
            ax.set_title(column, fontsize=8)
            ax.tick_params(labelsize=7)
        if rose:
            ax = self.figure.add_subplot(1, 2, 2, projection="polar")
            angles = np.asarray(objects["orientation_deg"], dtype=float)
            angles = np.radians(angles[np.isfinite(angles)])
            both = np.concatenate([angles, angles + np.pi])  # axial data: show both ends
            counts, edges = np.histogram(both, bins=36, range=(0, 2 * np.pi))
            ax.bar(edges[:-1], counts, width=edges[1] - edges[0], align="edge")
            ax.set_title("orientation", fontsize=8)
            ax.set_yticks([])
            ax.tick_params(labelsize=6)
        self.canvas.draw_idle()

    def go_to(self, row: int) -> None:
        """Centre the viewer (and the slider of a stack) on the object in table row ``row``."""
        if self.result is None or self._source is None:
            return
        obj = self.result.objects.row(row)
        spacing = np.asarray(self.result.spacing)
        position = [obj[f"centroid_{ax}_um"] / s if f"centroid_{ax}_um" in obj else obj.get(ax, 0)
                    for ax, s in zip("zyx"[-len(spacing):], spacing, strict=True)]
        layer = self._source
        world = np.asarray(position) * np.asarray(layer.scale[-len(spacing):]) \
            + np.asarray(layer.translate[-len(spacing):])
        if len(world) == 3:
            self._viewer.dims.set_point(self._viewer.dims.ndim - 3, world[0])
        displayed = 3 if self._viewer.dims.ndisplay == 3 and len(world) == 3 else 2
        self._viewer.camera.center = tuple(world[-displayed:])

    def export(self, what: str, path: str | Path | None = None) -> Path | None:
        """Write ``objects`` / ``summary`` CSV or the object ``masks`` TIFF (asks for a path)."""
        try:
            if self.result is None:
                raise CardiosegError("measure first, then export")
            suffix = ".tif" if what == "masks" else ".csv"
            if path is None:
                suggestion = f"{self._source.name}_{what}{suffix}"
                path = _ask_path(self.native, f"Export {what}", suggestion,
                                 "TIFF (*.tif *.tiff)" if what == "masks" else "CSV (*.csv)")
                if path is None:
                    return None
            if what == "masks":
                write_tiff(path, self.result.labels, self.result.spacing)
            else:
                getattr(self.result, what).write_csv(path)
        except CardiosegError as exc:
            report_error(exc)
            return None
        show_info(f"wrote {path}")
        return Path(path)


class EvaluateWidget(Container):
    """Prediction vs ground-truth layers (+ optional ignore mask) → per-class metrics table."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        self._viewer = napari_viewer
        self._pred = ComboBox(label="prediction", choices=self._layers)
        self._truth = ComboBox(label="ground truth", choices=self._layers)
        self._ignore = ComboBox(label="ignore mask", choices=self._layers, nullable=True,
                                value=None)
        self._binary = CheckBox(text="foreground vs background")
        self._run = PushButton(text="Evaluate")
        self._export = PushButton(text="Export CSV")
        super().__init__(widgets=[self._pred, self._truth, self._ignore, self._binary, self._run,
                                  self._export])
        self.model = TableModel()
        self.view = QTableView()
        self.view.setModel(self.model)
        self.native.layout().addWidget(self.view)
        self.table: Table | None = None
        self._run.changed.connect(self.evaluate)
        self._export.changed.connect(lambda: self.export())
        napari_viewer.layers.events.inserted.connect(self.reset_choices)
        napari_viewer.layers.events.removed.connect(self.reset_choices)

    def _layers(self, _widget: Any = None) -> list[tuple[str, Labels]]:
        return [(ly.name, ly) for ly in self._viewer.layers if isinstance(ly, Labels | Image)]

    def evaluate(self) -> None:
        """Compute the metrics table (pixel counting: fast enough for the main thread)."""
        try:
            if self._pred.value is None or self._truth.value is None:
                raise CardiosegError("choose a prediction and a ground-truth layer")
            ignore = None if self._ignore.value is None else np.asarray(self._ignore.value.data)
            self.table = evaluate(np.asarray(self._pred.value.data),
                                  np.asarray(self._truth.value.data), ignore=ignore,
                                  binary=self._binary.value)
        except CardiosegError as exc:
            report_error(exc)
            return
        self.model.set_table(self.table)

    def export(self, path: str | Path | None = None) -> Path | None:
        """Write the metrics table as CSV (asks for a path when none is given)."""
        if self.table is None:
            report_error(CardiosegError("evaluate first, then export"))
            return None
        path = path or _ask_path(self.native, "Export metrics", "metrics.csv", "CSV (*.csv)")
        if path is None:
            return None
        try:
            self.table.write_csv(path)
        except CardiosegError as exc:
            report_error(exc)
            return None
        return Path(path)
