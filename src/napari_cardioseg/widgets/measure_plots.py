"""Plots of a per-object table: a histogram of one column and an orientation rose."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ..core.table import Table


def draw(figure: Figure, objects: Table | None, column: str | None) -> None:
    """Redraw ``figure``: the histogram of ``column``, and a rose plot of orientations.

    The rose plot is drawn when the table has orientations (axial data: both ends of each direction).
    """
    figure.clear()
    if objects is None:
        return
    rose = "orientation_deg" in objects.names
    if column in objects.names and objects[column].dtype.kind not in "US":
        ax = figure.add_subplot(1, 2 if rose else 1, 1)
        values = np.asarray(objects[column], dtype=float)
        ax.hist(values[np.isfinite(values)], bins=30)
        ax.set_title(column, fontsize=8)
        ax.tick_params(labelsize=7)
    if rose:
        ax = figure.add_subplot(1, 2, 2, projection="polar")
        angles = np.asarray(objects["orientation_deg"], dtype=float)
        angles = np.radians(angles[np.isfinite(angles)])
        both = np.concatenate([angles, angles + np.pi])
        counts, edges = np.histogram(both, bins=36, range=(0, 2 * np.pi))
        ax.bar(edges[:-1], counts, width=edges[1] - edges[0], align="edge")
        ax.set_title("orientation", fontsize=8)
        ax.set_yticks([])
        ax.tick_params(labelsize=6)
