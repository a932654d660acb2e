"""OME-Zarr stores: round trips (data, dtype, pixel size, levels), NGFF metadata, completion."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_cardioseg.core import zarr_io
from napari_cardioseg.core.errors import CardiosegError
from napari_cardioseg.core.progress import drain


def test_labels_round_trip_with_levels(tmp_path, rng):
    labels = rng.integers(0, 3, (5, 300, 270)).astype(np.uint8)
    path = zarr_io.write_ome_zarr(tmp_path / "lab.ome.zarr", labels, (0.2, 0.01, 0.01),
                                  chunks=(2, 64, 64))
    store = zarr_io.read_ome_zarr(path)
    assert store.axes == "ZYX" and store.calibrated and store.complete is True
    assert store.scale == pytest.approx((0.2, 0.01, 0.01))
    assert store.data.dtype == np.uint8 and store.data.chunks == (2, 64, 64)
    np.testing.assert_array_equal(store.data[...], labels)
    # levels halve Y and X by striding (no invented label values) until <= 256 px
    assert [lv.shape for lv in store.levels] == [(5, 300, 270), (5, 150, 135)]
    np.testing.assert_array_equal(store.levels[1][...], labels[:, ::2, ::2])
    assert store.level_scales[1] == pytest.approx((0.2, 0.02, 0.02))


def test_ngff_metadata(tmp_path, rng):
    zarr_io.write_ome_zarr(tmp_path / "a.zarr", rng.random((40, 30)).astype(np.float16),
                           (0.5, 0.25), levels=3, labels=False)
    attrs = json.loads((tmp_path / "a.zarr" / ".zattrs").read_text())
    meta = attrs["multiscales"][0]
    assert meta["version"] == "0.4"
    assert meta["axes"] == [{"name": "y", "type": "space", "unit": "micrometer"},
                            {"name": "x", "type": "space", "unit": "micrometer"}]
    assert [d["coordinateTransformations"][0]["scale"] for d in meta["datasets"]] == [
        [0.5, 0.25], [1.0, 0.5], [2.0, 1.0]]
    assert attrs["cardioseg"]["complete"] is True and "image-label" not in attrs


def test_probabilities_mean_levels_and_channel_axis(tmp_path, rng):
    prob = rng.random((2, 3, 9, 7)).astype(np.float32)
    data = zarr_io.encode_probabilities(prob, zarr_io.probabilities_dtype("uint8"))
    zarr_io.write_ome_zarr(tmp_path / "p.zarr", data, (1.0, 0.1, 0.1), axes="CZYX", levels=2,
                           labels=False)
    store = zarr_io.read_ome_zarr(tmp_path / "p.zarr")
    assert store.axes == "CZYX" and store.scale == pytest.approx((1.0, 0.1, 0.1))
    assert store.data.chunks[0] == 1
    np.testing.assert_array_equal(store.data[...], data)
    assert np.abs(store.data[...] / 255.0 - prob).max() <= 0.5 / 255 + 1e-7
    # 2x2 mean with the odd last row/column repeated
    padded = np.pad(data.astype(np.float64), [(0, 0), (0, 0), (0, 1), (0, 1)], mode="edge")
    mean = padded.reshape(2, 3, 5, 2, 4, 2).mean(axis=(3, 5))
    np.testing.assert_array_equal(store.levels[1][...], np.rint(mean).astype(np.uint8))
    half = zarr_io.encode_probabilities(prob, zarr_io.probabilities_dtype("float16"))
    assert half.dtype == np.float16 and np.abs(half - prob).max() < 1e-3
    with pytest.raises(CardiosegError, match="uint8 or float16"):
        zarr_io.probabilities_dtype("float64")


def test_incomplete_store_is_detected_and_resumable(tmp_path):
    run = {"model": "m", "block": [8, 8]}
    group = zarr_io.create_ome_zarr(tmp_path / "o.zarr", (20, 20), np.uint8, (1.0, 1.0),
                                    chunks=(8, 8), run=run)
    group["0"][0:8, 0:8] = 1
    zarr_io.mark_block_done(tmp_path / "o.zarr", (0, 0))
    store = zarr_io.read_ome_zarr(tmp_path / "o.zarr")
    assert store.complete is False
    assert zarr_io.done_blocks(tmp_path / "o.zarr") == {(0, 0)}
    assert zarr_io.open_incomplete(tmp_path / "o.zarr", {**run, "model": "other"}) is None
    again = zarr_io.open_incomplete(tmp_path / "o.zarr", run)
    assert again is not None and again["0"][0, 0] == 1
    drain(zarr_io.build_levels(again))
    zarr_io.mark_complete(again)
    assert zarr_io.read_ome_zarr(tmp_path / "o.zarr").complete is True
    # starting afresh replaces the store and forgets its finished blocks
    zarr_io.create_ome_zarr(tmp_path / "o.zarr", (20, 20), np.uint8, (1.0, 1.0), chunks=(8, 8))
    assert zarr_io.done_blocks(tmp_path / "o.zarr") == set()
    assert zarr_io.read_ome_zarr(tmp_path / "o.zarr").complete is False


def test_refuses_to_replace_a_non_zarr_folder_and_bad_stores(tmp_path):
    (tmp_path / "keep.zarr").mkdir()
    (tmp_path / "keep.zarr" / "notes.txt").write_text("mine")
    with pytest.raises(CardiosegError, match="not a Zarr store"):
        zarr_io.create_ome_zarr(tmp_path / "keep.zarr", (4, 4), np.uint8, (1, 1), chunks=(4, 4))
    assert (tmp_path / "keep.zarr" / "notes.txt").read_text() == "mine"
    with pytest.raises(CardiosegError, match="no such Zarr store"):
        zarr_io.read_ome_zarr(tmp_path / "missing.zarr")
    import zarr
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w", zarr_format=2)
    with pytest.raises(CardiosegError, match="multiscales"):
        zarr_io.read_ome_zarr(tmp_path / "plain.zarr")
    with pytest.raises(CardiosegError, match="pixel sizes must be positive"):
        zarr_io.create_ome_zarr(tmp_path / "n.zarr", (4, 4), np.uint8, (0, 1), chunks=(4, 4))


def test_nanometre_units_are_converted(tmp_path, rng):
    zarr_io.write_ome_zarr(tmp_path / "nm.zarr", rng.integers(0, 9, (6, 6)).astype(np.uint8),
                           (1.0, 1.0))
    attrs_path = tmp_path / "nm.zarr" / ".zattrs"
    attrs = json.loads(attrs_path.read_text())
    for ax in attrs["multiscales"][0]["axes"]:
        ax["unit"] = "nanometer"
    attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] = [5.0, 4.0]
    del attrs["cardioseg"]
    attrs_path.write_text(json.dumps(attrs))
    store = zarr_io.read_ome_zarr(tmp_path / "nm.zarr")
    assert store.scale == pytest.approx((0.005, 0.004)) and store.complete is None


def _edit_attrs(store, edit):
    attrs_path = store / ".zattrs"
    attrs = json.loads(attrs_path.read_text())
    edit(attrs["multiscales"][0])
    attrs_path.write_text(json.dumps(attrs))


def test_a_scale_for_the_whole_multiscale_multiplies_each_levels(tmp_path, rng):
    store = tmp_path / "s.zarr"
    zarr_io.write_ome_zarr(store, rng.integers(0, 9, (4, 600, 600)).astype(np.uint8), (1.0, 1.0, 1.0))

    def whole_scale(meta):
        meta["coordinateTransformations"] = [{"type": "scale", "scale": [0.2, 0.1, 0.1]}]

    _edit_attrs(store, whole_scale)
    read = zarr_io.read_ome_zarr(store)
    assert read.scale == pytest.approx((0.2, 0.1, 0.1)) and read.calibrated
    assert read.level_scales[1] == pytest.approx((0.2, 0.2, 0.2))


@pytest.mark.parametrize("unit,scale,calibrated", [("µm", 0.5, True), ("um", 0.5, True),
                                                    ("nm", 0.0005, True), ("furlong", 1.0, False)])
def test_units_written_in_the_wild(tmp_path, rng, unit, scale, calibrated):
    store = tmp_path / "u.zarr"
    zarr_io.write_ome_zarr(store, rng.integers(0, 9, (6, 6)).astype(np.uint8), (0.5, 0.5))

    def set_unit(meta):
        for ax in meta["axes"]:
            ax["unit"] = unit

    _edit_attrs(store, set_unit)
    if calibrated:
        read = zarr_io.read_ome_zarr(store)
    else:
        with pytest.warns(UserWarning, match="'furlong', not a length unit"):
            read = zarr_io.read_ome_zarr(store)
    assert read.calibrated is calibrated
    if calibrated:
        assert read.scale == pytest.approx((scale, scale))


def test_ngff_05_zarr_v3_store(tmp_path, rng):
    import zarr

    data = rng.integers(0, 9, (3, 16, 16)).astype(np.uint8)
    group = zarr.open_group(str(tmp_path / "v3.zarr"), mode="w", zarr_format=3)
    group.create_array("0", data=data, chunks=(1, 16, 16))
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{
        "axes": [{"name": n, "type": "space", "unit": "micrometer"} for n in "zyx"],
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": [0.3, 0.05, 0.05]}]}]}]}
    read = zarr_io.read_ome_zarr(tmp_path / "v3.zarr")
    assert read.scale == pytest.approx((0.3, 0.05, 0.05)) and read.calibrated
    np.testing.assert_array_equal(read.data[...], data)


def test_is_zarr_path():
    assert zarr_io.is_zarr_path("a/b.ome.zarr") and zarr_io.is_zarr_path("b.ZARR/")
    assert not zarr_io.is_zarr_path("b.tif")
