"""A minimal column table (dict of equal-length NumPy columns) with an atomic CSV writer."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from .errors import CardiosegError
from .writes import atomic_path


class Table:
    """Named columns of equal length; the column order is kept.

    Parameters
    ----------
    columns : mapping of str to array-like
        Column name → values. Names carry their unit (``length_um``, ``volume_um3``).
    """

    def __init__(self, columns: Mapping[str, npt.ArrayLike] | None = None) -> None:
        self.columns: dict[str, np.ndarray] = {k: np.asarray(v) for k, v in (columns or {}).items()}
        lengths = {len(v) for v in self.columns.values()}
        if len(lengths) > 1:
            raise CardiosegError(f"table columns have different lengths {sorted(lengths)}")

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, float | str]], names: Sequence[str]) -> Table:
        """Build a table from row dicts; ``names`` fixes the columns (even with no rows).

        Columns of strings (notes) stay text; every other column becomes float.
        """
        rows = list(rows)
        columns = {}
        for n in names:
            values = [r[n] for r in rows]
            text = bool(values) and all(isinstance(v, str) for v in values)
            columns[n] = np.array(values, dtype=str if text else float)
        return cls(columns)

    @property
    def names(self) -> list[str]:
        """Column names in order."""
        return list(self.columns)

    def __len__(self) -> int:
        """Return the number of rows."""
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def __getitem__(self, name: str) -> np.ndarray:
        """Return the column ``name``."""
        return self.columns[name]

    def row(self, index: int) -> dict[str, float | str]:
        """One row as a dict."""
        return {k: v[index].item() for k, v in self.columns.items()}

    def write_csv(self, path: str | os.PathLike) -> Path:
        """Write the table to ``path`` atomically: a header line, then one line per row.

        Whole numbers are written without a decimal point, NaN as an empty field.
        """
        with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(self.names)
            cols = [_format(v) for v in self.columns.values()]
            writer.writerows(zip(*cols, strict=True))
        return Path(path)


def _format(values: np.ndarray) -> list[str]:
    if values.dtype.kind in "iub":
        return [str(int(v)) for v in values]
    if values.dtype.kind == "f":
        return ["" if not np.isfinite(v) else (str(int(v)) if v == int(v) and abs(v) < 1e15
                                                   else f"{v:.10g}") for v in values]
    return [str(v) for v in values]


def read_csv(path: str | os.PathLike) -> Table:
    """Read a CSV written by :meth:`Table.write_csv` (numeric columns become float, others text)."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise CardiosegError(f"{path}: the CSV file is empty")
    header, body = rows[0], rows[1:]
    columns = {}
    for i, name in enumerate(header):
        raw = [r[i] for r in body]
        try:
            columns[name] = np.array([float(x) if x else np.nan for x in raw], dtype=float)
        except ValueError:
            columns[name] = np.array(raw, dtype=str)
    return Table(columns)
