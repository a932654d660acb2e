"""Per-image summary statistics of per-object columns (NaN-safe, no warnings when empty)."""

from __future__ import annotations

import numpy as np

STATISTICS = ("mean", "median", "std")


def describe(values: np.ndarray) -> dict[str, float]:
    """Mean, median and standard deviation of the finite values (NaN when there are none)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return dict.fromkeys(STATISTICS, float("nan"))
    return {"mean": float(values.mean()), "median": float(np.median(values)),
            "std": float(values.std())}


def summarise(columns: dict[str, np.ndarray]) -> dict[str, float]:
    """``{"mean_<col>": ..., "median_<col>": ..., "std_<col>": ...}`` for each column."""
    out = {}
    for col, values in columns.items():
        for stat, value in describe(values).items():
            out[f"{stat}_{col}"] = value
    return out
