"""Peak memory of streaming ``cardioseg predict`` (OME-Zarr in, OME-Zarr out) against volume size.

Not a test. For each size a synthetic uint8 ``ZYX`` volume (random blobs, written slab by slab)
is saved as OME-Zarr and ``cardioseg predict IN.zarr --model tiny -o OUT.zarr`` runs in a child
process with a small random model (a 2D ``unet2d`` slice by slice, or ``--arch unet3d``). The
child's peak resident set size comes from ``os.wait4``; the goal is a flat peak, at most 2 GB at
every size. Also reported: peak RSS per input byte and throughput in Mvoxel/s.
Run: ``python benchmarks/bench_scale.py [--sizes 0.06 0.25 1 4] [--arch unet3d] [--keep DIR]``.
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

from napari_cardioseg.core import models, nets, zarr_io

#: Gvoxel -> ZYX shape
SHAPES = {0.06: (64, 1024, 1024), 0.25: (256, 1024, 1024), 1.0: (256, 2048, 2048),
          4.0: (1024, 2048, 2048)}
SPECS = {"unet2d": {"arch": "unet2d", "in_channels": 1, "classes": 2, "depth": 2, "base": 4},
         "unet3d": {"arch": "unet3d", "in_channels": 1, "classes": 2, "depth": 2, "base": 4}}


def make_volume(path: Path, shape: tuple[int, ...], seed: int = 0) -> None:
    """A uint8 OME-Zarr of dark blobs on a brighter background, never whole in memory."""
    rng = np.random.default_rng(seed)
    group = zarr_io.create_ome_zarr(path, shape, np.uint8, (0.01, 0.005, 0.005),
                                    chunks=(16, 256, 256), levels=1, labels=False)
    yy, xx = np.mgrid[: shape[1], : shape[2]]
    for z0 in range(0, shape[0], 16):
        slab = rng.integers(90, 140, (min(16, shape[0] - z0), *shape[1:]), dtype=np.uint8)
        blobs = (np.sin(xx / 23.0 + z0 / 7.0) * np.cos(yy / 31.0) > 0.6)
        slab[:, blobs] //= 3
        group["0"][z0 : z0 + slab.shape[0]] = slab
    zarr_io.mark_complete(group)


def save_tiny_model(home: Path, arch: str) -> None:
    """A random model named ``tiny`` in ``home`` (the benchmark measures memory, not accuracy)."""
    torch.manual_seed(0)
    spec = SPECS[arch]
    card = models.ModelCard("tiny", spec, ["background", "blob"],
                            {"method": "percentile", "low": 1.0, "high": 99.8}, None)
    (home / "models").mkdir(parents=True, exist_ok=True)
    models.save_model(nets.build_model(spec).eval(), card, home / "models" / "tiny")


def run_predict(src: Path, out: Path, home: Path, tile: int | None,
                threads: int) -> tuple[float, float]:
    """Seconds and peak RSS (bytes) of one ``cardioseg predict`` child process."""
    env = {**os.environ, "CARDIOSEG_HOME": str(home), "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "napari_cardioseg", "predict", str(src), "--model", "tiny",
           "-o", str(out), "--device", "cpu"]
    if tile:
        cmd += ["--tile", str(tile)]
    start = time.perf_counter()
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"predict failed: {child.stderr.read().decode()[-2000:]}")
    child.stderr.close()
    return seconds, usage.ru_maxrss * 1024.0  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.06, 0.25],
                        choices=sorted(SHAPES), help="Gvoxel (default: 0.06 0.25)")
    parser.add_argument("--arch", default="unet2d", choices=sorted(SPECS))
    parser.add_argument("--tile", type=int, help="block edge (default: the CLI's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep", help="folder for the volumes (default: a temporary one)")
    args = parser.parse_args()

    work = Path(args.keep or tempfile.mkdtemp(prefix="bench_scale_"))
    work.mkdir(parents=True, exist_ok=True)
    save_tiny_model(work / "home", args.arch)
    print(f"model {args.arch} (random), {args.threads} threads, work folder {work}")
    print(f"{'Gvoxel':>7} {'shape':>18} {'input GB':>8} {'peak RSS GB':>11} {'RSS/input':>9} "
          f"{'s':>7} {'Mvoxel/s':>8}")
    for size in args.sizes:
        shape = SHAPES[size]
        src, out = work / f"in-{size}.zarr", work / f"out-{size}.zarr"
        if not (src.is_dir() and zarr_io.read_ome_zarr(src).complete):
            make_volume(src, shape)
        shutil.rmtree(out, ignore_errors=True)
        seconds, rss = run_predict(src, out, work / "home", args.tile, args.threads)
        voxels = float(np.prod(shape))
        assert zarr_io.read_ome_zarr(out).complete
        print(f"{voxels / 1e9:7.3f} {'x'.join(map(str, shape)):>18} {voxels / 1e9:8.3f} "
              f"{rss / 1e9:11.3f} {rss / voxels:9.3f} {seconds:7.1f} "
              f"{voxels / 1e6 / seconds:8.2f}", flush=True)
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
