"""Bad input from the issue-17 sweep: nothing lost, nothing silently wrong, one-line errors.

Every fixture is written here (no third-party data).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_cardioseg.cli import main
from napari_cardioseg.core import io, writes
from napari_cardioseg.core.errors import CardiosegError
from napari_cardioseg.core.io import read_image
from napari_cardioseg.core.normalize import apply_normalization, fit_normalization
from napari_cardioseg.core.writes import check_outputs, write_tiff

ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False
SRC = str(Path(__file__).resolve().parents[1] / "src")


def image_file(folder: Path, name: str = "in.tif", shape=(40, 48)) -> Path:
    data = (np.arange(np.prod(shape)) % 251).astype(np.uint8).reshape(shape)
    return write_tiff(folder / name, data, (0.1,) * len(shape))


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# --- data loss: an output that is an input ------------------------------------------------------

def _links(tmp_path: Path, source: Path) -> dict[str, Path]:
    (tmp_path / "sym.tif").symlink_to(source)
    os.link(source, tmp_path / "hard.tif")
    return {"same": source, "symlink": tmp_path / "sym.tif", "hardlink": tmp_path / "hard.tif",
            "dotted": tmp_path / "." / source.name}


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink", "dotted"])
def test_check_outputs_refuses_an_output_that_is_an_input(tmp_path, how):
    source = image_file(tmp_path)
    output = _links(tmp_path, source)[how]
    with pytest.raises(CardiosegError, match="the output is the input"):
        check_outputs([output], [source])
    check_outputs([tmp_path / "other.tif"], [source])  # a new name is fine


@pytest.mark.parametrize("argv", [
    ["enhance", "{img}", "-o", "{img}"],
    ["enhance", "{img}", "-o", "{sym}"],
    ["enhance", "{img}", "-o", "{hard}"],
    ["predict", "{img}", "--model", "zdisk-fluo", "-o", "{img}"],
    ["predict", "{img}", "--model", "zdisk-fluo", "-o", "{tmp}/l.tif", "--prob", "{hard}"],
    ["measure", "{lab}", "--kind", "shapes", "-o", "{lab}"],
    ["measure", "{lab}", "--kind", "shapes", "--image", "{img}", "-o", "{sym}"],
    ["evaluate", "{lab}", "{lab2}", "-o", "{lab2}"],
    ["train", "--image", "{img}", "--labels", "{lab}", "--init", "{tmp}/m.json", "-o", "{tmp}/m"],
])
def test_no_command_overwrites_its_input(tmp_path, argv, capsys):
    img = image_file(tmp_path, "img.tif")
    links = _links(tmp_path, img)
    lab = write_tiff(tmp_path / "lab.tif", (np.arange(40 * 48) % 3).reshape(40, 48).astype(np.uint8),
                     (0.1, 0.1))
    lab2 = write_tiff(tmp_path / "lab2.tif", np.ones((40, 48), np.uint8), (0.1, 0.1))
    (tmp_path / "m.json").write_text("{}")
    (tmp_path / "m.safetensors").write_bytes(b"weights")
    names = {"img": img, "sym": links["symlink"], "hard": links["hardlink"], "lab": lab,
             "lab2": lab2, "tmp": tmp_path}
    before = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    code = main([a.format(**names) for a in argv])
    assert code == 2
    err = capsys.readouterr().err
    assert "the output is the input" in err and len(err.strip().splitlines()) == 1
    assert {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


# --- outputs that cannot be written: refused before any work ---------------------------------------

@pytest.mark.parametrize(("output", "message"), [
    ("/proc/x.tif", "system folder"),
    ("/sys/x.tif", "system folder"),
    ("/dev/null", "system folder"),
    ("{tmp}/nofolder/p.tif", "does not exist"),
    ("{tmp}", "is a folder"),
])
def test_unwritable_outputs_are_one_line_errors(tmp_path, output, message):
    with pytest.raises(CardiosegError, match=message):
        check_outputs([output.format(tmp=tmp_path)])


def test_two_outputs_may_not_be_the_same_file(tmp_path):
    with pytest.raises(CardiosegError, match="two outputs"):
        check_outputs([tmp_path / "a.tif", tmp_path / "." / "a.tif"])


@pytest.mark.skipif(ROOT, reason="root may write into any folder")
def test_read_only_folder_is_refused_before_work(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(CardiosegError, match="cannot write into"):
            check_outputs([folder / "x.tif"])
        with pytest.raises(CardiosegError, match="could not write"):
            write_tiff(folder / "x.tif", np.zeros((4, 4), np.uint8))
    finally:
        folder.chmod(0o700)


@pytest.mark.parametrize("argv", [
    ["predict", "{img}", "--model", "zdisk-fluo", "-o", "{tmp}/l.tif", "--prob", "nofolder/p.tif"],
    ["predict", "{img}", "--model", "zdisk-fluo", "-o", "/proc/x.tif"],
    ["enhance", "{img}", "-o", "/sys/x.tif"],
    ["measure", "{img}", "--kind", "shapes", "-o", "{tmp}/no/stats.csv"],
    ["evaluate", "{img}", "{img}", "-o", "{tmp}"],
    ["train", "--image", "{img}", "--labels", "{img}", "-o", "/proc/model"],
    ["train", "--image", "{img}", "--labels", "{img}", "-o", "{tmp}/no/model"],
    ["train", "--image", "{img}", "--labels", "{img}", "-o", "{tmp}"],
])
def test_cli_checks_outputs_before_the_work(tmp_path, argv, capsys, monkeypatch):
    img = image_file(tmp_path, "img.tif")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(io, "read_image", lambda *a, **k: pytest.fail("read before the check"))
    code = main([a.format(img=img, tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.tif"]


# --- reads that used to be silently wrong ---------------------------------------------------------

def test_truncated_imagej_stack_is_refused(tmp_path):
    data = (np.arange(8 * 64 * 64) % 251).astype(np.uint8).reshape(8, 64, 64)
    tifffile.imwrite(tmp_path / "full.tif", data, imagej=True, metadata={"axes": "ZYX"})
    whole = (tmp_path / "full.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(whole[: len(whole) // 2])
    np.testing.assert_array_equal(read_image(tmp_path / "full.tif")[0].data, data)
    with pytest.raises(CardiosegError, match="announces 8 images but the file holds 1"):
        read_image(tmp_path / "cut.tif")


def test_truncated_plain_multipage_tiff_is_refused(tmp_path):
    data = np.ones((6, 32, 32), np.uint16)
    tifffile.imwrite(tmp_path / "full.tif", data)
    whole = (tmp_path / "full.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CardiosegError, match=r"truncated or corrupt|not a readable TIFF"):
        read_image(tmp_path / "cut.tif")


def test_multi_series_tiff_is_refused_with_a_listing(tmp_path):
    tifffile.imwrite(tmp_path / "ms.tif", np.zeros((16, 16), np.uint8))
    tifffile.imwrite(tmp_path / "ms.tif", np.ones((2, 8, 8), np.uint16), append=True)
    with pytest.raises(CardiosegError, match=r"2 image series \(series 0: 16x16 uint8 .*; "
                                             r"series 1: 2x8x8 uint16"):
        read_image(tmp_path / "ms.tif")
    (second,) = read_image(tmp_path / "ms.tif", series=1)
    assert second.data.shape == (2, 8, 8) and second.data.dtype == np.uint16
    with pytest.raises(CardiosegError, match="no series 2"):
        read_image(tmp_path / "ms.tif", series=2)


def test_corrupt_deflate_data_is_a_one_line_error(tmp_path):
    data = np.random.default_rng(0).integers(0, 255, (64, 64)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "z.tif", data, compression="zlib")
    raw = bytearray((tmp_path / "z.tif").read_bytes())
    with tifffile.TiffFile(tmp_path / "z.tif") as tif:
        start, size = tif.pages.first.dataoffsets[0], tif.pages.first.databytecounts[0]
    raw[start + 10 : start + size - 10] = bytes(size - 20)
    (tmp_path / "bad.tif").write_bytes(bytes(raw))
    with pytest.raises(CardiosegError, match="not a readable TIFF") as info:
        read_image(tmp_path / "bad.tif")
    assert "\n" not in str(info.value)


# --- pixel sizes ---------------------------------------------------------------------------------

def _imagej(path: Path, resolution=(10.0, 10.0), **meta) -> Path:
    tifffile.imwrite(path, np.zeros((3, 8, 8), np.uint8), imagej=True, resolution=resolution,
                     metadata={"axes": "ZYX", "unit": "um", **meta})
    return path


def _ome(path: Path, **sizes) -> Path:
    tifffile.imwrite(path, np.zeros((8, 8), np.int32), ome=True, metadata={"axes": "YX", **sizes})
    return path


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: _imagej(p, resolution=(1 / 9e99, 1 / 9e99)), r"X = inf"),
    (lambda p: _imagej(p, spacing=-0.5), r"Z = -0.5 µm"),
    (lambda p: _imagej(p, spacing=0.0), r"Z = 0 µm"),
    (lambda p: _imagej(p, resolution=(1e-9, 1e-9)), r"X = 1e\+09 µm"),
    (lambda p: _imagej(p, unit="parsec"), "unknown length unit 'parsec'"),
    (lambda p: _ome(p, PhysicalSizeX="INF", PhysicalSizeY=0.1), "X = inf"),
    (lambda p: _ome(p, PhysicalSizeX="NaN", PhysicalSizeY=0.1), "X = nan"),
    (lambda p: _ome(p, PhysicalSizeX=9e99, PhysicalSizeY=0.1), r"X = 9e\+99"),
    (lambda p: _ome(p, PhysicalSizeX=-1.0, PhysicalSizeY=0.1), "X = -1"),
    (lambda p: _ome(p, PhysicalSizeX=0.1, PhysicalSizeY="abc"), "Y = nan"),
])
def test_absurd_pixel_sizes_are_refused_on_reading(tmp_path, make, message, monkeypatch):
    path = make(tmp_path / "x.tif")
    with pytest.raises(CardiosegError, match=message) as info:
        read_image(path)
    assert io.IGNORE_PIXEL_SIZE_ENV in str(info.value)
    monkeypatch.setenv(io.IGNORE_PIXEL_SIZE_ENV, "1")  # the documented override
    if "unit" not in message:
        with pytest.warns(UserWarning, match="read as uncalibrated"):
            (img,) = read_image(path)
        assert not img.calibrated and set(img.scale) == {1.0}


def test_absurd_z_spacing_of_a_2d_image_is_irrelevant(tmp_path):
    tifffile.imwrite(tmp_path / "x.tif", np.zeros((8, 8), np.uint8), imagej=True,
                     resolution=(10.0, 10.0), metadata={"unit": "um", "spacing": -1.0})
    (img,) = read_image(tmp_path / "x.tif")
    assert img.calibrated and img.scale == pytest.approx((0.1, 0.1))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.int32, np.float64])
def test_write_without_scale_writes_no_calibration(tmp_path, dtype):
    path = write_tiff(tmp_path / "x.tif", np.ones((2, 8, 8), dtype))
    (img,) = read_image(path)
    assert not img.calibrated and img.scale == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("dtype", [np.uint8, np.float64])
def test_a_pixel_size_of_exactly_one_micrometre_is_kept(tmp_path, dtype):
    (img,) = read_image(write_tiff(tmp_path / "x.tif", np.ones((2, 8, 8), dtype), (1.0, 1.0, 1.0)))
    assert img.calibrated and img.scale == (1.0, 1.0, 1.0)


def test_writer_refuses_absurd_pixel_sizes(tmp_path):
    with pytest.raises(CardiosegError, match="pixel sizes must be numbers"):
        write_tiff(tmp_path / "x.tif", np.ones((8, 8), np.uint8), (9e99, 0.1))


# --- extreme float values --------------------------------------------------------------------------

@pytest.mark.parametrize("norm", [{"method": "percentile", "low": 1.0, "high": 99.8},
                                  {"method": "minmax"}, {"method": "zscore"}])
@pytest.mark.parametrize(("factor", "dtype"), [(1e300, np.float64), (1.7e308, np.float64),
                                               (3.3e38, np.float32), (1e-300, np.float64)])
def test_normalisation_is_the_same_at_any_magnitude(norm, factor, dtype):
    x = np.random.default_rng(1).normal(size=(64, 64))
    x /= np.abs(x).max()
    reference = apply_normalization(x, fit_normalization(x, norm))
    scaled = (x * factor).astype(dtype)
    assert np.isfinite(scaled).all()
    result = apply_normalization(scaled, fit_normalization(scaled, norm))
    np.testing.assert_allclose(result, reference, rtol=1e-5, atol=1e-5)


def test_normalisation_saturates_and_zeroes_non_finite_pixels():
    out = apply_normalization(np.array([1.0, np.inf, np.nan, 1e300]),
                              {"method": "fixed", "min": 0.0, "max": 1e-3})
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [1000.0, 0.0, 0.0, np.finfo(np.float32).max])


# --- interruptions and permissions --------------------------------------------------------------

def _writer(target: Path, signal_file: Path) -> subprocess.Popen:
    """A process that starts an atomic write of ``target`` and sleeps in the middle of it."""
    code = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from napari_cardioseg.core.writes import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            tmp.write_bytes(b"partial" * 1000)
            Path({str(signal_file)!r}).write_text("ready")
            time.sleep(60)
    """)
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)


