"""Pixel/voxel-wise segmentation metrics per class, with an optional ignore mask.

For a class ``c``: TP, FP, FN, TN count pixels (outside the ignore mask) by whether the
prediction and the ground truth equal ``c``. Dice = 2TP / (2TP + FP + FN), Jaccard =
TP / (TP + FP + FN), precision = TP / (TP + FP), recall (sensitivity) = TP / (TP + FN),
specificity = TN / (TN + FP). A ratio with a zero denominator is NaN (undefined).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import CardiosegError
from .table import Table
from .validate import check_labels

METRICS = ("dice", "jaccard", "precision", "recall", "specificity")
COUNTS = ("tp", "fp", "fn", "tn")


def _ratio(num: int, den: int) -> float:
    return float(num / den) if den > 0 else float("nan")


def confusion(pred: np.ndarray, gt: np.ndarray, cls: int,
              valid: np.ndarray | None = None) -> dict[str, int]:
    """TP, FP, FN and TN counts of class ``cls`` over the ``valid`` pixels."""
    p, g = pred == cls, gt == cls
    if valid is not None:
        p, g = p[valid], g[valid]
    tp = int(np.count_nonzero(p & g))
    fp = int(np.count_nonzero(p & ~g))
    fn = int(np.count_nonzero(~p & g))
    return {"tp": tp, "fp": fp, "fn": fn, "tn": int(p.size) - tp - fp - fn}


def scores(counts: dict[str, int]) -> dict[str, float]:
    """Dice, Jaccard, precision, recall and specificity from confusion counts."""
    tp, fp, fn, tn = (counts[k] for k in COUNTS)
    return {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn),
        "jaccard": _ratio(tp, tp + fp + fn),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
    }


def evaluate(
    pred: np.ndarray,
    gt: np.ndarray,
    ignore: np.ndarray | None = None,
    classes: Sequence[int] | None = None,
    binary: bool = False,
) -> Table:
    """Compute the metrics table: one row per class plus a ``mean`` row (class -1).

    The ``mean`` row has the summed counts and the metrics averaged over the classes (NaN
    entries left out).

    Parameters
    ----------
    pred, gt : numpy.ndarray
        Predicted and ground-truth labels (0 = background), same 2D/3D shape.
    ignore : numpy.ndarray, optional
        Nonzero pixels are left out of every count (uncertain ground truth).
    classes : sequence of int, optional
        Classes to report; default every nonzero value found in either image.
    binary : bool
        Compare foreground (> 0) against background instead of class by class (for instance
        label images).
    """
    pred = check_labels(pred, "prediction")
    gt = check_labels(gt, "ground truth")
    if pred.shape != gt.shape:
        raise CardiosegError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}")
    valid = None
    if ignore is not None:
        ignore = np.asarray(ignore)
        if ignore.shape != gt.shape:
            raise CardiosegError(f"ignore mask shape {ignore.shape} differs from {gt.shape}")
        valid = ignore == 0
        if not valid.any():
            raise CardiosegError("the ignore mask covers the whole image; nothing to evaluate")
    if binary:
        pred, gt = (pred > 0).astype(np.int64), (gt > 0).astype(np.int64)
    elif classes is None:
        _check_shared_values(pred, gt)
    if classes is None:
        found = np.union1d(np.unique(pred), np.unique(gt))
        classes = [int(c) for c in found if c > 0] or [1]
    names = ["class", *COUNTS, *METRICS]
    rows = []
    for cls in classes:
        counts = confusion(pred, gt, int(cls), valid)
        rows.append({"class": int(cls), **counts, **scores(counts)})
    mean = {"class": -1, **{k: sum(r[k] for r in rows) for k in COUNTS}}
    for m in METRICS:
        values = [r[m] for r in rows if np.isfinite(r[m])]
        mean[m] = float(np.mean(values)) if values else float("nan")
    table = Table.from_rows([*rows, mean], names)
    for col in ("class", *COUNTS):
        table.columns[col] = table.columns[col].astype(np.int64)
    return table


def _check_shared_values(pred: np.ndarray, gt: np.ndarray) -> None:
    """Refuse class-by-class scores of masks that mark foreground with different values.

    A prediction of class 1 against a 0/255 mask (Fiji's binary masks) would score 0 for both
    "classes"; foreground against background is what such a pair means.
    """
    ours, theirs = (set(np.unique(a).tolist()) - {0} for a in (pred, gt))
    if ours and theirs and not ours & theirs:
        raise CardiosegError(
            f"the prediction's values {sorted(ours)[:5]} and the ground truth's {sorted(theirs)[:5]} "
            "share none, so class-by-class scores would all be 0; to score foreground against "
            "background (e.g. a 0/255 mask), use --binary or tick 'foreground vs background'")


def format_table(table: Table) -> str:
    """Format the metrics table as aligned text (``mean`` for class -1)."""
    lines = ["  ".join(f"{n:>11}" for n in table.names)]
    for i in range(len(table)):
        cells = []
        for name in table.names:
            v = table[name][i]
            if name == "class":
                cells.append(f"{'mean' if v == -1 else int(v):>11}")
            elif name in COUNTS:
                cells.append(f"{int(v):>11}")
            else:
                cells.append(f"{v:>11.4f}")
        lines.append("  ".join(cells))
    return "\n".join(lines)
