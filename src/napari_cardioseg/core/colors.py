"""One colour per class, shared by scribbles and predictions so a class looks the same in both.

Class ``k`` (0 = background) is drawn in ``class_color(k)``. Scribbles store class ``k`` as value
``k + 1`` (0 = unpainted), predictions as label ``k``; so scribble value ``k + 1`` and prediction
label ``k`` get the same colour. Background strokes are grey; predicted background is transparent,
so the image shows through. Class colours are the colour-blind-safe palette of Okabe and Ito
(2008), without its black.
"""

from __future__ import annotations

RGBA = tuple[float, float, float, float]

TRANSPARENT: RGBA = (0.0, 0.0, 0.0, 0.0)
BACKGROUND: RGBA = (0.6, 0.6, 0.6, 1.0)
_PALETTE = ((230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178),
            (213, 94, 0), (204, 121, 167))
CLASSES: tuple[RGBA, ...] = tuple((r / 255, g / 255, b / 255, 1.0) for r, g, b in _PALETTE)
TABLE_SIZE = 32  # colours are listed for this many classes; the palette repeats after 7


def class_color(k: int) -> RGBA:
    """RGBA (0–1) of class ``k``: grey for background (0), then the palette, repeating."""
    if k < 0:
        raise ValueError(f"class index must be >= 0, got {k}")
    return BACKGROUND if k == 0 else CLASSES[(k - 1) % len(CLASSES)]


def scribble_colors(n_classes: int = TABLE_SIZE) -> dict[int | None, RGBA]:
    """Label value -> RGBA for a scribbles layer: 0 unpainted (transparent), ``k + 1`` class ``k``.

    The ``None`` key is the colour of values beyond the table (napari's default entry).
    """
    colors: dict[int | None, RGBA] = {None: TRANSPARENT, 0: TRANSPARENT}
    colors.update({k + 1: class_color(k) for k in range(n_classes)})
    return colors


def prediction_colors(n_classes: int = TABLE_SIZE) -> dict[int | None, RGBA]:
    """Label value -> RGBA for predicted labels: 0 background (transparent), ``k`` class ``k``."""
    colors: dict[int | None, RGBA] = {None: TRANSPARENT, 0: TRANSPARENT}
    colors.update({k: class_color(k) for k in range(1, n_classes)})
    return colors


__all__ = ["BACKGROUND", "CLASSES", "TRANSPARENT", "class_color", "prediction_colors",
           "scribble_colors"]