def _wait_for(path: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "the writer never started"
        time.sleep(0.05)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
def test_sigterm_during_a_write_removes_the_temporary_file(tmp_path):
    target = tmp_path / "out" / "keep.tif"
    target.parent.mkdir()
    target.write_bytes(b"old")
    proc = _writer(target, tmp_path / "ready")
    _wait_for(tmp_path / "ready", proc)
    assert len(temporaries(target.parent)) == 1
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    assert temporaries(target.parent) == [] and target.read_bytes() == b"old"


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
def test_kill_9_leftovers_are_removed_by_the_next_write(tmp_path):
    target = tmp_path / "out" / "keep.tif"
    target.parent.mkdir()
    target.write_bytes(b"old")
    proc = _writer(target, tmp_path / "ready")
    _wait_for(tmp_path / "ready", proc)
    proc.kill()
    proc.communicate(timeout=30)
    (left,) = temporaries(target.parent)
    assert f"cardioseg-tmp-{proc.pid}-" in left and target.read_bytes() == b"old"
    write_tiff(target, np.ones((4, 4), np.uint8))
    assert temporaries(target.parent) == [] and read_image(target)[0].data.sum() == 16


def test_a_live_writers_temporary_file_is_left_alone(tmp_path):
    target = tmp_path / "keep.tif"
    mine = tmp_path / f".keep.tif.cardioseg-tmp-{os.getpid()}-abcd1234"
    mine.write_bytes(b"in progress")
    assert writes.remove_stale_temporaries(target) == []
    assert mine.exists()


def test_sigterm_during_a_cli_write_cleans_up(tmp_path):
    """The real CLI, with a slow TIFF writer, stopped by SIGTERM as ``timeout`` would."""
    img = image_file(tmp_path, "img.tif")
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        import tifffile
        real = tifffile.imwrite
        def slow(path, *args, **kwargs):
            real(path, *args, **kwargs)
            Path({str(tmp_path / "ready")!r}).write_text("ready")
            time.sleep(60)
        tifffile.imwrite = slow
        from napari_cardioseg.cli import main
        sys.exit(main(["enhance", {str(img)!r}, "-o", {str(tmp_path / "out.tif")!r}]))
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": SRC},
                            stderr=subprocess.PIPE)
    _wait_for(tmp_path / "ready", proc)
    assert len(temporaries(tmp_path)) == 1
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    assert temporaries(tmp_path) == [] and not (tmp_path / "out.tif").exists()


