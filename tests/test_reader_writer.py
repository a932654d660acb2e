"""npe2 contributions: manifest validity, reader and writer keep pixel size."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from npe2 import PluginManifest

from napari_cardioseg._reader import get_reader
from napari_cardioseg._writer import write_image, write_labels
from napari_cardioseg.core.errors import CardiosegError
from napari_cardioseg.core.io import read_image
from napari_cardioseg.core.units import CALIBRATED_KEY
from napari_cardioseg.core.writes import write_tiff


def test_manifest_is_valid_and_lists_widgets():
    manifest = PluginManifest.from_distribution("napari-cardioseg")
    names = {w.display_name for w in manifest.contributions.widgets}
    assert {"Enhance contrast", "Pixel size", "Predict", "Train from scribbles", "Measure"} <= names


def test_reader_gives_scale_and_layer_kind(tmp_path):
    write_tiff(tmp_path / "cell.tif", np.arange(60, dtype=np.uint16).reshape(6, 10), (0.2, 0.1))
    write_tiff(tmp_path / "cell_labels.tif", np.eye(6, 10, dtype=np.int32), (0.2, 0.1))
    assert get_reader(str(tmp_path / "cell.png")) is None
    reader = get_reader(str(tmp_path / "cell.tif"))
    [(data, meta, kind)] = reader(str(tmp_path / "cell.tif"))
    assert kind == "image" and meta["scale"] == (0.2, 0.1) and data.shape == (6, 10)
    assert meta["metadata"][CALIBRATED_KEY] is True
    [(_, _, kind)] = reader(str(tmp_path / "cell_labels.tif"))
    assert kind == "labels"


def test_writers_round_trip(tmp_path):
    labels = np.zeros((3, 8, 9), np.int64)
    labels[1, 2:5, 3:6] = 7
    write_labels(str(tmp_path / "l.tif"), labels, {"scale": (1.0, 0.5, 0.05, 0.05)})
    (img,) = read_image(tmp_path / "l.tif")
    np.testing.assert_array_equal(img.data, labels)
    np.testing.assert_allclose(img.scale, (0.5, 0.05, 0.05))
    write_image(str(tmp_path / "i.tif"), labels.astype(np.float32), {"scale": (0.5, 0.05, 0.05)})
    with tifffile.TiffFile(tmp_path / "i.tif") as tif:
        assert tif.is_imagej


def test_writers_follow_the_layer_calibration_flag(viewer, tmp_path):
    """An uncalibrated layer is written without a pixel size (not as 1 µm, nor its Z step as
    µm); a layer calibrated at exactly 1 µm keeps it, through napari's own save."""
    labels = np.zeros((3, 8, 9), np.uint8)
    for name, scale, flag in (("plain", (1, 1, 1), False), ("zstep", (2, 1, 1), False),
                              ("one", (1, 1, 1), True)):
        layer = viewer.add_labels(labels, name=name, scale=scale, metadata={CALIBRATED_KEY: flag})
        viewer.layers.selection = {layer}
        viewer.layers.save(str(tmp_path / f"{name}.tif"), selected=True, plugin="napari-cardioseg")
        (img,) = read_image(tmp_path / f"{name}.tif")
        assert img.calibrated is flag
        np.testing.assert_allclose(img.scale, scale if flag else (1, 1, 1))


def test_writer_saves_multiscale_layers_at_full_resolution_and_refuses_rgb(viewer, tmp_path):
    labels = np.zeros((4, 64, 64), np.uint8)
    labels[1:3, 8:40, 8:40] = 1
    layer = viewer.add_labels([labels, labels[:, ::2, ::2]], name="pyramid", multiscale=True,
                              scale=(0.5, 0.1, 0.1))
    viewer.layers.selection = {layer}
    viewer.layers.save(str(tmp_path / "p.tif"), selected=True, plugin="napari-cardioseg")
    (img,) = read_image(tmp_path / "p.tif")
    np.testing.assert_array_equal(img.data, labels)
    np.testing.assert_allclose(img.scale, (0.5, 0.1, 0.1))
    with pytest.raises(CardiosegError, match="RGB"):
        write_image(str(tmp_path / "rgb.tif"), np.zeros((8, 8, 3), np.uint8),
                    {"rgb": True, "name": "photo", "scale": (1.0, 1.0)})
    assert not (tmp_path / "rgb.tif").exists()


def test_reader_opens_in_viewer(viewer, tmp_path):
    write_tiff(tmp_path / "stack.tif", np.ones((4, 16, 16), np.uint8), (0.3, 0.01, 0.01))
    layers = viewer.open(str(tmp_path / "stack.tif"), plugin="napari-cardioseg")
    np.testing.assert_allclose(layers[0].scale, (0.3, 0.01, 0.01))
    assert layers[0].metadata[CALIBRATED_KEY] is True


def test_uncalibrated_file_gives_a_notification(tmp_path, monkeypatch):
    import napari.utils.notifications as notifications

    shown = []
    monkeypatch.setattr(notifications, "show_warning", shown.append)
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((8, 9), np.uint8))
    [(_, meta, _)] = get_reader(str(tmp_path / "plain.tif"))(str(tmp_path / "plain.tif"))
    assert meta["scale"] == (1.0, 1.0) and meta["metadata"][CALIBRATED_KEY] is False
    assert len(shown) == 1 and "no pixel size" in shown[0] and "Pixel size" in shown[0]
