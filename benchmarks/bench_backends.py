"""CPU inference back ends on the shipped models: throughput vs eager fp32 and Dice change.

Same normalised 256² tiles, one process, interleaved repeats (the machine is shared, so only the
ratios against eager measured alongside are meaningful). Options: eager fp32 (reference),
TorchScript (trace + freeze), ``torch.compile`` (skipped when it fails), ONNX Runtime fp32,
ONNX Runtime int8 (static QDQ quantisation calibrated on the plugin's sample images,
:mod:`core.quantize`), bf16 autocast, int8 dynamic quantisation (``quantize_dynamic`` covers
Linear/LSTM layers only).
Dice change: foreground Dice of each option against the truth minus eager's, where truth exists;
agreement: Dice of each option's labels against eager's labels.

Usage: ``python benchmarks/bench_backends.py [--repeats 5] [--no-compile]``; the shared real data
in ../shared/data is used when present.

``--end-to-end`` instead times what ``cardioseg predict IN -o OUT.tif`` does after start-up
(:func:`core.one_file.predict_file`: read, load the model, predict, write) with ``--backend auto``
(int8 for the shipped models) against ``eager`` and ``onnx`` (float32), alternating in one
process after a warm-up run that fills the ONNX cache, best of ``--repeats``, on the plugin's
samples and, when present, real images of every size at hand: the Z-disk cells (632×424,
1028×1668), 16 Lucchi++ slices (16×768×1024) and the EM-net test tiles.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile
import torch

from napari_cardioseg._sample_data import em_sample, zdisk_sample
from napari_cardioseg.core import backends
from napari_cardioseg.core.models import ModelCard, load_model
from napari_cardioseg.core.normalize import apply_normalization, fit_normalization

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if not DATA.is_dir():
    DATA = Path("/work/shared/data")
TILE = 256


def tiles(image: np.ndarray, truth: np.ndarray | None, card: ModelCard, count: int):
    """Up to ``count`` normalised tiles (and truth tiles) on a grid over a 2D image."""
    fitted = fit_normalization(image, card.normalization)
    norm = apply_normalization(image, fitted)
    out, gts = [], []
    for y in range(0, image.shape[0] - TILE + 1, TILE):
        for x in range(0, image.shape[1] - TILE + 1, TILE):
            out.append(norm[y : y + TILE, x : x + TILE])
            gts.append(None if truth is None else truth[y : y + TILE, x : x + TILE] > 0)
    return out[:count], gts[:count]


def datasets(name: str, card: ModelCard) -> dict[str, tuple[list, list]]:
    """Tiles per data set: sample data (exact truth) and shared real data."""
    sets: dict[str, tuple[list, list]] = {}
    if name == "mito-em":
        img, lab = em_sample()[0][0], em_sample()[1][0]
        t = [tiles(img[z], lab[z], card, 1) for z in range(4, 32, 7)]
        sets["em_sample (synthetic, truth)"] = ([a for s in t for a in s[0]], [g for s in t for g in s[1]])
        lucchi = DATA / "lucchi_pp_train"
        if lucchi.is_dir():
            img = tifffile.imread(lucchi / "train_crop_image.tif")
            lab = tifffile.imread(lucchi / "train_crop_mito.tif")
            t = [tiles(img[z], lab[z], card, 2) for z in (145, 155, 164)]
            sets["Lucchi++ held-out slices (truth)"] = ([a for s in t for a in s[0]],
                                                        [g for s in t for g in s[1]])
        emnet = DATA / "emnet_cardiac_sbfsem"
        if emnet.is_dir():
            img = tifffile.imread(emnet / "train_image.tif")
            lab = tifffile.imread(emnet / "train_mito.tif")
            t = [tiles(img[i], lab[i], card, 2) for i in (4, 9, 14, 19)]
            sets["EM-net held-out tiles (truth)"] = ([a for s in t for a in s[0]],
                                                     [g for s in t for g in s[1]])
    else:
        img, lab = zdisk_sample()[0][0], zdisk_sample()[1][0]
        sets["zdisk_sample (synthetic, truth)"] = tiles(np.asarray(img), np.asarray(lab), card, 4)
        raw = DATA / "zdisk_fluor" / "sgi_sample_raw.tif"
        if raw.is_file():
            img = np.squeeze(tifffile.imread(raw))
            img = img if img.ndim == 2 else img.reshape(-1, *img.shape[-2:])[0]
            sets["real hiPSC cell (vs eager)"] = tiles(img.astype(np.float32), None, card, 6)
    return sets


def options(model: torch.nn.Module, card: ModelCard, compile_: bool) -> dict[str, Callable]:
    """Name → runner ``(B, H, W)`` → ``(B, C, H, W)`` probabilities; failures are reported."""
    runners: dict[str, Callable] = {"eager fp32": backends.eager_runner(model, card)}
    makers: dict[str, Callable[[], Callable]] = {
        "torchscript": lambda: backends.torchscript_runner(model, card),
        "onnxruntime fp32": lambda: backends.onnx_runner(model, card),
        "onnxruntime int8 (static)": lambda: backends.onnx_runner(model, card, int8=True),
        "bf16 autocast": lambda: _bf16(model),
        "int8 dynamic": lambda: _int8(model),
    }
    if compile_:
        makers["torch.compile"] = lambda: _compiled(model)
    for name, make in makers.items():
        try:
            runners[name] = make()
        except Exception as exc:  # report and go on: a losing option is a result too
            print(f"  {name}: unavailable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
    return runners


def _wrap(net: Callable, autocast: bool = False) -> Callable:
    def run(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch[:, None])).to(memory_format=torch.channels_last)
        with torch.inference_mode():
            if autocast:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    y = net(x)
            else:
                y = net(x)
            return torch.softmax(y.float(), dim=1).numpy()
    return run


def _bf16(model: torch.nn.Module) -> Callable:
    return _wrap(model, autocast=True)


def _int8(model: torch.nn.Module) -> Callable:
    import copy

    quantized = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).eval(), dtype=torch.qint8)
    return _wrap(quantized)


def _compiled(model: torch.nn.Module) -> Callable:
    compiled = torch.compile(model)
    run = _wrap(compiled)
    run(np.zeros((1, TILE, TILE), np.float32))  # compile now; raises here when unsupported
    return run


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return float(2 * np.logical_and(a, b).sum() / total) if total else 1.0


def bench_model(name: str, repeats: int, compile_: bool, batch: int) -> list[tuple]:
    model, card = load_model(name)
    print(f"{name}: building back ends")
    runners = options(model, card, compile_)
    sets = datasets(name, card)
    timing = next(iter(sets.values()))[0][:batch]
    timing = np.stack((timing * batch)[:batch])
    seconds: dict[str, list[float]] = {k: [] for k in runners}
    for fn in runners.values():  # warm-up
        fn(timing)
    for _ in range(repeats):  # interleaved
        for key, fn in runners.items():
            start = time.perf_counter()
            fn(timing)
            seconds[key].append(time.perf_counter() - start)
    ref_time = statistics.median(seconds["eager fp32"])
    eager_labels = {k: runners["eager fp32"](np.stack(xs)).argmax(1) > 0 for k, (xs, _) in sets.items()}
    rows = []
    for key, fn in runners.items():
        ratio = ref_time / statistics.median(seconds[key])
        changes = []
        for set_name, (xs, gts) in sets.items():
            eager = eager_labels[set_name]
            ours = fn(np.stack(xs)).argmax(1) > 0
            agree = dice(ours, eager)
            if gts[0] is not None:
                gt = np.stack(gts)
                delta = dice(ours, gt) - dice(eager, gt)
                changes.append(f"{set_name}: ΔDice {delta:+.4f} (agree {agree:.4f})")
            else:
                changes.append(f"{set_name}: agree {agree:.4f}")
        mpx = timing.size / 1e6 / statistics.median(seconds[key])
        rows.append((name, key, ratio, mpx, "; ".join(changes)))
    return rows


def end_to_end_inputs(folder: Path) -> list[tuple[str, str, Path]]:
    """``(label, model, tiff)`` of every input for ``--end-to-end``, written into ``folder``."""
    found: list[tuple[str, str, np.ndarray]] = [
        ("EM sample 32×256²", "mito-em", em_sample()[0][0]),
        ("Z-disk sample 512²", "zdisk-fluo", zdisk_sample()[0][0])]
    zd, lu, em = DATA / "zdisk_fluor", DATA / "lucchi_pp_train", DATA / "emnet_cardiac_sbfsem"
    if (zd / "sgi_sample_raw.tif").exists():
        found.append(("real Z-disk cell 632×424", "zdisk-fluo", tifffile.imread(zd / "sgi_sample_raw.tif")))
    if (zd / "sg_sample_7_hiba_branch.tif").exists():
        found.append(("real Z-disk cell 1028×1668", "zdisk-fluo",
                      tifffile.imread(zd / "sg_sample_7_hiba_branch.tif")))
    if (lu / "train_image_part3.tif").exists():
        found.append(("Lucchi++ 16×768×1024", "mito-em", tifffile.imread(lu / "train_image_part3.tif")[:16]))
    if (em / "test_image_unlabeled.tif").exists():
        tiles_ = tifffile.imread(em / "test_image_unlabeled.tif")
        found.append((f"EM-net test tiles {'×'.join(map(str, tiles_.shape))}", "mito-em", tiles_))
    out = []
    for i, (label, model, image) in enumerate(found):
        path = folder / f"in{i}.tif"
        tifffile.imwrite(path, image, photometric="minisblack")  # a 3- or 4-slice stack is not RGB
        out.append((label, model, path))
    return out


def end_to_end(repeats: int) -> None:
    """Print the speed-up of :func:`core.one_file.predict_file` per input against eager before.

    "before" is eager PyTorch with the automatic tiles of the previous release
    (``AUTO_STRETCH = 1``); ``eager`` and ``auto`` use today's tiles.
    """
    import tempfile

    from napari_cardioseg.core import tiling
    from napari_cardioseg.core.one_file import predict_file
    from napari_cardioseg.core.progress import drain

    stretch = tiling.AUTO_STRETCH

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print("\n| input | model | before s | eager s | onnx s | auto s | auto vs before | auto vs eager | "
              "auto vs onnx | label Dice auto vs eager | pixels auto = before |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|")
        for label, model, path in end_to_end_inputs(folder):
            best = {"before": float("inf"), "eager": float("inf"), "onnx": float("inf"),
                    "auto": float("inf")}
            labels = {}
            drain(predict_file(path, folder / "warm.tif", model=model, backend="auto"))
            for _ in range(repeats):
                for key in best:
                    out = folder / f"{key}.tif"
                    out.unlink(missing_ok=True)
                    tiling.AUTO_STRETCH = 1.0 if key == "before" else stretch
                    t0 = time.perf_counter()
                    drain(predict_file(path, out, model=model,
                                       backend="eager" if key == "before" else key))
                    best[key] = min(best[key], time.perf_counter() - t0)
                    labels[key] = tifffile.imread(out)
            tiling.AUTO_STRETCH = stretch
            same = dice(labels["eager"] > 0, labels["auto"] > 0)
            agree = float(np.mean(labels["before"] == labels["auto"]))
            print(f"| {label} | {model} | {best['before']:.2f} | {best['eager']:.2f} | "
                  f"{best['onnx']:.2f} | {best['auto']:.2f} | {best['before'] / best['auto']:.2f}× | "
                  f"{best['eager'] / best['auto']:.2f}× | {best['onnx'] / best['auto']:.2f}× | "
                  f"{same:.4f} | {agree:.2%} |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--end-to-end", action="store_true",
                        help="time predict_file (auto vs eager) instead of single tiles")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--models", nargs="+", default=["mito-em", "zdisk-fluo"])
    args = parser.parse_args()
    if args.end_to_end:
        end_to_end(args.repeats)
        return 0
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, tile {TILE}², batch {args.batch}")
    header = ("\n| model | option | throughput vs eager | Mpx/s | Dice change vs eager fp32 |\n"
              "|---|---|---|---|---|")
    for name in args.models:
        rows = bench_model(name, args.repeats, not args.no_compile, args.batch)
        print(header)
        for model, key, ratio, mpx, changes in rows:
            print(f"| {model} | {key} | {ratio:.2f}× | {mpx:.2f} | {changes} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
