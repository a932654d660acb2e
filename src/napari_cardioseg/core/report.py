"""A one-page report of one label image: overlay, histograms and summary numbers (PNG + HTML).

:func:`make_report` measures with :func:`~napari_cardioseg.core.measure.measure` and writes
``NAME.png`` (the labels over the image in the class colours of :mod:`.colors`, histograms of a
few key columns) and ``NAME.html`` (the PNG embedded, the summary table, per-object statistics
and a protocol line), so a command-line user sees what the Measure widget shows. Units come
from the column registry: µm only when a pixel size is known, px otherwise. Matplotlib draws
on its Agg canvas; neither pyplot nor a GUI backend is used.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .colors import class_color
from .errors import CardiosegError
from .measure import MEASUREMENTS, MeasureResult, get_kind, measure
from .measure.summary import describe
from .writes import write_bytes_atomic

#: candidate histogram columns per kind (calibrated names), first four that apply are drawn
KEY_COLUMNS = {
    "zdisk": ("length_um", "width_um", "orientation_deg", "straightness"),
    "shapes": ("area_um2", "volume_um3", "circularity", "sphericity", "solidity",
               "feret_max_um"),
}
N_HISTOGRAMS = 4
FIGURE_SIZE = (12.0, 8.0)  # inches
DPI = 100  # the PNG is 1200 x 800 pixels
HTML_SUFFIXES = (".html", ".htm")


@dataclass
class Report:
    """The files written by :func:`make_report` and the measurement behind them."""

    html: Path
    png: Path
    result: MeasureResult


@dataclass(frozen=True)
class _Column:
    name: str  # table column (px-named when uncalibrated)
    unit: str


def _object_columns(result: MeasureResult) -> list[_Column]:
    """Numeric per-object columns of the result that the summary describes, in registry order."""
    seen, out = set(), []
    for m in MEASUREMENTS:
        name = m.column(result.calibrated)
        if (m.kind == result.kind and m.level == "object" and m.summarise and name not in seen
                and name in result.objects.names and result.objects[name].dtype.kind == "f"):
            seen.add(name)
            out.append(_Column(name, m.unit_for(result.calibrated)))
    return out


def key_columns(result: MeasureResult) -> list[_Column]:
    """Choose the (up to four) columns drawn as histograms."""
    by_name: dict[str, Any] = {}
    for m in MEASUREMENTS:
        if m.kind == result.kind and m.level == "object":
            by_name.setdefault(m.name, m)
    out = []
    for name in KEY_COLUMNS.get(result.kind, ()):
        found = by_name.get(name)
        if found is not None and found.column(result.calibrated) in result.objects.names:
            out.append(_Column(found.column(result.calibrated), found.unit_for(result.calibrated)))
    if not out:  # a kind without a preset: the first described columns
        out = _object_columns(result)
    return out[:N_HISTOGRAMS]


def _image_units(result: MeasureResult) -> dict[str, str]:
    """Map every per-image column of the kind (the summary's own numbers) to its unit."""
    return {m.column(result.calibrated): "" if m.unit == "text" else m.unit_for(result.calibrated)
            for m in MEASUREMENTS if m.kind == result.kind and m.level == "image"}


def _fmt(value: Any) -> str:
    """Four significant digits; whole numbers without a point; ``n/a`` for NaN."""
    if isinstance(value, str):
        return value
    value = float(value)
    if not np.isfinite(value):
        return "n/a"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def _display(image: np.ndarray) -> np.ndarray:
    """Image scaled to 0-1 between its 1st and 99.8th percentiles."""
    image = np.asarray(image, dtype=float)
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return np.zeros_like(image)
    low, high = np.percentile(finite, (1.0, 99.8))
    if high <= low:
        return (image > low).astype(float)
    return np.clip(np.nan_to_num((image - low) / (high - low)), 0.0, 1.0)


def _overlay(grey: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """RGB: ``grey`` with label ``k > 0`` blended in ``class_color(k)``."""
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    values = np.unique(labels[labels > 0])
    for k in values:
        mask = labels == k
        rgb[mask] = (1 - alpha) * rgb[mask] + alpha * np.asarray(class_color(int(k))[:3])
    return rgb


def _views(image: np.ndarray | None, labels: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Return (title, RGB) panels.

    The image itself in 2D; the middle slice and the max projection of a stack.
    """
    grey = np.zeros(labels.shape) if image is None else _display(image)
    if labels.ndim == 2:
        return [("labels over image", _overlay(grey, labels))]
    mid = labels.shape[0] // 2
    return [(f"slice z = {mid} of {labels.shape[0]}", _overlay(grey[mid], labels[mid])),
            ("max projection over z", _overlay(grey.max(axis=0), labels.max(axis=0)))]


def _figure(image: np.ndarray | None, labels: np.ndarray, result: MeasureResult,
            title: str) -> bytes:
    """Draw the report PNG: overlay panel(s) on top, histograms of the key columns below."""
    from matplotlib.figure import Figure  # renders with Agg; the process's backend is left alone

    fig = Figure(figsize=FIGURE_SIZE, dpi=DPI, layout="constrained")
    grid = fig.add_gridspec(2, N_HISTOGRAMS, height_ratios=(2.2, 1.0))
    views = _views(image, labels)
    aspect = result.spacing[-2] / result.spacing[-1]
    width = N_HISTOGRAMS // len(views)
    for i, (name, rgb) in enumerate(views):
        ax = fig.add_subplot(grid[0, i * width:(i + 1) * width])
        ax.imshow(rgb, interpolation="nearest", aspect=aspect)
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    for i, col in enumerate(key_columns(result)):
        ax = fig.add_subplot(grid[1, i])
        values = np.asarray(result.objects[col.name], dtype=float)
        values = values[np.isfinite(values)]
        if values.size:
            spread = np.ptp(values) > 1e-9 * max(1.0, float(np.abs(values).max()))
            ax.hist(values, bins=30 if spread else 1, color=class_color(1)[:3])
        else:
            ax.text(0.5, 0.5, "no objects", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel(f"{col.name} ({col.unit})" if col.unit else col.name, fontsize=8)
        ax.set_ylabel("objects", fontsize=8)
        ax.yaxis.get_major_locator().set_params(integer=True)  # type: ignore[call-arg]
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=11)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _table_html(header: Sequence[str], rows: Sequence[Sequence[str]], cls: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>\n"
                   for row in rows)
    return f'<table class="{cls}">\n<tr>{head}</tr>\n{body}</table>\n'


def summary_rows(result: MeasureResult) -> tuple[list[str], list[list[str]]]:
    """Return header and rows of the per-image numbers (count, density, sarcomere length, ...).

    One value each for one image; for a stack measured slice by slice, the mean, minimum and
    maximum over the slices.
    """
    table, units = result.summary, _image_units(result)
    names = [n for n in table.names if n in units]
    if len(table) == 1:
        return (["measure", "unit", "value"],
                [[n, units.get(n, ""), _fmt(table[n][0])] for n in names])
    rows = []
    for n in names:
        values = table[n]
        if values.dtype.kind in "US":
            rows.append([n, units.get(n, ""), "; ".join(sorted(set(map(str, values))))[:200],
                         "", ""])
            continue
        finite = values[np.isfinite(values)]
        stats = [finite.mean(), finite.min(), finite.max()] if finite.size else [np.nan] * 3
        rows.append([n, units.get(n, ""), *(_fmt(v) for v in stats)])
    return ["measure", "unit", f"mean of {len(table)} slices", "min", "max"], rows


def object_rows(result: MeasureResult) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-object statistics: count, mean, median, std, min, max."""
    rows = []
    for col in _object_columns(result):
        values = np.asarray(result.objects[col.name], dtype=float)
        finite = values[np.isfinite(values)]
        stats = describe(finite)
        extremes = [finite.min(), finite.max()] if finite.size else [np.nan, np.nan]
        rows.append([col.name, col.unit, str(finite.size),
                     *(_fmt(stats[s]) for s in ("mean", "median", "std")),
                     *(_fmt(v) for v in extremes)])
    return ["column", "unit", "objects", "mean", "median", "std", "min", "max"], rows


def protocol(result: MeasureResult, labels_name: str | None, image_name: str | None,
             model: str | None, when: datetime, has_image: bool = False
             ) -> list[tuple[str, str]]:
    """(field, value) pairs that say where the numbers come from."""
    from .. import __version__

    axes = "ZYX"[-len(result.spacing):]
    calibration = (f"{' × '.join(f'{s:g}' for s in result.spacing)} µm ({axes})"
                   if result.calibrated else "uncalibrated: every length is in px")
    image = image_name or ("(array)" if has_image else "none")
    fields = [("labels", labels_name or "(array)"), ("image", image),
              ("pixel size", calibration), ("kind", result.kind)]
    if model:
        fields.append(("model", model))
    fields += [("date", when.strftime("%Y-%m-%d %H:%M %Z").strip()),
               ("software", f"napari-cardioseg {__version__}")]
    return fields


_STYLE = """body{font-family:sans-serif;max-width:1240px;margin:1em auto;color:#222}
img{max-width:100%}table{border-collapse:collapse;margin:0.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}td:first-child,th:first-child{text-align:left}
.protocol{color:#555;font-size:90%}"""


def _page(title: str, png: bytes, result: MeasureResult, fields: list[tuple[str, str]]) -> str:
    proto = " · ".join(f"<b>{html.escape(k)}</b>: {html.escape(v)}" for k, v in fields)
    encoded = base64.b64encode(png).decode("ascii")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>", f'<p class="protocol">{proto}</p>',
        f'<p class="count"><b>objects</b>: {len(result.objects)}</p>',
        f'<img alt="overlay and histograms" src="data:image/png;base64,{encoded}">',
        "<h2>Summary</h2>", _table_html(*summary_rows(result), "summary"),
        "<h2>Per-object statistics</h2>", _table_html(*object_rows(result), "objects"),
        "</body></html>", "",
    ]
    return "\n".join(parts)


def make_report(
    image: np.ndarray | None,
    labels: np.ndarray,
    spacing: Sequence[float] | None,
    kind: str,
    out_path: str | os.PathLike,
    title: str = "napari-cardioseg report",
    *,
    labels_name: str | None = None,
    image_name: str | None = None,
    model: str | None = None,
    when: datetime | None = None,
    **options: Any,
) -> Report:
    """Measure ``labels`` and write ``out_path`` (HTML) and the same name with ``.png``.

    Parameters
    ----------
    image : numpy.ndarray or None
        Intensity image of the labels' shape (drawn in grey; Z-disks also use it for the
        Fourier period). None draws the labels on black.
    labels : numpy.ndarray
        Label image or mask, ``YX`` or ``ZYX``.
    spacing : sequence of float or None
        Pixel size in µm per axis; None = uncalibrated (everything in px, no µm anywhere).
    kind : str
        Measurement kind (``"zdisk"``, ``"shapes"``).
    out_path : path-like
        The ``.html`` file; the PNG is written beside it with the suffix ``.png``.
    title : str
        Page and figure title.
    labels_name, image_name, model : str, optional
        File names and model name for the protocol line.
    when : datetime, optional
        Date on the protocol line; default now (UTC).
    **options
        Passed on to :func:`~napari_cardioseg.core.measure.measure` (``class_value``,
        ``min_size``, ``min_length``, ...).

    Returns
    -------
    Report
        Paths written and the measurement result.
    """
    out_path = Path(out_path)
    if out_path.suffix.lower() not in HTML_SUFFIXES:
        raise CardiosegError(f"{out_path}: the report must be an .html file (the PNG is written "
                             "beside it)")
    spec = get_kind(kind)
    labels = np.asarray(labels)
    if image is not None:
        image = np.asarray(image)
        if image.dtype.kind not in "uifb":
            raise CardiosegError(f"the image has unsupported pixel type {image.dtype}")
        if image.shape != labels.shape:
            raise CardiosegError(f"the image has shape {image.shape} but the labels have "
                                 f"{labels.shape}")
    result = measure(labels, spacing, kind, image=image if spec.uses_image else None, **options)
    shown = labels if options.get("class_value") is None else np.where(
        labels == options["class_value"], labels, 0)
    png = _figure(image, shown, result, title)
    fields = protocol(result, labels_name, image_name, model, when or datetime.now(UTC),
                      image is not None)
    png_path = write_bytes_atomic(out_path.with_suffix(".png"), png)
    html_path = write_bytes_atomic(out_path, _page(title, png, result, fields).encode("utf-8"))
    return Report(html_path, png_path, result)


__all__ = ["KEY_COLUMNS", "Report", "key_columns", "make_report", "object_rows", "protocol",
           "summary_rows"]
