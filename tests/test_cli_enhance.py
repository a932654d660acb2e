"""``cardioseg enhance`` through the real dispatcher: dtype and pixel size round trip, one-line errors."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import tifffile

from napari_cardioseg import cli
from napari_cardioseg.core.contrast import (
    METHODS,
    Method,
    Param,
    agcwd,
    agcwd_extended,
    all_params,
    percentile_stretch,
)
from napari_cardioseg.core.io import read_single
from napari_cardioseg.core.writes import write_tiff


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
    (["--alpha", "0"], "alpha must be a number in (0, 1], got 0"),
    (["--method", "percentile", "--low", "90", "--high", "10"], "0 <= low < high <= 100"),
    (["--method", "percentile", "--alpha", "0.5"], "method 'percentile' has no parameter 'alpha'"),
    (["--alpha", "nan"], "alpha must be a number in (0, 1], got nan"),
    (["--alpha", "inf"], "alpha must be a number in (0, 1], got inf"),
    (["--method", "agcwd-extended", "--n-sigma=-inf"], "n_sigma must be a number in [1, 100], got -inf"),
    (["--method", "percentile", "--high", "nan"], "high must be a number in [0, 100], got nan"),
    (["--bins", "1000000000000"], "bins must be a whole number in [2, 65536], got 1000000000000"),
])
def test_bad_parameters_are_one_line(tmp_path, stack_path, capsys, argv, message):
    path, _ = stack_path
    assert cli.main(["enhance", str(path), "-o", str(tmp_path / "o.tif"), *argv]) == 2
    assert message in _one_error_line(capsys)


def test_missing_file_is_one_line(tmp_path, capsys):
    code = cli.main(["enhance", str(tmp_path / "nope.tif"), "-o", str(tmp_path / "o.tif")])
    assert code == 2
    assert "nope.tif: no such file" in _one_error_line(capsys)


@pytest.mark.parametrize("argv", [["--bins", "1000000000000"], ["--alpha", "nan"], ["--method", "clahe"]])
def test_bad_parameters_are_refused_before_reading(tmp_path, capsys, argv):
    # the input does not exist: the parameter error comes first, so nothing was read or computed
    assert cli.main(["enhance", str(tmp_path / "nope.tif"), "-o", str(tmp_path / "o.tif"), *argv]) == 2
    assert "no such file" not in _one_error_line(capsys)


def test_float16_is_enhanced_and_written_as_float32(tmp_path, rng):
    import tifffile

    data = rng.gamma(2.0, 30.0, (2, 16, 20)).astype(np.float16)
    tifffile.imwrite(tmp_path / "h.tif", data)  # float16: the project's writer would refuse it
    assert cli.main(["enhance", str(tmp_path / "h.tif"), "-o", str(tmp_path / "o.tif")]) == 0
    result = read_single(tmp_path / "o.tif")
    assert result.data.dtype == np.float32 and result.data.min() == 0 and result.data.max() == 1
    np.testing.assert_array_equal(result.data, agcwd(data))


def test_every_registry_parameter_is_a_flag_with_its_default_in_the_help(capsys):
    parser = cli.build_parser("enhance")
    with pytest.raises(SystemExit):
        parser.parse_args(["enhance", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for method in METHODS.values():
        assert method.name in text and method.help in text
        for param in method.params:
            default = "default automatic" if param.default is None else f"default {param.default:g}"
            assert f"{param.flag} {param.name.upper()}" in text
            assert f"(range {param.range_text}, {default}" in text
            value = param.high  # any value in range parses to the parameter's type under its name
            args = parser.parse_args(["enhance", "in.tif", "-o", "o.tif", param.flag, f"{value:g}"])
            assert getattr(args, param.name) == value and type(getattr(args, param.name)) is param.type
    args = parser.parse_args(["enhance", "in.tif", "-o", "o.tif"])
    assert args.method == "agcwd" and all(getattr(args, name) is None for name in all_params())


def test_a_new_registry_row_gets_its_flag(monkeypatch, tmp_path, capsys):
    gain = Param("gain_db", float, 1.0, 0.5, 2.0, "how much brighter")
    flat = Method("flat", lambda d, gain_db: lambda x: 0 * x + 0.5, (gain,), "grey")
    monkeypatch.setitem(METHODS, "flat", flat)
    path = write_tiff(tmp_path / "i.tif", np.arange(16, dtype=np.uint8).reshape(4, 4))
    assert cli.main(["enhance", str(path), "-o", str(tmp_path / "o.tif"), "--method", "flat",
                     "--gain-db", "2"]) == 0
    np.testing.assert_array_equal(read_single(tmp_path / "o.tif").data, 128)
    assert cli.main(["enhance", str(path), "-o", str(tmp_path / "o.tif"), "--method", "flat",
                     "--gain-db", "3"]) == 2
    assert "gain_db must be a number in [0.5, 2], got 3" in capsys.readouterr().err


def test_module_import_is_cheap():
    code = ("import sys, napari_cardioseg.cli.enhance\n"
            "print(','.join(m for m in ('tifffile', 'torch', 'skimage', 'napari', 'napari_cardioseg.core.io')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_warnings_print_as_one_line(tmp_path):
    # a stack with an in-plane size but no slice spacing: read with cubic voxels, and said so
    tifffile.imwrite(tmp_path / "xy.ome.tif", np.zeros((3, 16, 16), np.uint8), ome=True,
                     metadata={"axes": "ZYX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2})
    out = subprocess.run([sys.executable, "-m", "napari_cardioseg", "enhance",
                          str(tmp_path / "xy.ome.tif"), "-o", str(tmp_path / "o.tif"),
                          "--method", "percentile"], capture_output=True, text=True, check=True)
    lines = [line for line in out.stderr.splitlines() if "slice spacing" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "0.2 µm apart" in lines[0]
    assert "UserWarning" not in out.stderr and ".py:" not in out.stderr
    assert read_single(tmp_path / "o.tif").scale == pytest.approx((0.2, 0.2, 0.2))


def test_main_restores_the_warning_format(tmp_path):
    # in-process callers of main() get Python's own warning format back afterwards
    before = warnings.formatwarning
    tifffile.imwrite(tmp_path / "i.tif", np.zeros((16, 16), np.uint8))
    assert cli.main(["enhance", str(tmp_path / "i.tif"), "-o", str(tmp_path / "o.tif"),
                     "--method", "percentile"]) == 0
    assert warnings.formatwarning is before
    assert "UserWarning" in warnings.formatwarning("m", UserWarning, "f.py", 1)
