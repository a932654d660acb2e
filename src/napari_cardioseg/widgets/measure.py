"""Measure widget: a thin face on ``core.measure``.

A Labels layer (+ optional intensity image and cell mask) → per-object and summary tables
(sortable, header tooltips with each column's description; clicking a row centres the viewer on
the object), the object table as the layer's ``features``, a histogram and an orientation rose
plot, and exports. The pixel size is the layer's scale when the layer is calibrated; otherwise
everything is in pixels and a warning says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, PushButton, SpinBox
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.layers import Image, Labels
from qtpy.QtWidgets import QFileDialog, QTableView, QTableWidget

from ..core.errors import CardiosegError
from ..core.measure import KINDS, MeasureResult, list_columns, measure_iter
from ..core.measure.objects import OBJECT_MODES
from ..core.measure_blockwise import measure_blockwise_iter
from ..core.units import is_calibrated
from ..core.writes import write_tiff
from . import measure_plots
from ._common import (
    RESULT_KEY,
    full_resolution,
    is_lazy,
    layer_choice,
    output_layer_kwargs,
    place_on,
    report_error,
    show_info,
    spatial_scale,
)
from .measure_table import TableModel, features_of, fill_summary
from .workers import start_generator

if TYPE_CHECKING:
    import napari

UNCALIBRATED_WARNING = ("⚠ no pixel size: results are in pixels (px, px², px³). "
                        "Set the layer's pixel size to measure in µm.")


class MeasureWidget(Container):
    """Measure Z-disks or shapes of a Labels layer; tables, plots and exports."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        self._viewer = napari_viewer
        self._labels_layer = layer_choice(napari_viewer, Labels, "labels",
                                          "The segmentation to measure.")
        self._image = layer_choice(napari_viewer, Image, "image", "Intensity image for the "
                                   "Fourier period (Z-disks only).", nullable=True)
        self._cell = layer_choice(napari_viewer, (Labels, Image), "cell mask", "One cell's mask: "
                                  "adds the cell features (Z-disks only).", nullable=True)
        self._kind = ComboBox(label="kind", choices=list(KINDS), value="zdisk",
                              tooltip="; ".join(f"{k}: {v.description}" for k, v in KINDS.items()))
        self._units = Label(value="")
        self._mode = ComboBox(label="objects", choices=list(OBJECT_MODES), value="auto",
                              tooltip="How objects are found in the labels layer. components: "
                              "touching pixels form one object (for a mask or a prediction); "
                              "labels: each label value is one object, even if in pieces (for "
                              "instance labels); auto: components when the layer has a single "
                              "nonzero value (a mask), labels otherwise")
        self._min_size = SpinBox(label="min size (px, 0 = default)", value=0, min=0, max=10**9,
                                 tooltip="drop smaller objects; 0 = the kind's default (shapes: "
                                 "about a 0.2 µm sphere, or 27 voxels without a pixel size)")
        self._class = SpinBox(label="class (0 = all)", value=0, min=0, max=2**31 - 1,
                              tooltip="measure one class of a multi-class prediction, split into "
                                      "connected components")
        self._run = PushButton(text="Measure", tooltip="Measure every object and fill the tables.")
        self._status = Label(value="")
        self._column = ComboBox(label="histogram", choices=[], tooltip="column to plot")
        self._export_objects = PushButton(
            text="Export objects CSV", tooltip="Save the table with one row per object.")
        self._export_summary = PushButton(
            text="Export summary CSV", tooltip="Save the summary table (counts, means, medians).")
        self._export_masks = PushButton(
            text="Export masks TIFF",
            tooltip="Save the measured objects as a labels TIFF (calibrated only if the layer is).")
        super().__init__(widgets=[
            self._labels_layer, self._image, self._cell, self._kind, self._units, self._mode,
            self._min_size, self._class, self._run, self._status, self._column,
            self._export_objects, self._export_summary, self._export_masks,
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
        self._labels_layer.changed.connect(self._from_layer)
        self._run.changed.connect(self.measure)
        self._column.changed.connect(self._plot)
        self.view.clicked.connect(lambda index: self.go_to(int(self.model.order[index.row()])))
        self._export_objects.changed.connect(lambda: self.export("objects"))
        self._export_summary.changed.connect(lambda: self.export("summary"))
        self._export_masks.changed.connect(lambda: self.export("masks"))
        self._from_layer()

    def _from_layer(self) -> None:
        """Pick the kind from the layer's dimensionality and show its calibration."""
        layer = self._labels_layer.value
        if layer is not None:
            self._kind.value = "shapes" if layer.data.ndim == 3 else "zdisk"
            layer.events.scale.connect(self._show_units)  # the Pixel size widget may set it
        self._show_units()

    def _show_units(self, _event: Any = None) -> None:
        layer = self._labels_layer.value
        if layer is None:
            self._units.value = ""
        elif is_calibrated(layer.metadata, spatial_scale(layer)):
            size = " × ".join(f"{s:g}" for s in spatial_scale(layer))
            self._units.value = f"pixel size {size} µm"
        else:
            self._units.value = UNCALIBRATED_WARNING

    def measure(self) -> None:
        """Measure the chosen layer in a worker; tables, features and plots follow."""
        layer = self._labels_layer.value
        if layer is None:
            report_error(CardiosegError("add or choose a Labels layer first"))
            return
        self._show_units()
        scale = spatial_scale(layer)
        spacing = scale if is_calibrated(layer.metadata, scale) else None
        lazy = is_lazy(layer)  # a zarr/dask or multiscale layer: measured blockwise; the arrays
        # (lazy intensity images too) are read in the worker
        image = None if self._image.value is None else full_resolution(self._image.value)
        cell = None if self._cell.value is None else full_resolution(self._cell.value)
        self._source = layer
        self._run.enabled = False
        self._status.value = "measuring..."
        self.worker = start_generator(
            measure_blockwise_iter if lazy else measure_iter, full_resolution(layer), spacing,
            self._kind.value, image=image, cell_mask=cell, mode=self._mode.value,
            min_size=self._min_size.value or None, class_value=self._class.value or None,
            owner=self, on_yield=self._progress, on_return=self.show_result,
            on_finish=self._finished, total=1,
        )

    def _progress(self, step: Any) -> None:
        self._status.value = step.message or f"measured {step.done} / {step.total} objects"
        pbar = getattr(self.worker, "pbar", None)
        if pbar is not None and step.total:
            if pbar.total != step.total:
                pbar.total = step.total
                pbar.events.total(value=step.total)
            pbar.n = step.done
            pbar.events.value(value=step.done)

    def _finished(self) -> None:
        self._run.enabled = True
        if self._status.value == "measuring...":  # failed; the error was reported
            self._status.value = "not measured (see the error message)"

    def show_result(self, result: MeasureResult) -> None:
        """Fill the tables, set the layer features, update the plots."""
        self.result = result
        tips = {name: f"{text} [{unit}]" if unit else text
                for name, unit, _, text in list_columns(result.kind, result.calibrated)}
        self.model.set_table(result.objects, tips)
        fill_summary(self.summary_view, result.summary, tips)
        units = "" if result.calibrated else " (in pixels: no pixel size)"
        self._status.value = f"{len(result.objects)} objects{units}"
        target = self._target_layer(result)
        if target is not None:
            target.features = features_of(result.objects)
        self._column.choices = [n for n in result.objects.names if n not in ("label", "z")]
        self._plot()

    def _target_layer(self, result: MeasureResult) -> Labels | None:
        """Return the layer to get the features: the input, or an ``objects`` layer on top."""
        source = self._source
        if source is None:
            raise CardiosegError("measure first")
        if result.labels is None:  # measured blockwise
            return source if self._mode.value == "labels" else None
        if np.array_equal(np.asarray(source.data), result.labels):
            return source
        name = f"{source.name} objects"
        if name in self._viewer.layers:
            layer = self._viewer.layers[name]
            layer.data = result.labels
            place_on(layer, source)  # the source may have moved or been re-scaled
            return layer
        place = output_layer_kwargs(source, name, {RESULT_KEY: "objects"})
        return self._viewer.add_labels(result.labels, **place)

    def _plot(self) -> None:
        measure_plots.draw(self.figure, None if self.result is None else self.result.objects,
                           self._column.value)
        self.canvas.draw_idle()

    def go_to(self, row: int) -> None:
        """Centre the viewer (and the slider of a stack) on the object in table row ``row``."""
        if self.result is None or self._source is None:
            return
        obj = self.result.objects.row(row)
        spacing = np.asarray(self.result.spacing)
        unit = "um" if self.result.calibrated else "px"
        position = [obj[f"centroid_{ax}_{unit}"] / s if f"centroid_{ax}_{unit}" in obj
                    else obj.get(ax, 0) for ax, s in zip("zyx"[-len(spacing):], spacing, strict=True)]
        layer = self._source
        world = np.asarray(layer.data_to_world(position))  # scale, translate, rotate, affine
        if len(world) == 3:
            self._viewer.dims.set_point(self._viewer.dims.ndim - 3, world[0])
        displayed = 3 if self._viewer.dims.ndisplay == 3 and len(world) == 3 else 2
        self._viewer.camera.center = tuple(world[-displayed:])

    def export(self, what: str, path: str | Path | None = None) -> Path | None:
        """Write ``objects`` / ``summary`` CSV or the object ``masks`` TIFF (asks for a path).

        Masks carry the pixel size only when the layer is calibrated.
        """
        try:
            if self.result is None or self._source is None:
                raise CardiosegError("measure first, then export")
            masks = self.result.labels
            if what == "masks" and masks is None:
                raise CardiosegError("a layer measured blockwise has no object masks to export")
            suffix = ".tif" if what == "masks" else ".csv"
            if path is None:
                path, _ = QFileDialog.getSaveFileName(
                    self.native, f"Export {what}", f"{self._source.name}_{what}{suffix}",
                    "TIFF (*.tif *.tiff)" if what == "masks" else "CSV (*.csv)")
                if not path:
                    return None
            if masks is not None and what == "masks":
                write_tiff(path, masks, self.result.spacing if self.result.calibrated else None)
            else:
                getattr(self.result, what).write_csv(path)
        except CardiosegError as exc:
            report_error(exc)
            return None
        show_info(f"wrote {path}")
        return Path(path)
