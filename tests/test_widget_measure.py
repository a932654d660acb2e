"""Measure / Evaluate widgets in a real viewer: tables, features, row click, exports."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFileDialog

from napari_cardioseg.core.measure import measure
from napari_cardioseg.core.table import read_csv
from napari_cardioseg.widgets.evaluate import EvaluateWidget
from napari_cardioseg.widgets.measure import UNCALIBRATED_WARNING, MeasureWidget


@pytest.fixture
def stack_viewer(viewer):
    """A 3D stack of three blobs with anisotropic scale and a translate."""
    labels = np.zeros((6, 40, 40), np.uint8)
    labels[1:3, 2:8, 2:8] = 1
    labels[3:6, 20:30, 25:35] = 1
    labels[2, 35:38, 5:9] = 1
    viewer.add_labels(labels, name="mito", scale=(0.5, 0.1, 0.1), translate=(1.0, 2.0, 3.0))
    return viewer


def test_measure_shapes_table_features_click_and_export(stack_viewer, qtbot, tmp_path,
                                                        monkeypatch):
    widget = MeasureWidget(stack_viewer)
    stack_viewer.window.add_dock_widget(widget)
    assert widget._units.value == "pixel size 0.5 × 0.1 × 0.1 µm"  # from the layer scale
    widget._kind.value = "shapes"
    widget._run.native.click()
    qtbot.waitUntil(lambda: widget.result is not None, timeout=20000)
    qtbot.waitUntil(lambda: widget._run.enabled, timeout=5000)
    assert widget.model.rowCount() == 3
    objects_layer = stack_viewer.layers["mito objects"]  # the mask was split into objects
    assert tuple(objects_layer.scale) == (0.5, 0.1, 0.1)
    assert tuple(objects_layer.translate) == (1.0, 2.0, 3.0)
    features = objects_layer.features
    assert sorted(features["index"]) == [1, 2, 3]
    big = features.loc[features["volume_um3"].idxmax()]
    assert big["volume_um3"] == pytest.approx(300 * 0.005)
    # sort by volume (descending) through the view, click the first row: the big blob
    column = widget.model.table.names.index("volume_um3")
    widget.view.sortByColumn(column, Qt.SortOrder.DescendingOrder)
    index = widget.model.index(0, 0)
    widget.view.clicked.emit(index)
    assert stack_viewer.camera.center[-2:] == pytest.approx((2.0 + 24.5 * 0.1, 3.0 + 29.5 * 0.1))
    assert stack_viewer.dims.point[0] == pytest.approx(1.0 + 4.0 * 0.5)
    # exports through the buttons, the file dialog answered by the test
    for button, name in ((widget._export_objects, "o.csv"), (widget._export_summary, "s.csv"),
                         (widget._export_masks, "m.tif")):
        monkeypatch.setattr(QFileDialog, "getSaveFileName",
                            lambda *a, name=name: (str(tmp_path / name), ""))
        button.native.click()
    column = widget.model.table.names.index("sphericity")
    tip = widget.model.headerData(column, Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole)
    assert "1 = sphere" in tip
    assert read_csv(tmp_path / "o.csv").names[:2] == ["label", "volume_um3"]
    assert len(read_csv(tmp_path / "o.csv")) == 3
    assert read_csv(tmp_path / "s.csv")["count"][0] == 3
    assert (tmp_path / "m.tif").stat().st_size > 0


def test_measure_zdisk_many_objects_and_plots(viewer, qtbot):
    labels = np.zeros((200, 200), np.uint16)
    labels[2::4, :] = 1
    labels[:, 2::8] = 0  # 50 rows x 26 pieces = 1300 small Z-disks
    viewer.add_labels(labels, name="zdisks", scale=(0.1, 0.1))
    widget = MeasureWidget(viewer)
    widget._run.native.click()
    qtbot.waitUntil(lambda: widget.result is not None, timeout=30000)
    # 50 rows x 25 pieces of 7 px; the 2-px pieces at the left edge (0.1 µm) are not Z-disks
    assert widget.model.rowCount() == 1250
    assert viewer.layers["zdisks objects"].features.shape[0] == 1250
    widget._column.value = "length_um"
    assert len(widget.figure.axes) == 2  # histogram + orientation rose
    assert widget.summary_view.rowCount() > 5


def test_measure_reads_a_multiscale_intensity_image_at_full_resolution(viewer, qtbot):
    labels = np.zeros((200, 200), np.uint8)
    labels[2::20, 10:190] = 1  # Z-disks 2 µm apart
    image = (labels * 200 + 20).astype(np.uint8)
    viewer.add_labels(labels, name="zdisks", scale=(0.1, 0.1))
    widget = MeasureWidget(viewer)
    widget._image.value = viewer.add_image([image, image[::2, ::2]], name="raw", multiscale=True,
                                           scale=(0.1, 0.1))
    widget._run.native.click()
    qtbot.waitUntil(lambda: widget.result is not None, timeout=30000)
    assert widget.model.rowCount() == 10
    expected = measure(labels, (0.1, 0.1), "zdisk", image=image).summary  # level 0, not level 1
    assert widget.result.summary.names == expected.names
    assert widget.result.summary.row(0) == pytest.approx(expected.row(0), nan_ok=True)


def test_uncalibrated_layer_warns_measures_in_px_and_exports_no_calibration(viewer, qtbot,
                                                                            tmp_path, monkeypatch):
    labels = np.zeros((30, 30), np.uint8)
    labels[5:15, 5:15] = 1
    viewer.add_labels(labels, name="blob")
    widget = MeasureWidget(viewer)
    assert widget._units.value == UNCALIBRATED_WARNING
    widget._kind.value = "shapes"
    widget._run.native.click()
    qtbot.waitUntil(lambda: widget.result is not None, timeout=20000)
    assert not widget.result.calibrated
    assert "area_px2" in widget.model.table.names
    assert not [n for n in widget.model.table.names if n.endswith(("_um", "_um2"))]
    assert "pixels" in widget._status.value
    written = []
    monkeypatch.setattr("napari_cardioseg.widgets.measure.write_tiff",
                        lambda path, data, scale=None: written.append(scale) or path)
    widget.export("masks", tmp_path / "m.tif")
    assert written == [None]  # no invented pixel size
    # the reader's flag wins over the scale
    viewer.layers["blob"].metadata["cardioseg_calibrated"] = True
    viewer.layers["blob"].scale = (1.0, 1.0)
    widget._from_layer()
    assert widget._units.value.startswith("pixel size 1 × 1 µm")


def test_evaluate_widget_metrics_table(viewer, qtbot, tmp_path):
    gt = np.zeros((10, 10), np.uint8)
    gt[2:6, 2:6] = 1
    pred = np.zeros_like(gt)
    pred[2:6, 2:8] = 1
    ignore = np.zeros_like(gt)
    ignore[:, 6:] = 1
    viewer.add_labels(pred, name="pred")
    viewer.add_labels(gt, name="gt")
    viewer.add_labels(ignore, name="ignore")
    widget = EvaluateWidget(viewer)
    widget._pred.value = viewer.layers["pred"]
    widget._truth.value = viewer.layers["gt"]
    widget._run.native.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=20000)
    assert widget.table["dice"][0] == pytest.approx(2 * 16 / (32 + 8))
    widget._ignore.value = viewer.layers["ignore"]
    widget._run.native.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=20000)
    assert widget.table["dice"][0] == 1.0
    assert widget.model.rowCount() == 2  # class 1 + mean
    assert widget.export(tmp_path / "m.csv").read_text().startswith("class,tp")


def test_evaluate_scores_multiscale_layers_at_full_resolution(viewer, qtbot):
    # napari's np.asarray of multiscale data is its coarsest level: the scores must not be
    gt = np.zeros((64, 64), np.uint8)
    gt[8:24, 8:24] = 1
    pred = np.zeros_like(gt)
    pred[8:24, 8:32] = 1
    pyramid = [pred, pred[::2, ::2], pred[::4, ::4]]
    viewer.add_labels(pyramid, name="pred", multiscale=True)
    viewer.add_labels([gt, gt[::2, ::2], gt[::4, ::4]], name="gt", multiscale=True)
    widget = EvaluateWidget(viewer)
    widget._pred.value, widget._truth.value = viewer.layers["pred"], viewer.layers["gt"]
    widget._run.native.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=20000)
    assert widget.table["tp"][0] == 256 and widget.table["dice"][0] == pytest.approx(512 / 640)


def test_evaluate_defaults_and_refuses_a_layer_against_itself(viewer, monkeypatch):
    image = np.zeros((10, 10), np.uint8)
    viewer.add_image(image, name="raw")
    viewer.add_labels(image.copy(), name="ground truth")
    viewer.add_labels(image.copy(), name="raw labels")
    widget = EvaluateWidget(viewer)
    assert widget._pred.value is viewer.layers["raw labels"]
    assert widget._truth.value is viewer.layers["ground truth"]
    errors = []
    monkeypatch.setattr("napari_cardioseg.widgets._common.show_error", errors.append)
    widget._truth.value = widget._pred.value
    widget._run.native.click()
    assert errors and "same layer" in errors[0] and widget.table is None


def test_measure_one_class_of_a_prediction(viewer, qtbot):
    labels = np.zeros((40, 40), np.uint8)
    labels[2:8, 2:8] = 1
    labels[20:30, 25:35] = 2
    labels[32:36, 2:6] = 2
    viewer.add_labels(labels, name="prediction", scale=(0.1, 0.1))
    widget = MeasureWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget._kind.value = "shapes"
    widget._class.value = 2
    widget._run.native.click()
    qtbot.waitUntil(lambda: widget.result is not None, timeout=20000)
    assert sorted(widget.result.objects["area_um2"]) == pytest.approx([16 * 0.01, 100 * 0.01])
    assert viewer.layers["prediction objects"].data.max() == 2  # the class's two components


def test_lazy_labels_layer_is_measured_blockwise_with_the_in_memory_tables(viewer, qtbot,
                                                                           tmp_path, monkeypatch):
    import zarr

    from napari_cardioseg.core.measure import measure

    labels = np.zeros((6, 40, 40), np.uint16)
    labels[1:3, 2:8, 2:8] = 4
    labels[3:6, 20:30, 25:35] = 9  # crosses the chunk borders below
    labels[2, 35:38, 5:9] = 2
    store = zarr.open_array(str(tmp_path / "l.zarr"), mode="w", shape=labels.shape,
                            chunks=(2, 16, 16), dtype=labels.dtype)
    store[:] = labels
    layer = viewer.add_labels(store, name="instances", scale=(0.5, 0.1, 0.1))
    layer.metadata["cardioseg_calibrated"] = True
    widget = MeasureWidget(viewer)
    widget._labels_layer.value = layer
    widget._kind.value, widget._mode.value = "shapes", "labels"
    widget.measure()
    qtbot.waitUntil(lambda: widget.result is not None and widget._run.enabled, timeout=30000)
    expected = measure(labels, (0.5, 0.1, 0.1), "shapes", mode="labels").objects
    got = widget.result.objects
    assert list(got["label"]) == [2, 4, 9] == list(expected["label"])
    np.testing.assert_allclose(got["volume_um3"], expected["volume_um3"])
    assert "instances objects" not in viewer.layers  # the layer's values are the objects
    assert sorted(layer.features["index"]) == [2, 4, 9]  # features on the lazy layer itself
    reported = []
    monkeypatch.setattr("napari_cardioseg.widgets.measure.report_error", reported.append)
    assert widget.export("masks", tmp_path / "m.tif") is None  # no object image to export
    assert "blockwise" in str(reported[0]) and not (tmp_path / "m.tif").exists()


def test_units_follow_the_pixel_size_and_a_failed_run_says_so(viewer, qtbot, monkeypatch):
    from napari_cardioseg.widgets.pixel_size import PixelSizeWidget

    errors = []
    monkeypatch.setattr("napari_cardioseg.widgets._common.show_error", errors.append)
    labels = np.zeros((40, 40), np.uint8)
    labels[2:8, 2:8] = 1
    labels[20:30, 25:35] = 2
    layer = viewer.add_labels(labels, name="prediction")
    widget = MeasureWidget(viewer)
    assert widget._units.value == UNCALIBRATED_WARNING
    sizes = PixelSizeWidget(viewer)
    sizes._layer.value, sizes._xy.value = layer, "0.2"
    sizes._set.native.click()
    assert widget._units.value == "pixel size 0.2 × 0.2 µm"  # at once, not at the next run
    widget._kind.value, widget._class.value = "shapes", 1
    widget._run.native.click()
    qtbot.waitUntil(lambda: widget.result is not None and widget._run.enabled, timeout=20000)
    objects = viewer.layers["prediction objects"]
    layer.scale = (0.5, 0.5)
    widget._run.native.click()
    qtbot.waitUntil(lambda: widget._run.enabled, timeout=20000)
    assert tuple(objects.scale) == (0.5, 0.5)  # the reused objects layer follows its source
    widget._class.value = 7  # absent: the run fails
    widget._run.native.click()
    qtbot.waitUntil(lambda: widget._run.enabled and bool(errors), timeout=20000)
    assert widget._status.value == "not measured (see the error message)"


def test_clicking_a_row_centres_a_rotated_layer_on_its_object(viewer, qtbot):
    labels = np.zeros((40, 40), np.uint8)
    labels[20:30, 25:35] = 1
    layer = viewer.add_labels(labels, name="turned", scale=(0.1, 0.1), rotate=40,
                              translate=(1.0, 2.0))
    widget = MeasureWidget(viewer)
    widget._kind.value = "shapes"
    widget._run.native.click()
    qtbot.waitUntil(lambda: widget.result is not None, timeout=20000)
    widget.view.clicked.emit(widget.model.index(0, 0))
    np.testing.assert_allclose(viewer.camera.center[-2:], layer.data_to_world((24.5, 29.5)))
