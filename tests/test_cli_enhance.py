"""``cardioseg enhance`` through the real dispatcher: dtype and pixel size round trip, one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cardioseg import cli
from napari_cardioseg.core.contrast import agcwd, agcwd_extended, percentile_stretch
from napari_cardioseg.core.io import read_single, write_tiff


@pytest.fixture
def stack_path(tmp_path, rng):
    data = rng.integers(100, 4000, (3, 20, 24)).astype(np.uint16)
    data[1] //= 3
    return write_tiff(tmp_path / "in.tif", data, (0.4, 0.021, 0.02)), data


@pytest.mark.parametrize("argv,expected", [
    ([], lambda d: agcwd(d)),
    (["--method", "agcwd", "--alpha", "0.3", "--bins", "256"], lambda d: agcwd(d, 0.3, bins=256)),
    (["--method", "agcwd-extended", "--n-sigma", "2"], lambda d: agcwd_extended(d, n_sigma=2)),
    (["--method", "percentile", "--low", "1", "--high", "99", "--per-slice"],
     lambda d: percentile_stretch(d, 1, 99, per_slice=True)),
])
def test_round_trip_keeps_dtype_and_pixel_size(tmp_path, stack_path, argv, expected, capsys):
    path, data = stack_path
    out = tmp_path / "out.tif"
    assert cli.main(["enhance", str(path), "-o", str(out), *argv]) == 0
    result = read_single(out)
    assert result.data.dtype == np.uint16
    np.testing.assert_allclose(result.scale, (0.4, 0.021, 0.02), rtol=1e-6)
    np.testing.assert_array_equal(result.data, expected(data))
    assert result.data.min() == 0 and result.data.max() == 65535
    assert "wrote" in capsys.readouterr().out


def test_float_2d_keeps_float32(tmp_path, rng):
    data = rng.normal(0, 1, (16, 16)).astype(np.float32)
    path = write_tiff(tmp_path / "f.tif", data, (0.1, 0.1))
    assert cli.main(["enhance", str(path), "-o", str(tmp_path / "o.tif"), "--method", "percentile"]) == 0
    result = read_single(tmp_path / "o.tif")
    assert result.data.dtype == np.float32
    np.testing.assert_allclose(result.data, percentile_stretch(data))


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    return err[0]


def test_bad_method_is_one_line(tmp_path, stack_path, capsys):
    path, _ = stack_path
    assert cli.main(["enhance", str(path), "-o", str(tmp_path / "o.tif"), "--method", "clahe"]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("cardioseg enhance: error: unknown method 'clahe'")
    assert "agcwd, agcwd-extended, percentile" in line
    assert not (tmp_path / "o.tif").exists()


@pytest.mark.parametrize("argv,message", [
    (["--alpha", "0"], "alpha must be in (0, 1]"),
    (["--method", "percentile", "--low", "90", "--high", "10"], "0 <= low < high <= 100"),
    (["--method", "percentile", "--alpha", "0.5"], "unexpected keyword argument 'alpha'"),
])
def test_bad_parameters_are_one_line(tmp_path, stack_path, capsys, argv, message):
    path, _ = stack_path
    assert cli.main(["enhance", str(path), "-o", str(tmp_path / "o.tif"), *argv]) == 2
    assert message in _one_error_line(capsys)


def test_missing_file_is_one_line(tmp_path, capsys):
    code = cli.main(["enhance", str(tmp_path / "nope.tif"), "-o", str(tmp_path / "o.tif")])
    assert code == 2
    assert "nope.tif: no such file" in _one_error_line(capsys)
