"""Lengths typed by people, and the layer flag that says a pixel size is known.

A pixel size is typed as text (``0.1``, ``0,1`` with a decimal comma, ``8 nm``) and used as a number in
µm from then on. Whether a layer's scale is a real calibration or napari's default of 1 is kept in the
layer's metadata under :data:`CALIBRATED_KEY` (see CONTRIBUTING.md); :func:`is_calibrated` reads it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

from .errors import CardiosegError

CALIBRATED_KEY = "cardioseg_calibrated"
"""``layer.metadata`` key: True when the layer's scale is a pixel size in µm (from the file or typed)."""

_NUMBER = re.compile(r"[+-]?(\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_UNITS = {"": 1.0, "µm": 1.0, "μm": 1.0, "um": 1.0, "nm": 1e-3}  # micro sign and Greek mu both occur


def parse_length(text: str, what: str = "pixel size") -> float:
    """Parse a positive, finite length in µm from text such as ``0.1``, ``0,1``, ``1e-2 µm`` or ``8 nm``.

    A decimal comma is read like a decimal point; thousands separators are not accepted. Without a
    unit the number is in µm.

    Parameters
    ----------
    text : str
        What was typed.
    what : str
        The name of the field, used in error messages.

    Raises
    ------
    CardiosegError
        Naming ``what``, for text that is not one number with an optional unit, and for zero,
        negative or non-finite lengths.
    """
    cleaned = text.strip()
    number, unit = cleaned, ""
    for suffix in _UNITS:
        if suffix and cleaned.lower().endswith(suffix):
            number, unit = cleaned[: -len(suffix)].strip(), suffix
            break
    if not _NUMBER.fullmatch(number):
        both = "," in number and "." in number
        hint = " (use a decimal comma or a decimal point, not both)" if both else ""
        raise CardiosegError(f"{what}: {text.strip()!r} is not a length; type a number in µm such as 0.1 or "
                             f"0,1{hint}")
    value = float(number.replace(",", ".")) * _UNITS[unit]
    if not math.isfinite(value) or value <= 0:
        raise CardiosegError(f"{what} must be a positive, finite length, got {text.strip()!r}")
    return value


def is_calibrated(metadata: Mapping[str, object], scale: Sequence[float]) -> bool:
    """Whether a layer's ``scale`` is a pixel size: its :data:`CALIBRATED_KEY` flag, if set.

    Layers without the flag (made by napari's own readers or by code) count as calibrated when any
    spatial scale differs from 1, napari's default.
    """
    flag = metadata.get(CALIBRATED_KEY)
    if flag is not None:
        return bool(flag)
    return any(float(s) != 1.0 for s in scale)
