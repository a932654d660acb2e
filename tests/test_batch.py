"""Many files per command: input expansion, failures that do not stop the rest, dask workers."""

from __future__ import annotations

import contextlib
import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import napari_cardioseg
from napari_cardioseg.cli import main
from napari_cardioseg.core.batch import (
    TIFF_SUFFIXES,
    BatchProgress,
    expand_inputs,
    is_batch,
    make_jobs,
    output_paths,
    run_batch,
    stem,
)
from napari_cardioseg.core.errors import CardiosegError
from napari_cardioseg.core.io import read_single
from napari_cardioseg.core.writes import write_tiff
from napari_cardioseg.core.zarr_io import write_ome_zarr

SCALE = (0.005, 0.004)


@pytest.fixture
def user_model(user_model):
    """The conftest model, by name (as jobs carry it to dask workers)."""
    return "tiny"


@pytest.fixture
def folder(tmp_path, rng) -> Path:
    """Four small calibrated images with different content."""
    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        write_tiff(src / f"img{i}.tif", rng.integers(0, 255, (40, 52)).astype(np.uint8), SCALE)
    return src


def test_expand_inputs_folders_globs_files(tmp_path, folder):
    (folder / "notes.txt").write_text("not an image")
    write_ome_zarr(folder / "vol.ome.zarr", np.zeros((8, 8), np.uint8), SCALE)
    names = [p.name for p in expand_inputs([folder])]
    assert names == ["img0.tif", "img1.tif", "img2.tif", "img3.tif", "vol.ome.zarr"]
    # globs are sorted, a file named twice is kept once, order follows the patterns
    got = expand_inputs([folder / "img3.tif", str(folder / "img[12].tif"), folder / "img3.tif"])
    assert [p.name for p in got] == ["img3.tif", "img1.tif", "img2.tif"]
    assert expand_inputs([folder / "vol.ome.zarr"]) == [folder / "vol.ome.zarr"]  # a store, not a folder
    assert [p.name for p in expand_inputs([folder], TIFF_SUFFIXES)][-1] == "img3.tif"
    with pytest.raises(CardiosegError, match="no such file"):
        expand_inputs([folder / "missing.tif"])
    with pytest.raises(CardiosegError, match="no file matches"):
        expand_inputs([str(folder / "*.png")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(CardiosegError, match="holds no"):
        expand_inputs([tmp_path / "empty"])


def test_batch_mode_and_output_names(tmp_path, folder):
    assert not is_batch([str(folder / "img0.tif")])
    assert not is_batch([str(folder / "x.zarr")])
    assert is_batch([str(folder)]) and is_batch([str(folder / "*.tif")])
    assert is_batch([str(folder / "img0.tif"), str(folder / "img1.tif")])
    assert stem("a/cell.ome.tif") == "cell" and stem("b/vol.ome.zarr/") == "vol"
    assert stem("c/run.2.tiff") == "run.2"
    outs = output_paths([Path("a/x.tif"), Path("b/y.ome.tif")], tmp_path, "_labels.tif")
    assert outs == [tmp_path / "x_labels.tif", tmp_path / "y_labels.tif"]
    zarr_outs = output_paths([Path("a/x.tif"), Path("a/v.zarr")], tmp_path, "_l.tif", "_l.zarr")
    assert [p.name for p in zarr_outs] == ["x_l.tif", "v_l.zarr"]
    with pytest.raises(CardiosegError, match="would both write"):
        output_paths([Path("a/x.tif"), Path("b/x.tif")], tmp_path, ".csv")


def test_enhance_folder_continues_after_a_failure(tmp_path, folder, capsys):
    (folder / "broken.tif").write_bytes(b"not a tiff at all")
    out = tmp_path / "out" / "deeper"  # created when missing
    code = main(["enhance", str(folder), "-o", str(out), "--method", "percentile",
                 "--workers", "1"])
    captured = capsys.readouterr()
    assert code == 1  # one file failed
    errors = [line for line in captured.err.splitlines() if line.startswith(str(folder))]
    assert len(errors) == 1 and "not a readable TIFF" in errors[0]
    table = captured.out.strip().splitlines()
    assert table[0].split()[:3] == ["file", "status", "seconds"]
    assert sum("FAILED" in row for row in table) == 1 and sum(" ok " in row for row in table) == 4
    assert table[-1] == "4 of 5 files done, 1 failed"
    for i in range(4):
        single = tmp_path / f"single{i}.tif"
        assert main(["enhance", str(folder / f"img{i}.tif"), "-o", str(single),
                     "--method", "percentile"]) == 0
        batch = read_single(out / f"img{i}_enhanced.tif")
        np.testing.assert_array_equal(batch.data, read_single(single).data)
        assert batch.scale == pytest.approx(SCALE)


def test_measure_glob_gives_the_single_file_tables(tmp_path, capsys):
    for i in range(2):
        labels = np.zeros((30, 40), np.uint8)
        labels[2:8, 3 : 10 + 5 * i] = 1
        labels[15:25, 20:30] = 1
        write_tiff(tmp_path / f"mask{i}.tif", labels, (0.1, 0.1))
    code = main(["measure", str(tmp_path / "mask*.tif"), "--kind", "shapes", "-o",
                 str(tmp_path / "tables"), "--workers", "1"])
    assert code == 0
    for i in range(2):
        assert main(["measure", str(tmp_path / f"mask{i}.tif"), "--kind", "shapes", "-o",
                     str(tmp_path / f"one{i}.csv")]) == 0
        for suffix in ("", "_summary"):
            batch = (tmp_path / "tables" / f"mask{i}{suffix}.csv").read_text()
            assert batch == (tmp_path / f"one{i}{suffix}.csv").read_text()
        text = (tmp_path / "tables" / f"mask{i}.csv").read_text()
        rows = list(csv.DictReader(text.splitlines()))
        assert len(rows) == 2
        assert sorted(float(r["area_um2"]) for r in rows) == pytest.approx(
            sorted([6 * (7 + 5 * i) * 0.01, 100 * 0.01]))
    capsys.readouterr()
    assert main(["measure", str(tmp_path / "mask*.tif"), "--kind", "shapes", "--image",
                 str(tmp_path / "mask0.tif"), "-o", str(tmp_path / "t2")]) == 2
    assert "--image" in capsys.readouterr().err


def test_run_batch_progress_per_file_and_overall(tmp_path, folder):
    inputs = expand_inputs([folder])
    jobs = make_jobs("enhance", inputs, output_paths(inputs, tmp_path, "_e.tif"),
                     {"method": "percentile", "params": {}})
    steps = run_batch(jobs, workers=1)
    seen: list[BatchProgress] = []
    while True:
        try:
            seen.append(next(steps))
        except StopIteration as stop:
            results = stop.value
            break
    assert all(p.total == 4 for p in seen)
    finished = [p for p in seen if p.finished is not None]
    assert [p.done for p in finished] == [1, 2, 3, 4]
    assert [r.job.input.name for r in results] == [f"img{i}.tif" for i in range(4)]
    assert all(r.ok and r.outputs == [tmp_path / f"img{i}_e.tif"] for i, r in enumerate(results))
    assert any("img2.tif:" in p.message for p in seen)  # the current file's own progress


def _single_predictions(tmp_path: Path, folder: Path, model: str) -> dict[str, tuple]:
    """Labels and the last class's probabilities of each file, predicted one file at a time."""
    out = {}
    for i in range(4):
        path, prob = tmp_path / f"single{i}.tif", tmp_path / f"single{i}_p.tif"
        assert main(["predict", str(folder / f"img{i}.tif"), "--model", model, "-o", str(path),
                     "--prob", str(prob), "--device", "cpu"]) == 0
        out[f"img{i}"] = (read_single(path).data, read_single(tmp_path / f"single{i}_p-lyso.tif").data)
    assert len({p.tobytes() for _, p in out.values()}) == 4  # different files, different results
    return out


def _assert_same(out: Path, single: dict[str, tuple]) -> None:
    for name, (labels, prob) in single.items():
        got = read_single(out / f"{name}_labels.tif")
        np.testing.assert_array_equal(got.data, labels)
        assert got.scale == pytest.approx(SCALE)
        np.testing.assert_allclose(read_single(out / f"{name}_prob-lyso.tif").data, prob, atol=1e-5)


@pytest.mark.slow
def test_predict_folder_with_one_and_two_local_workers(tmp_path, folder, user_model, capsys):
    pytest.importorskip("distributed")
    single = _single_predictions(tmp_path, folder, user_model)
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}"
        assert main(["predict", str(folder), "--model", user_model, "-o", str(out),
                     "--prob", str(out), "--device", "cpu", "--workers", workers]) == 0
        _assert_same(out, single)
    assert capsys.readouterr().out.strip().endswith("4 of 4 files done, 0 failed")


def test_predict_batch_streams_zarr_inputs_into_zarr(tmp_path, rng, user_model):
    from napari_cardioseg.core.zarr_io import read_ome_zarr

    src = tmp_path / "mixed"
    src.mkdir()
    write_tiff(src / "a.tif", rng.integers(0, 255, (40, 52)).astype(np.uint8), SCALE)
    write_ome_zarr(src / "b.ome.zarr", rng.integers(0, 255, (40, 52)).astype(np.uint8), SCALE,
                   labels=False)
    pytest.importorskip("distributed")
    # on dask workers: each task reads its lazy input itself (not through the cluster)
    assert main(["predict", str(src), "--model", user_model, "-o", str(tmp_path / "out"),
                 "--device", "cpu", "--workers", "2", "--tile", "32"]) == 0
    assert main(["predict", str(src / "b.ome.zarr"), "--model", user_model, "-o",
                 str(tmp_path / "one.zarr"), "--device", "cpu", "--tile", "32"]) == 0
    batch, single = read_ome_zarr(tmp_path / "out" / "b_labels.zarr"), read_ome_zarr(tmp_path / "one.zarr")
    assert batch.complete and batch.scale == pytest.approx(SCALE)
    np.testing.assert_array_equal(np.asarray(batch.data), np.asarray(single.data))
    assert read_single(tmp_path / "out" / "a_labels.tif").data.shape == (40, 52)


def test_cluster_flags_name_the_extra_when_distributed_is_missing(tmp_path, folder, monkeypatch,
                                                                 capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)
    code = main(["enhance", str(folder), "-o", str(tmp_path / "o"), "--method", "percentile",
                 "--workers", "2"])
    assert code == 2 and "napari-cardioseg[cluster]" in capsys.readouterr().err
    # without the flags the files simply run here
    assert main(["enhance", str(folder), "-o", str(tmp_path / "o"), "--method", "percentile"]) == 0


def _start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    with log.open("w") as out:  # the child keeps its own copy of the handle
        return subprocess.Popen([sys.executable, "-m", "dask", *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_predict_through_a_scheduler_started_by_hand(tmp_path, folder, user_model, capsys):
    """``dask scheduler`` + two ``dask worker`` processes on 127.0.0.1, as docs/cluster.md says."""
    pytest.importorskip("distributed")
    single = _single_predictions(tmp_path, folder, user_model)
    env = dict(os.environ)
    src = str(Path(napari_cardioseg.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    file = tmp_path / "scheduler.json"
    procs = []
    try:
        procs.append(_start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                             "--scheduler-file", str(file)], env, tmp_path / "scheduler.log"))
        deadline = time.monotonic() + 120
        while not file.is_file() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert file.is_file(), (tmp_path / "scheduler.log").read_text()
        for i in range(2):
            procs.append(_start(["worker", "--scheduler-file", str(file), "--host", "127.0.0.1",
                                 "--nthreads", "1", "--no-dashboard"], env,
                                tmp_path / f"worker{i}.log"))
        from distributed import Client

        with Client(scheduler_file=str(file), timeout="60s") as client:
            client.wait_for_workers(2, timeout=180)
            address = client.scheduler.address
        out = tmp_path / "cluster"
        assert main(["predict", str(folder / "*.tif"), "--model", user_model, "-o", str(out),
                     "--prob", str(out), "--device", "cpu", "--scheduler", address]) == 0
        _assert_same(out, single)
        table = capsys.readouterr().out
        assert "4 of 4 files done, 0 failed" in table
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_local_cluster_starts_beside_a_busy_dashboard_port():
    """A dask dashboard already on 8787 (JupyterLab's, another run's) must not stop a local
    cluster: ours takes any free port, with no warning (warnings are errors in this suite)."""
    import socket

    from napari_cardioseg.core.cluster import dask_client

    pytest.importorskip("distributed")
    busy = socket.socket()
    try:
        with contextlib.suppress(OSError):  # held by something else already: busy either way
            busy.bind(("", 8787))
            busy.listen()
        with dask_client(1, None, 1, torch_work=False) as client:
            assert client.submit(sum, [1, 2, 3]).result(timeout=60) == 6
    finally:
        busy.close()
