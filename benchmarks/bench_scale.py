"""Peak memory of streaming ``cardioseg predict`` / ``measure`` (OME-Zarr in) against volume size.

Not a test. For each size a synthetic uint8 ``ZYX`` volume (random blobs, written slab by slab)
is saved as OME-Zarr and ``cardioseg predict IN.zarr --model tiny -o OUT.zarr`` runs in a child
process with a small random model (a 2D ``unet2d`` slice by slice, or ``--arch unet3d``). The
child's peak resident set size comes from ``os.wait4``; the goal is a flat peak, at most 2 GB at
every size. Also reported: peak RSS per input byte and throughput in Mvoxel/s.
Run: ``python benchmarks/bench_scale.py [--sizes 0.06 0.25 1 4] [--arch unet3d] [--keep DIR]``.
``--tiff`` runs TIFF in, TIFF out instead (the input written page by page from the OME-Zarr;
inputs over 32 M voxels stream through a hidden store, :mod:`core.stream_tiff`).

``--measure`` instead writes a mask of random ellipsoids (many crossing chunk borders) and runs
``cardioseg measure IN.zarr --kind shapes`` blockwise and, for sizes up to ``--memory-max``
Gvoxel, in memory (``--no-blockwise``), checking that both give the same CSV:
``python benchmarks/bench_scale.py --measure --sizes 0.06 0.5 [--memory-max 0.06]``.
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
import tifffile
import torch

from napari_cardioseg.core import models, nets, zarr_io
from napari_cardioseg.core.writes import write_tiff_blocks

#: Gvoxel -> ZYX shape
SHAPES = {0.06: (64, 1024, 1024), 0.25: (256, 1024, 1024), 0.5: (512, 1024, 1024),
          1.0: (256, 2048, 2048), 4.0: (1024, 2048, 2048)}
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


def make_mask(path: Path, shape: tuple[int, ...], seed: int = 0,
              voxels_per_object: int = 2**18) -> int:
    """A uint8 OME-Zarr mask of random ellipsoids (radii 3-15 voxels), written slab by slab.

    Returns the number of ellipsoids drawn (touching ones merge into one object).
    """
    rng = np.random.default_rng(seed)
    count = int(np.prod(shape) // voxels_per_object)
    centres = rng.uniform(0, 1, (count, 3)) * np.array(shape)
    radii = rng.uniform(3, 15, (count, 3))
    group = zarr_io.create_ome_zarr(path, shape, np.uint8, (0.2, 0.1, 0.1),
                                    chunks=(32, 128, 128), levels=1)
    for z0 in range(0, shape[0], 32):
        slab = np.zeros((min(32, shape[0] - z0), *shape[1:]), np.uint8)
        near = np.abs(centres[:, 0] - (z0 + slab.shape[0] / 2)) < radii[:, 0] + slab.shape[0]
        for c, r in zip(centres[near], radii[near], strict=True):
            lo = np.maximum(np.floor(c - r).astype(int), [z0, 0, 0])
            hi = np.minimum(np.ceil(c + r).astype(int) + 1, [z0 + slab.shape[0], *shape[1:]])
            if np.any(hi <= lo):
                continue
            zz, yy, xx = np.ogrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
            inside = ((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + (
                (xx - c[2]) / r[2]) ** 2 <= 1
            slab[lo[0] - z0:hi[0] - z0, lo[1]:hi[1], lo[2]:hi[2]] |= inside.astype(np.uint8)
        group["0"][z0 : z0 + slab.shape[0]] = slab
    zarr_io.mark_complete(group)
    return count


def run_child(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Seconds and peak RSS (bytes) of one child process."""
    start = time.perf_counter()
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{cmd[3]} failed: {child.stderr.read().decode()[-2000:]}")
    child.stderr.close()
    return seconds, usage.ru_maxrss * 1024.0  # Linux reports KiB


#: runs ``cardioseg ARGS`` and reports the process's own peak RSS (VmHWM): ``wait4``'s maxrss
#: of a child also counts the memory of this (forked) parent, which has imported torch
_PEAK_WRAPPER = (
    "import sys\n"
    "from napari_cardioseg.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "kib = next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM'))\n"
    "sys.stderr.write(f'VmHWM {kib}\\n')\n"
    "sys.exit(code)\n"
)


