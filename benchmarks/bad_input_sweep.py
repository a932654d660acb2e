"""Bad-input sweep: run many bad or edge-case inputs through the real ``cardioseg`` CLI.

Every case runs in its own process (forked from one that imported the CLI once; it calls the
``cardioseg`` entry point with the case's arguments, as ``python -m napari_cardioseg`` does), in
its own folder holding a fresh copy of the fixtures (written here from a seeded generator; no
third-party data), and is classified as:

- ``clean error``: non-zero exit with a one-line message, no traceback;
- ``correct handling``: exit 0 and the output passes the case's check;
- ``traceback``: a Python traceback on stderr;
- ``silently wrong``: exit 0 where an error was due, or an output that fails its check;
- ``data loss``: a file that existed before the command was changed or removed;
- ``crash``: killed, timed out, or a non-zero exit without a message.

Usage::

    python benchmarks/bad_input_sweep.py [--src PATH] [--workers 2] [--json results.json]

``--src`` selects the source tree to test (default: this checkout's ``src``), so the same cases
can be run on an older tree for a before/after tally.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("clean error", "correct handling", "traceback", "silently wrong", "data loss", "crash")


@dataclass
class Case:
    """One CLI run: ``argv`` with ``{d}`` for the case folder; ``expect`` is error, ok or either."""

    name: str
    argv: list[str]
    expect: str
    check: Callable[[Path], bool] | None = None


# --- fixtures -------------------------------------------------------------------------------------

def _imagej(path: Path, data: np.ndarray, size: float | None = 0.1, **meta) -> None:
    axes = "ZYX"[-data.ndim:]
    if size is None:  # uncalibrated: no unit, no resolution
        tifffile.imwrite(path, data, imagej=True, metadata={"axes": axes, **meta})
        return
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": axes, "unit": "um", **meta},
                     resolution=(1 / size, 1 / size))


def _ome(path: Path, data: np.ndarray, **meta) -> None:
    tifffile.imwrite(path, data, ome=True, metadata={"axes": "ZYX"[-data.ndim:], **meta})


def _disks(rng: np.random.Generator, shape=(96, 96)) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.uint8)
    for i, (cy, cx) in enumerate(rng.integers(16, shape[0] - 16, (4, 2)), start=1):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 < 64] = i
    image = 40 + 150 * (labels > 0) + rng.normal(0, 10, shape)
    return np.clip(image, 0, 255), labels


def write_fixtures(folder: Path, seed: int) -> None:
    """Every input file the cases use."""
    rng = np.random.default_rng(seed)
    image, labels = _disks(rng)
    base = image / 255.0
    _imagej(folder / "img.tif", image.astype(np.uint8))
    _imagej(folder / "img16.tif", (image * 200).astype(np.uint16))
    _imagej(folder / "imgf32.tif", base.astype(np.float32))
    _ome(folder / "imgf64.tif", base, PhysicalSizeX=0.1, PhysicalSizeY=0.1)
    _imagej(folder / "stack.tif", np.stack([image.astype(np.uint8)] * 4), spacing=0.2)
    _imagej(folder / "labels.tif", labels)
    _imagej(folder / "mask.tif", (labels > 0).astype(np.uint8))
    _imagej(folder / "mask_other.tif", (np.roll(labels, 3, 0) > 0).astype(np.uint8))
    _imagej(folder / "labels_nocal.tif", labels, size=None)
    tifffile.imwrite(folder / "labels_plain.tif", labels)
    # scribbles: background row and object strokes
    scrib = np.zeros(image.shape, np.int64)
    scrib[2, :] = 1
    scrib[labels > 0] = 0
    ys, xs = np.nonzero(labels)
    scrib[ys[::7], xs[::7]] = 2
    _ome(folder / "scrib.tif", scrib.astype(np.int32), PhysicalSizeX=0.1, PhysicalSizeY=0.1)
    for name, value in (("scrib300", 300), ("scrib2e31", 2**31), ("scrib_gap", 5)):
        bad = scrib.copy()
        bad[bad == 2] = value
        bad[4, 4] = 2 if name == "scrib_gap" else bad[4, 4]
        _ome(folder / f"{name}.tif", bad.astype(np.uint32 if value >= 2**31 else np.int32))
    _ome(folder / "scrib_bg_only.tif", np.where(scrib == 2, 0, scrib).astype(np.int32))
    _ome(folder / "scrib_empty.tif", np.zeros(image.shape, np.int32))
    _ome(folder / "scrib_neg.tif", np.where(scrib == 2, -1, scrib).astype(np.int32))
    _ome(folder / "scrib_frac.tif", np.where(scrib == 2, 1.5, scrib).astype(np.float64))
    # extreme values
    signed = base * 2 - 1
    _ome(folder / "f64_huge.tif", signed * 1.7e308, PhysicalSizeX=0.1, PhysicalSizeY=0.1)
    _ome(folder / "f64_signed.tif", signed, PhysicalSizeX=0.1, PhysicalSizeY=0.1)
    _ome(folder / "f64_1e300.tif", signed * 1e300, PhysicalSizeX=0.1, PhysicalSizeY=0.1)
    _ome(folder / "f64_tiny.tif", signed * 1e-300, PhysicalSizeX=0.1, PhysicalSizeY=0.1)
    _imagej(folder / "f32_huge.tif", (signed * 3.3e38).astype(np.float32))
    _imagej(folder / "f32_signed.tif", signed.astype(np.float32))
    nan = base.astype(np.float32)
    nan[10:20, 10:20] = np.nan
    _imagej(folder / "f32_nan.tif", nan)
    _imagej(folder / "f32_allnan.tif", np.full(image.shape, np.nan, np.float32))
    _imagej(folder / "f32_inf.tif", np.where(base > 0.5, np.inf, base).astype(np.float32))
    _imagej(folder / "const.tif", np.full(image.shape, 7, np.uint8))
    # broken files
    full = (folder / "stack.tif").read_bytes()
    (folder / "trunc_ij.tif").write_bytes(full[: len(full) // 2])
    tifffile.imwrite(folder / "pages.tif", np.stack([image.astype(np.uint16)] * 6))
    pages = (folder / "pages.tif").read_bytes()
    (folder / "trunc_pages.tif").write_bytes(pages[: len(pages) // 2])
    (folder / "trunc_header.tif").write_bytes(full[:40])
    tifffile.imwrite(folder / "multi.tif", image.astype(np.uint8))
    tifffile.imwrite(folder / "multi.tif", np.zeros((2, 8, 8), np.uint16), append=True)
    tifffile.imwrite(folder / "zlib.tif", image.astype(np.uint8), compression="zlib")
    raw = bytearray((folder / "zlib.tif").read_bytes())
    with tifffile.TiffFile(folder / "zlib.tif") as tif:
        start, size = tif.pages.first.dataoffsets[0], tif.pages.first.databytecounts[0]
    raw[start + 8 : start + size - 8] = rng.integers(0, 255, size - 16, dtype=np.uint8).tobytes()
    (folder / "zlib_bad.tif").write_bytes(bytes(raw))
    (folder / "empty.tif").write_bytes(b"")
    (folder / "text.tif").write_text("not a tiff\n")
    (folder / "random.tif").write_bytes(rng.integers(0, 255, 5000, dtype=np.uint8).tobytes())
    # pixel sizes
    u8 = image.astype(np.uint8)
    _imagej(folder / "px_9e99.tif", u8, size=9e99)
    _imagej(folder / "px_tiny.tif", u8, size=1e-9)
    _imagej(folder / "stack_negz.tif", np.stack([u8] * 3), spacing=-0.5)
    _imagej(folder / "stack_zeroz.tif", np.stack([u8] * 3), spacing=0.0)
    _imagej(folder / "px_parsec.tif", u8, unit="parsec")
    _imagej(folder / "px_nm.tif", u8, size=100.0, unit="nm")
    for name, x in (("inf", "INF"), ("nan", "NaN"), ("neg", -0.1), ("zero", 0.0), ("big", 9e99),
                    ("text", "abc")):
        _ome(folder / f"ome_{name}.tif", u8.astype(np.int32), PhysicalSizeX=x, PhysicalSizeY=0.1)
    _ome(folder / "ome_unit.tif", u8.astype(np.int32), PhysicalSizeX=0.1, PhysicalSizeY=0.1,
         PhysicalSizeXUnit="furlong", PhysicalSizeYUnit="furlong")
    # dtypes and shapes
    tifffile.imwrite(folder / "f16.tif", base.astype(np.float16))
    tifffile.imwrite(folder / "bool.tif", labels > 0)
    tifffile.imwrite(folder / "int8.tif", (image - 128).astype(np.int8))
    tifffile.imwrite(folder / "int64lab.tif", labels.astype(np.int64))
    tifffile.imwrite(folder / "complex.tif", base.astype(np.complex64))
    tifffile.imwrite(folder / "rgb.tif", np.stack([u8] * 3, -1), photometric="rgb")
    tifffile.imwrite(folder / "one.tif", np.ones((1, 1), np.uint8))
    tifffile.imwrite(folder / "line.tif", np.ones((1, 64), np.uint8))
    _imagej(folder / "time.tif", np.zeros((3, 2, 16, 16), np.uint8), axes="TZYX")
    _imagej(folder / "channels.tif", np.zeros((3, 2, 16, 16), np.uint8), axes="ZCYX")


def write_models(home: Path, seed: int) -> None:
    """A user model folder with one good and several broken cards (copies of zdisk-fluo)."""
    weights = ROOT / "src" / "napari_cardioseg" / "weights"
    folder = home / "models"
    folder.mkdir(parents=True)
    card = json.loads((weights / "zdisk-fluo.json").read_text())
    payload = (weights / "zdisk-fluo.safetensors").read_bytes()

    def save(name: str, changes: dict, data: bytes = b"refused before the weights are read") -> None:
        text = {**card, **changes, "name": name}
        (folder / f"{name}.json").write_text(json.dumps(text))
        (folder / f"{name}.safetensors").write_bytes(data)

    save("good", {}, payload)
    save("lownull", {"normalization": {"method": "percentile", "low": None, "high": 99.8}})
    save("deep", {"spec": {**card["spec"], "arch": "unet2d", "depth": 40}})
    save("classes300", {"spec": {**card["spec"], "classes": 300},
                        "class_names": ["background"] + [f"c{i}" for i in range(299)]})
    save("nohash", {"weights_sha256": ""}, payload)
    save("badhash", {"weights_sha256": "0" * 64}, b"\x00" * 64)
    save("pickle", {"weights_sha256": ""}, b"\x80\x04\x95" + b"\x00" * 64)
    save("nanpixel", {"pixel_size": [float("nan"), 0.1]})
    (folder / "orphan.json").write_text(json.dumps({**card, "name": "orphan"}))
    (folder / "notjson.json").write_text("{")
    (folder / "notjson.safetensors").write_bytes(b"weights")


# --- checks ----------------------------------------------------------------------------------------

def _read(path: Path) -> tuple[np.ndarray, tuple[float, ...] | None]:
    sys.path.insert(0, str(ROOT / "src"))
    from napari_cardioseg.core.io import read_image  # the reader under test is not the judge

    with tifffile.TiffFile(path) as tif:
        data = tif.asarray()
    try:
        image = read_image(path)[0]
        scale = image.scale if image.calibrated else None
    except Exception:  # a check, not product code: any failure means "no scale"
        scale = None
    return data, scale


def exists(*names: str) -> Callable[[Path], bool]:
    return lambda d: all((d / n).is_file() and (d / n).stat().st_size > 0 for n in names)


def same_labels_as(name: str, reference: str, tolerance: float = 0.01) -> Callable[[Path], bool]:
    """The labels in ``name`` equal those predicted for ``reference`` (an unscaled image)."""
    def check(d: Path) -> bool:
        ref = d.parent / "_reference" / reference
        if not (d / name).is_file() or not ref.is_file():
            return False
        a, b = _read(d / name)[0], _read(ref)[0]
        return a.shape == b.shape and float(np.mean(a != b)) <= tolerance
    return check


def scale_is(name: str, scale: tuple[float, ...] | None) -> Callable[[Path], bool]:
    def check(d: Path) -> bool:
        if not (d / name).is_file():
            return False
        got = _read(d / name)[1]
        return got == scale if scale is None or got is None else np.allclose(got, scale)
    return check


def csv_rows(name: str, rows: int) -> Callable[[Path], bool]:
    def check(d: Path) -> bool:
        path = d / name
        return path.is_file() and len(path.read_text().strip().splitlines()) == rows + 1
    return check


def csv_in_pixels(name: str, rows: int) -> Callable[[Path], bool]:
    def check(d: Path) -> bool:
        header = (d / name).read_text().splitlines()[0] if (d / name).is_file() else ""
        return csv_rows(name, rows)(d) and "_px" in header and "_um" not in header
    return check


def text_has(*words: str) -> Callable[[Path], bool]:
    return lambda d: all(w in (d / "_stdout").read_text() for w in words)


# --- cases -----------------------------------------------------------------------------------------

PRED = ["--model", "zdisk-fluo", "--device", "cpu"]
TRAIN = ["--steps", "1", "--device", "cpu", "--arch", "unet2d"]


def cases() -> list[Case]:
    out: list[Case] = []

    def add(name: str, argv: str | list[str], expect: str, check=None) -> None:
        out.append(Case(name, argv.split() if isinstance(argv, str) else argv, expect, check))

    # data loss: an output that is an input, directly or through links
    for how in ("same", "symlink", "hardlink", "dotpath"):
        target = {"same": "{d}/img.tif", "symlink": "{d}/link_img.tif",
                  "hardlink": "{d}/hard_img.tif", "dotpath": "{d}/./img.tif"}[how]
        add(f"enhance -o input ({how})", ["enhance", "{d}/img.tif", "-o", target], "error")
        add(f"predict -o input ({how})", ["predict", "{d}/img.tif", *PRED, "-o", target], "error")
        add(f"predict --prob input ({how})",
            ["predict", "{d}/img.tif", *PRED, "-o", "{d}/l.tif", "--prob", target], "error")
        add(f"measure -o input ({how})",
            ["measure", "{d}/labels.tif", "--kind", "shapes", "--image", "{d}/img.tif", "-o", target],
            "error")
        add(f"evaluate -o input ({how})",
            ["evaluate", "{d}/mask.tif", "{d}/img.tif", "-o", target], "error")
    add("predict -o == --prob", ["predict", "{d}/img.tif", *PRED, "-o", "{d}/l.tif", "--prob",
                                 "{d}/l.tif"], "error")
    add("train -o over its --init model",
        ["train", "--image", "{d}/img.tif", "--labels", "{d}/scrib.tif", "--init",
         "{d}/home/models/good.json", "--steps", "1", "--device", "cpu", "-o",
         "{d}/home/models/good"], "error")
    add("train -o over its image (img.json)",
        ["train", "--image", "{d}/img.json", "--labels", "{d}/scrib.tif", *TRAIN, "-o", "{d}/img"],
        "error")
    add("measure summary over labels", ["measure", "{d}/stats_summary.csv", "--kind", "shapes",
                                        "-o", "{d}/stats.csv"], "error")

    # outputs that cannot be written, all refused before the work
    for cmd in ("enhance", "predict", "measure", "evaluate", "train"):
        for where in ("/proc/x.tif", "/sys/x.tif", "{d}/nofolder/x.tif", "{d}", "/dev/null"):
            base = {
                "enhance": ["enhance", "{d}/img.tif"],
                "predict": ["predict", "{d}/img.tif", *PRED],
                "measure": ["measure", "{d}/labels.tif", "--kind", "shapes"],
                "evaluate": ["evaluate", "{d}/mask.tif", "{d}/mask_other.tif"],
                "train": ["train", "--image", "{d}/img.tif", "--labels", "{d}/scrib.tif", *TRAIN],
            }[cmd]
            add(f"{cmd} -o {where.replace('{d}', 'DIR')}", [*base, "-o", where], "error")
    add("predict --prob nofolder/p.tif",
        ["predict", "{d}/img.tif", *PRED, "-o", "{d}/l.tif", "--prob", "nofolder/p.tif"], "error")
    add("predict --prob /proc/p.tif",
        ["predict", "{d}/img.tif", *PRED, "-o", "{d}/l.tif", "--prob", "/proc/p.tif"], "error")

    # reads
    for name, expect in (("trunc_ij", "error"), ("trunc_pages", "error"), ("trunc_header", "error"),
                         ("multi", "error"), ("zlib_bad", "error"), ("empty", "error"),
                         ("text", "error"), ("random", "error"), ("nothere", "error"),
                         ("complex", "error"), ("rgb", "error"), ("time", "error"),
                         ("channels", "error")):
        add(f"enhance {name}", f"enhance {{d}}/{name}.tif -o {{d}}/out.tif", expect)
        add(f"predict {name}", ["predict", f"{{d}}/{name}.tif", *PRED, "-o", "{d}/out.tif"], expect)
    add("measure trunc_ij", "measure {d}/trunc_ij.tif --kind shapes -o {d}/s.csv", "error")
    add("evaluate multi", "evaluate {d}/multi.tif {d}/multi.tif", "error")

    # pixel sizes: refused on reading, or kept exactly
    for name in ("px_9e99", "px_tiny", "stack_negz", "stack_zeroz", "px_parsec", "ome_inf",
                 "ome_nan", "ome_neg", "ome_zero", "ome_big", "ome_text", "ome_unit"):
        add(f"enhance {name}", f"enhance {{d}}/{name}.tif -o {{d}}/out.tif", "error")
        add(f"measure {name}", f"measure {{d}}/{name}.tif --kind shapes -o {{d}}/s.csv", "error")
    add("enhance nm calibration kept", "enhance {d}/px_nm.tif -o {d}/out.tif", "ok",
        scale_is("out.tif", (0.1, 0.1)))
    add("enhance 3D spacing kept", "enhance {d}/stack.tif -o {d}/out.tif", "ok",
        scale_is("out.tif", (0.2, 0.1, 0.1)))
    add("predict keeps calibration", ["predict", "{d}/img.tif", *PRED, "-o", "{d}/out.tif"], "ok",
        scale_is("out.tif", (0.1, 0.1)))
    add("measure uncalibrated labels (results in px, never µm)",
        "measure {d}/labels_nocal.tif --kind shapes -o {d}/s.csv", "ok", csv_in_pixels("s.csv", 4))
    add("measure --pixel-size given", "measure {d}/labels_nocal.tif --kind shapes --pixel-size "
        "0.1 0.1 -o {d}/s.csv", "ok", csv_rows("s.csv", 4))
    add("measure calibrated", "measure {d}/labels.tif --kind shapes -o {d}/s.csv", "ok",
        csv_rows("s.csv", 4))
    for value in ("0", "nan", "inf", "-1", "9e99"):
        add(f"measure --pixel-size {value}", f"measure {{d}}/labels.tif --kind shapes --pixel-size "
            f"{value} 0.1 -o {{d}}/s.csv", "error")

    # extreme float values: same prediction as the image scaled down
    add("predict f64 signed (reference)", ["predict", "{d}/f64_signed.tif", *PRED, "-o",
                                           "{d}/out.tif"], "ok", exists("out.tif"))
    for name in ("f64_huge", "f64_1e300", "f64_tiny"):
        add(f"predict {name}", ["predict", f"{{d}}/{name}.tif", *PRED, "-o", "{d}/out.tif"], "ok",
            same_labels_as("out.tif", "f64_signed.tif"))
    add("predict f32_huge", ["predict", "{d}/f32_huge.tif", *PRED, "-o", "{d}/out.tif"], "ok",
        same_labels_as("out.tif", "f64_signed.tif"))
    for name in ("f32_nan", "f32_inf", "const", "img16", "imgf32", "imgf64", "stack", "bool",
                 "int8", "f16", "one", "line"):
        add(f"predict {name}", ["predict", f"{{d}}/{name}.tif", *PRED, "-o", "{d}/out.tif"],
            "either", exists("out.tif"))
    add("predict f32_allnan", ["predict", "{d}/f32_allnan.tif", *PRED, "-o", "{d}/out.tif"], "error")
    for name in ("f64_huge", "f32_huge", "f32_nan", "const", "img16", "int8", "bool"):
        add(f"enhance {name}", f"enhance {{d}}/{name}.tif -o {{d}}/out.tif", "either",
            exists("out.tif"))

    # arguments
    for value in ("nan", "inf", "-inf", "0", "-5", "soon"):
        add(f"train --time-budget {value}", ["train", "--image", "{d}/img.tif", "--labels",
                                             "{d}/scrib.tif", "--device", "cpu", "--time-budget",
                                             value, "-o", "{d}/m"], "error")
    for value in ("-1", str(2**64), "1.5", "x"):
        add(f"train --seed {value}", ["train", "--image", "{d}/img.tif", "--labels", "{d}/scrib.tif",
                                      *TRAIN, "--seed", value, "-o", "{d}/m"], "error")
    for value in ("0", "-3"):
        add(f"train --steps {value}", ["train", "--image", "{d}/img.tif", "--labels",
                                       "{d}/scrib.tif", "--device", "cpu", "--steps", value, "-o",
                                       "{d}/m"], "error")
    for value in ("", ".", "..", "{d}", "nope", "{d}/img.tif"):
        add(f"predict --model {value!r}".replace("{d}", "DIR"),
            ["predict", "{d}/img.tif", "--model", value, "-o", "{d}/out.tif"], "error")
        add(f"train --init {value!r}".replace("{d}", "DIR"),
            ["train", "--image", "{d}/img.tif", "--labels", "{d}/scrib.tif", "--init", value,
             "--steps", "1", "-o", "{d}/m"], "error")
    for flag, value in (("--tile", "0"), ("--tile", "-8"), ("--overlap", "2"), ("--overlap", "nan"),
                        ("--batch", "0"), ("--device", "tpu")):
        add(f"predict {flag} {value}", ["predict", "{d}/img.tif", *PRED, flag, value, "-o",
                                        "{d}/out.tif"], "error")
    for args in ("--method bogus", "--alpha 0", "--alpha nan", "--low 50 --high 10",
                 "--n-sigma -1"):
        add(f"enhance {args}", f"enhance {{d}}/img.tif {args} -o {{d}}/out.tif", "error")
    for args in ("--min-size -1", "--connectivity 5", "--class -1", "--period-range 4 1"):
        add(f"measure {args}", f"measure {{d}}/labels.tif --kind shapes {args} -o {{d}}/s.csv",
            "error")
    add("evaluate shape mismatch", "evaluate {d}/mask.tif {d}/stack.tif", "error")
    add("evaluate ok", "evaluate {d}/mask.tif {d}/mask_other.tif -o {d}/e.csv", "ok",
        exists("e.csv"))

    # scribbles
    for name in ("scrib300", "scrib2e31", "scrib_gap", "scrib_bg_only", "scrib_empty", "scrib_neg",
                 "scrib_frac"):
        add(f"train {name}", ["train", "--image", "{d}/img.tif", "--labels", f"{{d}}/{name}.tif",
                              *TRAIN, "-o", "{d}/m"], "error")
    add("train ok", ["train", "--image", "{d}/img.tif", "--labels", "{d}/scrib.tif", *TRAIN, "-o",
                     "{d}/m.v2"], "ok", exists("m.v2.json", "m.v2.safetensors"))
    add("train fine-tune ok", ["train", "--image", "{d}/img.tif", "--labels", "{d}/scrib.tif",
                               "--init", "zdisk-fluo", "--steps", "1", "--device", "cpu", "-o",
                               "{d}/m"], "ok", exists("m.json", "m.safetensors"))

    # model cards
    add("models with broken cards", "models", "ok", text_has("good", "zdisk-fluo", "broken:"))
    for name in ("lownull", "deep", "classes300", "badhash", "pickle", "nanpixel", "orphan",
                 "notjson"):
        add(f"predict --model {name}", ["predict", "{d}/img.tif", "--model", name, "--device",
                                        "cpu", "-o", "{d}/out.tif"], "error")
    add("predict --model good", ["predict", "{d}/img.tif", "--model", "good", "--device", "cpu",
                                 "-o", "{d}/out.tif"], "ok", exists("out.tif"))
    add("predict --model nohash (warns)", ["predict", "{d}/img.tif", "--model", "nohash",
                                           "--device", "cpu", "-o", "{d}/out.tif"], "either",
        exists("out.tif"))
    add("predict --model nope lists models", ["predict", "{d}/img.tif", "--model", "nope", "-o",
                                              "{d}/out.tif"], "error")
    return out


# --- running ---------------------------------------------------------------------------------------

def _hashes(folder: Path) -> dict[str, str]:
    """Content hash per file (inode, size and time for big files, which are never rewritten)."""
    found = {}
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            stat = path.stat()
            found[str(path.relative_to(folder))] = (
                f"{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}" if stat.st_size > 1 << 20
                else hashlib.sha256(path.read_bytes()).hexdigest())
    return found


def _prepare(folder: Path, fixtures: Path) -> None:
    # hard links: cheap, and every write under test replaces files instead of rewriting them
    shutil.copytree(fixtures, folder, copy_function=os.link)
    (folder / "link_img.tif").symlink_to(folder / "img.tif")
    os.link(folder / "img.tif", folder / "hard_img.tif")
    shutil.copy(folder / "img.tif", folder / "img.json")
    (folder / "stats_summary.csv").write_text("objects\n3\n")


def classify(case: Case, code: int | None, err: str, lost: list[str], ok: bool) -> str:
    if lost:
        return "data loss"
    if "Traceback (most recent call last)" in err:
        return "traceback"
    if code is None or code < 0 or code > 2:
        return "crash"
    if code == 0:
        return "correct handling" if case.expect != "error" and ok else "silently wrong"
    lines = [line for line in err.strip().splitlines() if "error:" in line]
    return "clean error" if lines else "crash"


def _child(argv: list[str], folder: Path) -> None:
    """In a forked process: run the CLI like ``python -m napari_cardioseg ARGV`` would."""
    os.chdir(folder)
    os.environ["CARDIOSEG_HOME"] = str(folder / "home")
    for fd, name in ((1, "_stdout"), (2, "_stderr")):
        handle = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(handle, fd)
        os.close(handle)
    code = 1
    try:
        from napari_cardioseg.cli import main as cli_main

        code = int(cli_main(argv) or 0)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # what the interpreter would print for an uncaught exception
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _start(case: Case, index: int, work: Path, fixtures: Path) -> tuple[int, Path, dict, float]:
    folder = work / f"case{index:03d}"
    _prepare(folder, fixtures)
    before = _hashes(folder)
    argv = [a.replace("{d}", str(folder)) for a in case.argv]
    pid = os.fork()
    if pid == 0:
        _child(argv, folder)
    return pid, folder, before, time.perf_counter()


def _finish(case: Case, folder: Path, before: dict, code: int | None, start: float) -> dict:
    err = (folder / "_stderr").read_text(errors="replace") if code is not None else "timeout"
    after = _hashes(folder)
    lost = [name for name, digest in before.items() if after.get(name) != digest]
    ok = bool(case.check(folder)) if case.check and code == 0 else code == 0
    outcome = classify(case, code, err, lost, ok)
    message = [line for line in err.strip().splitlines() if line.strip()]
    return {"case": case.name, "expect": case.expect, "exit": code, "outcome": outcome,
            "lost": lost, "seconds": round(time.perf_counter() - start, 2),
            "message": message[-1][:300] if message else ""}


def run_all(todo: list[Case], work: Path, fixtures: Path, workers: int, timeout: float) -> list[dict]:
    """Fork one process per case (the CLI is imported once, before forking), ``workers`` at once."""
    results: dict[int, dict] = {}
    running: dict[int, tuple[int, Path, dict, float]] = {}
    queue = list(enumerate(todo))
    while queue or running:
        while queue and len(running) < workers:
            index, case = queue.pop(0)
            running[index] = _start(case, index, work, fixtures)
        time.sleep(0.02)
        for index, (pid, folder, before, start) in list(running.items()):
            done, status = os.waitpid(pid, os.WNOHANG)
            code: int | None
            if done == 0:
                if time.perf_counter() - start < timeout:
                    continue
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                code = None
            else:
                code = os.waitstatus_to_exitcode(status)
            results[index] = _finish(todo[index], folder, before, code, start)
            del running[index]
    return [results[i] for i in range(len(todo))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=ROOT / "src", help="source tree to test")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--json", type=Path, help="write every case's result here")
    parser.add_argument("--only", help="run only cases whose name contains this text")
    args = parser.parse_args()
    src = args.src.resolve()
    if os.environ.get("SWEEP_SRC") != str(src):  # run under the tree being tested
        env = {**os.environ, "SWEEP_SRC": str(src), "PYTHONPATH": str(src)}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    sys.path.insert(0, str(src))
    import importlib

    import napari_cardioseg.cli as cli  # imported once, with what the subcommands use; cases fork

    cli.build_parser()
    for module in ("contrast", "measure", "metrics", "models", "predict", "train"):
        importlib.import_module(f"napari_cardioseg.core.{module}")

    all_cases = [c for c in cases() if not args.only or args.only in c.name]
    with tempfile.TemporaryDirectory(prefix="cardioseg-sweep-") as tmp:
        work = Path(tmp)
        fixtures = work / "fixtures"
        fixtures.mkdir()
        write_fixtures(fixtures, args.seed)
        write_models(fixtures / "home", args.seed)
        (work / "_reference").mkdir()
        reference = Case("reference", ["predict", "{d}/f64_signed.tif", *PRED, "-o",
                                       str(work / "_reference" / "f64_signed.tif")], "ok")
        (first,) = run_all([reference], work / "_ref_run", fixtures, 1, args.timeout)
        if first["outcome"] != "correct handling":
            raise SystemExit(f"the reference prediction failed: {first}")
        results = run_all(all_cases, work, fixtures, args.workers, args.timeout)
    counts = collections.Counter(r["outcome"] for r in results)
    for r in results:
        if r["outcome"] not in ("clean error", "correct handling") or (
                r["expect"] == "ok" and r["outcome"] == "clean error"):
            print(f"{r['outcome']:>16}  {r['case']}  (exit {r['exit']}) {r['message']}")
    print(f"\n{len(results)} cases, src={src}")
    for name in CLASSES:
        print(f"  {name:<17} {counts.get(name, 0)}")
    if args.json:
        args.json.write_text(json.dumps({"counts": dict(counts), "results": results}, indent=1))


if __name__ == "__main__":
    main()