def test_writes_never_touch_the_process_umask(tmp_path, monkeypatch):
    mask = os.umask(0o027)
    try:
        monkeypatch.setattr(os, "umask", lambda *a: pytest.fail("os.umask was called"))
        path = write_tiff(tmp_path / "p.tif", np.zeros((4, 4), np.uint8))
    finally:
        monkeypatch.undo()
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o640


# --- arguments ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "message"), [
    (["train", "--time-budget", "nan"], "finite number of seconds"),
    (["train", "--time-budget", "inf"], "finite number of seconds"),
    (["train", "--time-budget", "0"], "finite number of seconds"),
    (["train", "--time-budget", "soon"], "not a number of seconds"),
    (["train", "--seed", "-1"], "0..4294967295, got -1"),
    (["train", "--seed", str(2**64)], "0..4294967295"),
    (["train", "--seed", "1.5"], "not a whole number"),
    (["train", "--init", ""], "is not a model"),
    (["train", "--init", "."], "is not a model"),
    (["predict", "x.tif", "-o", "y.tif", "--model", ""], "is not a model"),
    (["predict", "x.tif", "-o", "y.tif", "--model", "."], "is not a model"),
    (["predict", "x.tif", "-o", "y.tif", "--model", "{tmp}"], "is a folder"),
    (["measure", "l.tif", "--kind", "shapes", "-o", "s.csv", "--pixel-size", "9e99", "1"],
     "a pixel size must be a number in 1e-06..1e+06 µm, got '9e99'"),
    (["measure", "l.tif", "--kind", "shapes", "-o", "s.csv", "--pixel-size", "nan", "1"],
     "got 'nan'"),
])
def test_bad_arguments_stop_at_parsing(tmp_path, argv, message, capsys):
    if argv[0] == "train":
        argv = [*argv, "--image", "i.tif", "--labels", "l.tif", "-o", "m"]
    with pytest.raises(SystemExit) as info:
        main([a.format(tmp=tmp_path) for a in argv])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_models_command_lists_broken_cards(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CARDIOSEG_HOME", str(tmp_path))
    folder = tmp_path / "models"
    folder.mkdir()
    card = (Path(io.__file__).parent.parent / "weights" / "zdisk-fluo.json").read_text()
    (folder / "bad.json").write_text(card.replace('"high": 99.8', '"high": null'))
    (folder / "bad.safetensors").write_bytes(b"")
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "zdisk-fluo" in out and "broken: " in out and "'high' must be a finite number" in out
    assert main(["predict", "x.tif", "--model", "nope", "-o", str(tmp_path / "y.tif")]) == 2
    assert "no model 'nope'" in capsys.readouterr().err
