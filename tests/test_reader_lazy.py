"""The napari reader: lazy (dask) layers for large TIFFs, multiscale layers for OME-Zarr."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import tifffile

from napari_cardioseg import _reader
from napari_cardioseg._reader import get_reader
from napari_cardioseg.core.units import CALIBRATED_KEY
from napari_cardioseg.core.writes import write_tiff
from napari_cardioseg.core.zarr_io import write_ome_zarr


def test_small_tiff_is_in_memory_large_tiff_is_lazy(tmp_path, rng, monkeypatch):
    stack = rng.integers(0, 60000, (5, 40, 48)).astype(np.uint16)
    path = str(tmp_path / "stack.tif")
    write_tiff(path, stack, (0.3, 0.02, 0.01))
    [(data, meta, kind)] = get_reader(path)(path)
    assert isinstance(data, np.ndarray) and kind == "image"
    monkeypatch.setattr(_reader, "LAZY_BYTES", 1000)  # the file is larger than this
    [(lazy, lazy_meta, lazy_kind)] = get_reader(path)(path)
    assert isinstance(lazy, da.Array) and lazy_kind == "image"
    assert lazy.shape == (5, 40, 48) and lazy.dtype == np.uint16
    np.testing.assert_array_equal(lazy[2, 10:20].compute(), stack[2, 10:20])
    assert lazy_meta["scale"] == pytest.approx((0.3, 0.02, 0.01)) == meta["scale"]
    assert lazy_meta["metadata"][CALIBRATED_KEY] is True


def test_large_multichannel_and_uncalibrated_tiffs(tmp_path, rng, monkeypatch):
    import napari.utils.notifications as notifications

    shown = []
    monkeypatch.setattr(notifications, "show_warning", shown.append)
    monkeypatch.setattr(_reader, "LAZY_BYTES", 0)
    image = rng.integers(0, 255, (2, 30, 20)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "two.tif", image, metadata={"axes": "CYX"})
    layers = get_reader(str(tmp_path / "two.tif"))(str(tmp_path / "two.tif"))
    assert [meta["name"] for _, meta, _ in layers] == ["two [ch0]", "two [ch1]"]
    for c, (data, meta, _) in enumerate(layers):
        assert isinstance(data, da.Array)
        np.testing.assert_array_equal(data.compute(), image[c])
        assert meta["scale"] == (1.0, 1.0) and meta["metadata"][CALIBRATED_KEY] is False
    assert len(shown) == 1 and "no pixel size" in shown[0]
    labels = np.zeros((12, 14), np.int32)
    labels[3:6, 4:9] = 5
    write_tiff(tmp_path / "cells.tif", labels, (0.1, 0.1))
    [(data, _, kind)] = get_reader(str(tmp_path / "cells.tif"))(str(tmp_path / "cells.tif"))
    assert kind == "labels" and isinstance(data, da.Array)
    np.testing.assert_array_equal(data.compute(), labels)


def test_ome_zarr_opens_multiscale(tmp_path, rng):
    labels = np.zeros((3, 600, 520), np.uint8)
    labels[:, 100:300, 50:400] = 2
    path = str(tmp_path / "pred.ome.zarr")
    write_ome_zarr(path, labels, (0.05, 0.01, 0.01), chunks=(1, 128, 128))
    reader = get_reader(path)
    assert reader is not None and get_reader(str(tmp_path / "x.png")) is None
    [(data, meta, kind)] = reader(path)
    assert kind == "labels" and meta["multiscale"] is True
    assert [d.shape for d in data] == [(3, 600, 520), (3, 300, 260), (3, 150, 130)]
    assert all(isinstance(d, da.Array) for d in data)
    np.testing.assert_array_equal(data[0].compute(), labels)
    np.testing.assert_array_equal(data[1].compute(), labels[:, ::2, ::2])
    assert meta["scale"] == pytest.approx((0.05, 0.01, 0.01))
    assert meta["metadata"][CALIBRATED_KEY] is True
    image = rng.integers(0, 255, (64, 80)).astype(np.uint8)
    write_ome_zarr(tmp_path / "small.zarr", image, (0.2, 0.2), labels=False)
    [(data, meta, kind)] = reader(str(tmp_path / "small.zarr"))
    assert kind == "image" and "multiscale" not in meta  # one level: a plain lazy layer
    np.testing.assert_array_equal(np.asarray(data), image)


def test_zarr_opens_in_viewer_as_multiscale(viewer, tmp_path):
    labels = np.zeros((600, 520), np.uint8)
    labels[100:300, 50:400] = 1
    write_ome_zarr(tmp_path / "pred.zarr", labels, (0.01, 0.02))
    layers = viewer.open(str(tmp_path / "pred.zarr"), plugin="napari-cardioseg")
    assert layers[0].multiscale and type(layers[0]).__name__ == "Labels"
    np.testing.assert_allclose(layers[0].scale, (0.01, 0.02))
    assert layers[0].metadata[CALIBRATED_KEY] is True
