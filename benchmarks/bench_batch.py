"""Speed-up of ``cardioseg predict`` on a folder of files: 1 vs 2 local dask workers, and a scheduler.

Not a test. A folder of synthetic uint8 images (``--files``, ``--size`` pixels square) is
predicted with a small random 2D U-Net three ways, each as a child ``cardioseg predict DIR -o OUT``
process timed from start to exit (worker start-up included):

1. ``--workers 1``: the files one after another in the command's process (torch uses every core);
2. ``--workers 2``: a dask ``LocalCluster`` of two single-threaded worker processes;
3. ``--scheduler ADDR``: a ``dask scheduler`` and two ``dask worker --nthreads 1`` processes
   started beforehand (their start-up is not timed);
4. ``--workers 1`` with ``CARDIOSEG_THREADS=1``: in-process on one core, the reference for how
   well the dask path spreads single-threaded tasks over the cores.

Prints seconds and the ratios of run 1 to each run (goal ≥ 1.7 on an idle 2-core machine), the
ratio of run 4 to run 2 (the dask path's own scaling from one to two cores), and checks that all
runs wrote identical labels.
Run: ``python benchmarks/bench_batch.py [--files 16] [--size 512] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from napari_cardioseg.core import models, nets
from napari_cardioseg.core.io import read_single
from napari_cardioseg.core.writes import write_tiff

SPEC = {"arch": "unet2d", "in_channels": 1, "classes": 2, "depth": 3, "base": 8}


def make_folder(folder: Path, files: int, size: int) -> None:
    """``files`` uint8 images of blobs and noise, each different."""
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    for i in range(files):
        rng = np.random.default_rng(i)
        image = rng.integers(90, 140, (size, size), dtype=np.uint8)
        image[np.sin(xx / (17.0 + i)) * np.cos(yy / 29.0) > 0.5] //= 3
        write_tiff(folder / f"img{i:02d}.tif", image, (0.005, 0.005))


def save_model(home: Path) -> None:
    """A random model named ``bench`` under ``home`` (speed, not accuracy)."""
    torch.manual_seed(0)
    card = models.ModelCard("bench", SPEC, ["background", "blob"],
                            {"method": "percentile", "low": 1.0, "high": 99.8}, [0.005, 0.005])
    (home / "models").mkdir(parents=True, exist_ok=True)
    models.save_model(nets.build_model(SPEC).eval(), card, home / "models" / "bench")


def timed_predict(src: Path, out: Path, env: dict, *flags: str) -> float:
    """Wall seconds of one ``cardioseg predict`` child process."""
    command = [sys.executable, "-m", "napari_cardioseg", "predict", str(src), "--model", "bench",
               "-o", str(out), "--device", "cpu", *flags]
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def start_cluster(work: Path, env: dict) -> tuple[str, list[subprocess.Popen]]:
    """A ``dask scheduler`` and two single-threaded ``dask worker`` processes on 127.0.0.1."""
    from distributed import Client

    file = work / "scheduler.json"
    procs = [subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1",
                               "--port", "0", "--no-dashboard", "--scheduler-file", str(file)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    deadline = time.monotonic() + 120
    while not file.is_file():
        if time.monotonic() > deadline:
            raise RuntimeError("the dask scheduler did not start")
        time.sleep(0.5)
    for _ in range(2):
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "dask", "worker", "--scheduler-file", str(file), "--host",
             "127.0.0.1", "--nthreads", "1", "--no-dashboard"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    with Client(scheduler_file=str(file), timeout="60s") as client:
        client.wait_for_workers(2, timeout=300)
        return client.scheduler.address, procs


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in reversed(procs):
        proc.terminate()
    for proc in reversed(procs):
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--size", type=int, default=512, help="image edge in pixels")
    parser.add_argument("--keep", type=Path, help="work folder to keep (default: a temporary one)")
    opts = parser.parse_args()
    work = opts.keep or Path(tempfile.mkdtemp(prefix="bench_batch_"))
    env = dict(os.environ, CARDIOSEG_HOME=str(work / "home"))
    src = work / "in"
    procs: list[subprocess.Popen] = []
    try:
        make_folder(src, opts.files, opts.size)
        save_model(work / "home")
        print(f"{opts.files} files of {opts.size}x{opts.size} px, unet2d depth {SPEC['depth']} "
              f"base {SPEC['base']}, {os.cpu_count()} cores, load average "
              f"{os.getloadavg()[0]:.1f} at start")
        one = timed_predict(src, work / "w1", env, "--workers", "1")
        two = timed_predict(src, work / "w2", env, "--workers", "2")
        address, procs = start_cluster(work, env)
        sched = timed_predict(src, work / "sched", env, "--scheduler", address)
        single = timed_predict(src, work / "t1", dict(env, CARDIOSEG_THREADS="1"), "--workers", "1")
        for name in sorted(p.name for p in (work / "w1").iterdir()):
            reference = read_single(work / "w1" / name).data
            for other in ("w2", "sched", "t1"):
                if not np.array_equal(read_single(work / other / name).data, reference):
                    raise AssertionError(f"{other}/{name} differs from the 1-worker run")
        print(f"{'run':<28}{'seconds':>9}{'speed-up':>10}")
        for label, seconds in (("1 worker (in-process)", one), ("2 local workers", two),
                               ("scheduler + 2 workers", sched), ("in-process, 1 thread", single)):
            print(f"{label:<28}{seconds:9.1f}{one / seconds:10.2f}")
        print(f"dask's own scaling, 2 local workers vs in-process on 1 thread: {single / two:.2f}x")
        print(f"load average {os.getloadavg()[0]:.1f} at the end; identical labels in all runs")
    finally:
        stop(procs)
        if opts.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
