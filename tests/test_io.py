"""Calibrated TIFF I/O: round trips keep data, dtype and pixel size; bad files give clear errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tifffile

from napari_cardioseg.core.errors import CardiosegError
from napari_cardioseg.core.formats import open_image
from napari_cardioseg.core.io import read_image, read_single
from napari_cardioseg.core.validate import as_grey
from napari_cardioseg.core.writes import atomic_path, write_tiff

DTYPES = [np.uint8, np.uint16, np.int32, np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,scale", [((20, 30), (0.12, 0.1)), ((4, 20, 30), (0.5, 0.012, 0.01))])
def test_round_trip_keeps_data_dtype_and_pixel_size(tmp_path, rng, dtype, shape, scale):
    data = (rng.random(shape) * 200).astype(dtype)
    path = write_tiff(tmp_path / "x.tif", data, scale)
    (img,) = read_image(path)
    assert img.data.dtype == dtype
    np.testing.assert_array_equal(img.data, data)
    np.testing.assert_allclose(img.scale, scale, rtol=1e-6)
    assert img.calibrated
    assert img.axes == "ZYX"[-len(shape) :]


def test_imagej_nanometre_units_are_converted(tmp_path):
    data = np.zeros((3, 8, 8), np.uint8)
    tifffile.imwrite(tmp_path / "nm.tif", data, imagej=True, resolution=(1 / 5.0, 1 / 5.0),
                     metadata={"axes": "ZYX", "unit": "nm", "spacing": 20.0})
    (img,) = read_image(tmp_path / "nm.tif")
    np.testing.assert_allclose(img.scale, (0.02, 0.005, 0.005))


@pytest.mark.parametrize("unit,xy,z", [("micron", 0.1, 1.0), ("nm", 5.0, 0.001), ("um", 1.0, 1.0)])
def test_imagej_stack_without_spacing_has_slices_one_unit_apart(tmp_path, unit, xy, z):
    # Fiji leaves ``spacing`` out when the voxel depth is 1 (in the file's unit) and reads it so:
    # a confocal stack with 0.1 µm pixels and 1 µm steps must not become isotropic
    data = np.zeros((3, 8, 8), np.uint8)
    tifffile.imwrite(tmp_path / "s.tif", data, imagej=True, resolution=(1 / xy, 1 / xy),
                     metadata={"axes": "ZYX", "unit": unit})
    with tifffile.TiffFile(tmp_path / "s.tif") as tif:
        assert "spacing" not in tif.imagej_metadata
    factor = 0.001 if unit == "nm" else 1.0
    for img in (read_single(tmp_path / "s.tif"), open_image(tmp_path / "s.tif")):
        np.testing.assert_allclose(img.scale, (z, xy * factor, xy * factor))


def test_imagej_stack_without_unit_stays_uncalibrated(tmp_path):
    tifffile.imwrite(tmp_path / "p.tif", np.zeros((3, 8, 8), np.uint8), imagej=True,
                     metadata={"axes": "ZYX"})
    img = read_single(tmp_path / "p.tif")
    assert img.scale == (1.0, 1.0, 1.0) and not img.calibrated


@pytest.mark.parametrize("resolution,unit,expected", [
    (10000, "CENTIMETER", 1.0),  # 10000 px per cm: 1 µm pixels
    (25400 / 0.5, "INCH", 0.5),
    (72, "INCH", None),  # a screen's 72 dpi is no calibration
    (96, "INCH", None),
])
def test_imagej_file_without_a_unit_takes_the_resolution_unit(tmp_path, resolution, unit,
                                                              expected):
    tifffile.imwrite(tmp_path / "r.tif", np.zeros((8, 8), np.uint8), imagej=True,
                     resolution=(resolution, resolution), resolutionunit=unit)
    with tifffile.TiffFile(tmp_path / "r.tif") as tif:
        assert "unit" not in tif.imagej_metadata
    img = read_single(tmp_path / "r.tif")
    assert img.calibrated is (expected is not None)
    np.testing.assert_allclose(img.scale, (expected or 1.0,) * 2)


def test_ome_physical_size_units(tmp_path):
    data = np.zeros((2, 8, 8), np.uint16)
    tifffile.imwrite(tmp_path / "a.ome.tif", data, ome=True, metadata={
        "axes": "ZYX", "PhysicalSizeX": 7.0, "PhysicalSizeXUnit": "nm",
        "PhysicalSizeY": 7.0, "PhysicalSizeYUnit": "nm", "PhysicalSizeZ": 0.05})
    (img,) = read_image(tmp_path / "a.ome.tif")
    np.testing.assert_allclose(img.scale, (0.05, 0.007, 0.007))
    assert img.name == "a"


def test_uncalibrated_file_is_flagged(tmp_path):
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((8, 9), np.uint8))
    (img,) = read_image(tmp_path / "plain.tif")
    assert img.scale == (1.0, 1.0) and not img.calibrated


def test_multichannel_hyperstack_splits_channels(tmp_path):
    data = np.stack([np.full((3, 6, 7), c, np.uint16) for c in range(2)], axis=1)  # ZCYX
    tifffile.imwrite(tmp_path / "h.tif", data, imagej=True, resolution=(10.0, 10.0),
                     metadata={"axes": "ZCYX", "unit": "um", "spacing": 0.3})
    images = read_image(tmp_path / "h.tif")
    assert [i.name for i in images] == ["h [ch0]", "h [ch1]"]
    for c, img in enumerate(images):
        assert img.data.shape == (3, 6, 7) and np.all(img.data == c)
        np.testing.assert_allclose(img.scale, (0.3, 0.1, 0.1))
    with pytest.raises(CardiosegError, match="2 channels"):
        read_single(tmp_path / "h.tif")


def test_rgb_file_becomes_three_channels(tmp_path):
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((10, 12, 3), np.uint8), photometric="rgb")
    assert len(read_image(tmp_path / "rgb.tif")) == 3


@pytest.mark.parametrize("content,match", [(b"", "empty"), (b"not a tiff at all", "not a readable")])
def test_bad_files(tmp_path, content, match):
    (tmp_path / "bad.tif").write_bytes(content)
    with pytest.raises(CardiosegError, match=match):
        read_image(tmp_path / "bad.tif")


def test_missing_file():
    with pytest.raises(CardiosegError, match="no such file"):
        read_image("/nonexistent/x.tif")


def test_time_series_is_rejected(tmp_path):
    tifffile.imwrite(tmp_path / "t.tif", np.zeros((3, 2, 8, 8), np.uint8), imagej=True,
                     metadata={"axes": "TZYX"})
    with pytest.raises(CardiosegError, match=r"t\.tif: axis 'T'"):  # which file, in a batch
        read_image(tmp_path / "t.tif")


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "keep.tif"
    write_tiff(target, np.ones((5, 5), np.uint8), (1.0, 1.0))
    before = target.read_bytes()
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("disk went away")
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["keep.tif"]


def test_write_into_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(CardiosegError, match="does not exist"):
        write_tiff(tmp_path / "no" / "x.tif", np.zeros((4, 4), np.uint8))


@pytest.mark.parametrize("scale", [(0.0, 1.0), (np.nan, 1.0), (1.0,)])
def test_bad_scale(tmp_path, scale):
    with pytest.raises(CardiosegError):
        write_tiff(tmp_path / "x.tif", np.zeros((4, 4), np.uint8), scale)


def test_as_grey_rejects_rgb_and_wrong_dims():
    with pytest.raises(CardiosegError, match="RGB"):
        as_grey(np.zeros((32, 32, 3)))
    with pytest.raises(CardiosegError, match="2D"):
        as_grey(np.zeros(5))
    with pytest.raises(CardiosegError, match="empty"):
        as_grey(np.zeros((0, 5)))
    assert as_grey(np.zeros((3, 8, 8))).shape == (3, 8, 8)


def test_written_files_get_normal_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        path = write_tiff(tmp_path / "p.tif", np.zeros((4, 4), np.uint8))
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644
