"""Evaluate the shipped pretrained models on held-out data and print their figures.

Usage: ``python benchmarks/eval_pretrained.py [--data DIR] [--threads N]``. The real data
(research use, never shipped) is read from ``$CARDIOSEG_DATA`` or ``shared/data`` beside the
checkout; parts that need it are skipped with a note when it is absent.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from napari_cardioseg.core.models import load_model
from napari_cardioseg.recipes import data, mito, zdisk


def main() -> None:
    """Run both evaluations and print one line per figure."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder = args.data or data.default_data_dir()

    model, card = load_model("zdisk-fluo")
    start = time.perf_counter()
    results = zdisk.evaluate(model, card, folder if folder.is_dir() else None)
    print(f"zdisk-fluo ({time.perf_counter() - start:.0f} s)")
    for key, value in results.items():
        print(f"  {key}: {value}")

    if not (folder / "lucchi_pp_train").is_dir() or not (folder / "emnet_cardiac_sbfsem").is_dir():
        print(f"mito-em: skipped, no Lucchi++ / EM-net data under {folder}")
        return
    model, card = load_model("mito-em")
    start = time.perf_counter()
    whole = (folder / "lucchi_pp_train" / "train_mito.tif").is_file()
    results = mito.evaluate(model, card, folder, whole=whole)
    slab = "slices 140-164 of the whole volume" if whole else "slices 140-164 of the crop"
    print(f"mito-em ({time.perf_counter() - start:.0f} s; Lucchi++ slab: {slab})")
    for key, value in results.items():
        print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
