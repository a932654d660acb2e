"""``argparse`` value checks shared by the subcommands: bad values stop at parsing, in one line.

Each function is an ``argparse`` ``type=``: it converts the text or raises
:class:`argparse.ArgumentTypeError`, which argparse prints after the usage line (exit code 2).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

MAX_SEED = 2**32 - 1  # NumPy and PyTorch both accept seeds in 0..2**32-1


def positive_seconds(text: str) -> float:
    """Parse a finite number of seconds > 0 (``nan``, ``inf`` and ``0`` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"needs a finite number of seconds > 0, got {text!r}")
    return value


def z_sigma(text: str) -> float:
    """Parse a finite number of slices >= 0 (:func:`core.slice_smooth.check_sigma`)."""
    from ..core.errors import CardiosegError
    from ..core.slice_smooth import check_sigma

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of slices") from None
    try:
        return check_sigma(value)
    except CardiosegError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def seed(text: str) -> int:
    """Parse a whole number in ``0..2**32-1``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"needs a whole number in 0..{MAX_SEED}, got {value}")
    return value


def image_edge(text: str) -> int:
    """Parse ``--test-size``: a whole number of pixels from 16 to 2048 (a test image, not data)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of pixels") from None
    if not 16 <= value <= 2048:
        raise argparse.ArgumentTypeError(f"the test image edge must be 16 to 2048 px, got {value}")
    return value


def model_name(text: str) -> str:
    """Check a model name, model file path or bioimage.io package: not empty, no other folder.

    A package is a ``.zip``, an ``rdf.yaml`` or the folder holding it.
    """
    if not text.strip() or Path(text).name in ("", ".", ".."):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a model: give a model name (see 'cardioseg models') or NAME.json"
        )
    folder = Path(text)
    if folder.is_dir() and not ((folder / "rdf.yaml").is_file()
                                or any(folder.glob("*bioimageio.yaml"))):
        raise argparse.ArgumentTypeError(
            f"{text!r} is a folder; give a model name, NAME.json or a bioimage.io package (.zip)")
    return text


def pixel_size(text: str) -> float:
    """One pixel size in µm, finite and within the plausible range the readers accept."""
    from ..core.io import PIXEL_SIZE_RANGE

    low, high = PIXEL_SIZE_RANGE
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a pixel size in µm") from None
    if not (math.isfinite(value) and low <= value <= high):
        raise argparse.ArgumentTypeError(
            f"a pixel size must be a number in {low:g}..{high:g} µm, got {text!r}"
        )
    return value


def selection(text: str) -> str:
    """Parse a channel or scene: an index or a name (checked against the file by the core)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("give an index (0, 1, ...) or a name")
    return text.strip()


def add_selection(parser: argparse.ArgumentParser, where: str = "the input") -> None:
    """Add ``--channel`` and ``--scene`` (index or name) for multichannel / multi-scene files."""
    parser.add_argument("--channel", type=selection, metavar="C",
                        help=f"channel of {where} (index or name); required when it has several")
    parser.add_argument("--scene", type=selection, metavar="S",
                        help=f"scene / image series of {where} (index or name); required when it "
                        "has several")