def run_cli_peak(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Seconds and the child's own peak RSS (bytes) of one ``cardioseg`` command (Linux)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _PEAK_WRAPPER, *args], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{args[0]} failed: {done.stderr[-2000:]}")
    kib = next(line.split()[1] for line in done.stderr.splitlines() if line.startswith("VmHWM"))
    return seconds, float(kib) * 1024.0


def bench_measure(work: Path, sizes: list[float], memory_max: float, threads: int) -> None:
    """Blockwise against in-memory ``cardioseg measure --kind shapes`` on random ellipsoids."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    print(f"{'Gvoxel':>7} {'shape':>16} {'objects':>7} {'mode':>9} {'peak RSS GB':>11} "
          f"{'RSS/voxel':>9} {'s':>7}")
    for size in sizes:
        shape = SHAPES[size]
        src = work / f"mask-{size}.zarr"
        if not (src.is_dir() and zarr_io.read_ome_zarr(src).complete):
            make_mask(src, shape)
        voxels = float(np.prod(shape))
        tables = {}
        for mode in ("blockwise", "in-memory"):
            if mode == "in-memory" and size > memory_max:
                continue
            out = work / f"stats-{size}-{mode}.csv"
            cmd = ["measure", str(src), "--kind", "shapes", "-o", str(out),
                   "--blockwise" if mode == "blockwise" else "--no-blockwise"]
            seconds, rss = run_cli_peak(cmd, env)
            tables[mode] = out.read_text()
            print(f"{voxels / 1e9:7.3f} {'x'.join(map(str, shape)):>16} "
                  f"{len(tables[mode].splitlines()) - 1:7d} {mode:>9} {rss / 1e9:11.3f} "
                  f"{rss / voxels:9.2f} {seconds:7.1f}", flush=True)
        if len(tables) == 2:
            print(f"        same per-object CSV: {tables['blockwise'] == tables['in-memory']}")


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
    return run_child(cmd, env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.06, 0.25],
                        choices=sorted(SHAPES), help="Gvoxel (default: 0.06 0.25)")
    parser.add_argument("--arch", default="unet2d", choices=sorted(SPECS))
    parser.add_argument("--tile", type=int, help="block edge (default: the CLI's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep", help="folder for the volumes (default: a temporary one)")
    parser.add_argument("--tiff", action="store_true",
                        help="TIFF input and TIFF output instead of OME-Zarr")
    parser.add_argument("--measure", action="store_true",
                        help="benchmark cardioseg measure (blockwise and in memory) instead")
    parser.add_argument("--memory-max", type=float, default=0.06,
                        help="largest size (Gvoxel) also measured in memory (default 0.06)")
    args = parser.parse_args()

    work = Path(args.keep or tempfile.mkdtemp(prefix="bench_scale_"))
    work.mkdir(parents=True, exist_ok=True)
    if args.measure:
        bench_measure(work, args.sizes, args.memory_max, args.threads)
        if not args.keep:
            shutil.rmtree(work)
        return
    save_tiny_model(work / "home", args.arch)
    print(f"model {args.arch} (random), {args.threads} threads, work folder {work}")
    print(f"{'Gvoxel':>7} {'shape':>18} {'input GB':>8} {'peak RSS GB':>11} {'RSS/input':>9} "
          f"{'s':>7} {'Mvoxel/s':>8}")
    for size in args.sizes:
        shape = SHAPES[size]
        src, out = work / f"in-{size}.zarr", work / f"out-{size}.zarr"
        if not (src.is_dir() and zarr_io.read_ome_zarr(src).complete):
            make_volume(src, shape)
        if args.tiff:
            stored = zarr_io.read_ome_zarr(src)
            src, out = work / f"in-{size}.tif", work / f"out-{size}.tif"
            if not src.is_file():
                write_tiff_blocks(src, stored.data, stored.scale)
            out.unlink(missing_ok=True)
        shutil.rmtree(out, ignore_errors=True)
        seconds, rss = run_predict(src, out, work / "home", args.tile, args.threads)
        voxels = float(np.prod(shape))
        if args.tiff:
            with tifffile.TiffFile(out) as written:
                assert written.series[0].shape == shape
        else:
            assert zarr_io.read_ome_zarr(out).complete
        print(f"{voxels / 1e9:7.3f} {'x'.join(map(str, shape)):>18} {voxels / 1e9:8.3f} "
              f"{rss / 1e9:11.3f} {rss / voxels:9.3f} {seconds:7.1f} "
              f"{voxels / 1e6 / seconds:8.2f}", flush=True)
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
