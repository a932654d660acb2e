"""Per-image summary statistics of per-object columns (NaN-safe, no warnings when empty).

Orientations are axial (0° and 180° are one direction): their statistics are those of the
doubled angles, halved (mean direction, circular standard deviation), and their median is taken
around the mean direction.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

STATISTICS = ("mean", "median", "std")


def half_turn(degrees: float) -> float:
    """Return an angle in degrees within [0, 180) (``x % 180`` can round up to 180.0)."""
    value = float(degrees) % 180.0
    return 0.0 if value >= 180.0 else value


def describe_axial(degrees: np.ndarray) -> dict[str, float]:
    """Mean direction, median and circular standard deviation of axial angles (degrees)."""
    values = np.asarray(degrees, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return dict.fromkeys(STATISTICS, float("nan"))
    vec = np.mean(np.exp(2j * np.radians(values)))
    mean = half_turn(np.degrees(np.angle(vec)) / 2)
    around = (values - mean + 90.0) % 180.0 - 90.0  # signed offsets from the mean direction
    spread = min(float(abs(vec)), 1.0)
    std = float(np.degrees(np.sqrt(-2.0 * np.log(spread))) / 2) if spread > 0 else float("inf")
    return {"mean": mean, "median": half_turn(mean + float(np.median(around))), "std": std}


def describe(values: np.ndarray) -> dict[str, float]:
    """Mean, median and standard deviation of the finite values (NaN when there are none)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return dict.fromkeys(STATISTICS, float("nan"))
    return {"mean": float(values.mean()), "median": float(np.median(values)),
            "std": float(values.std())}


def summarise(columns: dict[str, np.ndarray], axial: Collection[str] = ()) -> dict[str, float]:
    """``{"mean_<col>": ..., "median_<col>": ..., "std_<col>": ...}`` for each column.

    Columns named in ``axial`` hold orientations (:func:`describe_axial`).
    """
    out = {}
    for col, values in columns.items():
        for stat, value in (describe_axial(values) if col in axial else describe(values)).items():
            out[f"{stat}_{col}"] = value
    return out
