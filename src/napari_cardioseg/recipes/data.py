"""Load and split the third-party training data, and make augmented variants of it.

The data is research-use only and is never shipped: it is read from ``../shared/data`` beside the
checkout, from ``$CARDIOSEG_DATA``, or from the folder given on the command line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage as ndi

from ..core.errors import CardiosegError

LUCCHI_PIXEL_UM = 0.005
EMNET_PIXEL_UM = 0.013  # estimated from the Z-disk spacing (SOURCE.md), not metadata
EMNET_VAL_TILES = (4, 9, 14, 19)  # one per A/B/C/D group
ZDISK_REAL_PIXEL_UM = 0.1195


@dataclass
class SegSet:
    """2D images with 0/1 masks at one pixel size.

    Attributes
    ----------
    name : str
        Data set name used in reports.
    images, masks : list of numpy.ndarray
        ``YX`` images and ``uint8`` masks of the same shapes.
    pixel_size : float
        µm per pixel.
    """

    name: str
    images: list[np.ndarray] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)
    pixel_size: float = 1.0


def default_data_dir() -> Path:
    """``$CARDIOSEG_DATA`` or ``shared/data`` beside the repository checkout."""
    env = os.environ.get("CARDIOSEG_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[4] / "shared" / "data"


def _read(path: Path) -> np.ndarray:
    if not path.is_file():
        raise CardiosegError(f"{path}: training data not found (pass --data DIR or set CARDIOSEG_DATA)")
    return tifffile.imread(path)


def lucchi_split(data_dir: Path, val_slices: int = 25, whole: bool = False) -> tuple[SegSet, SegSet]:
    """Lucchi++: the first slices for training, the last ``val_slices`` (a slab) for validation.

    ``whole``: the whole 165×768×1024 training volume (``train_image_part1-3.tif`` and
    ``train_mito.tif``) instead of its 384×512 crop.
    """
    folder = data_dir / "lucchi_pp_train"
    if whole:
        image = np.concatenate([_read(folder / f"train_image_part{k}.tif") for k in (1, 2, 3)])
        mask = (_read(folder / "train_mito.tif") > 0).astype(np.uint8)
    else:
        image = _read(folder / "train_crop_image.tif")
        mask = (_read(folder / "train_crop_mito.tif") > 0).astype(np.uint8)
    cut = image.shape[0] - val_slices
    train = SegSet("lucchi", list(image[:cut]), list(mask[:cut]), LUCCHI_PIXEL_UM)
    val = SegSet("lucchi", list(image[cut:]), list(mask[cut:]), LUCCHI_PIXEL_UM)
    return train, val


def emnet_test(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Return the four EM-net test tiles and their masks (never used for training)."""
    folder = data_dir / "emnet_cardiac_sbfsem"
    return (_read(folder / "test_image_unlabeled.tif"),
            (_read(folder / "test_mito.tif") > 0).astype(np.uint8))


def emnet_split(data_dir: Path, val_tiles: tuple[int, ...] = EMNET_VAL_TILES) -> tuple[SegSet, SegSet]:
    """EM-net cardiac tiles: ``val_tiles`` held out, the rest for training."""
    image = _read(data_dir / "emnet_cardiac_sbfsem" / "train_image.tif")
    mask = (_read(data_dir / "emnet_cardiac_sbfsem" / "train_mito.tif") > 0).astype(np.uint8)
    train, val = SegSet("emnet", pixel_size=EMNET_PIXEL_UM), SegSet("emnet", pixel_size=EMNET_PIXEL_UM)
    for i in range(image.shape[0]):
        target = val if i in val_tiles else train
        target.images.append(image[i])
        target.masks.append(mask[i])
    return train, val


def zdisk_real(data_dir: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """Load the real single-cell Z-disk image, its cell mask and its pixel size (µm)."""
    folder = data_dir / "zdisk_fluor"
    image = _read(folder / "sgi_sample_raw.tif")
    cell = _read(folder / "sgi_sample_cellmask.tif") > 0
    return image, cell, ZDISK_REAL_PIXEL_UM


def degrade(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, zoom: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Make a microscope-like variant: rescaled, blurred, gamma-shifted and noisy.

    Parameters
    ----------
    image : numpy.ndarray
        2D greyscale image.
    mask : numpy.ndarray
        Its 0/1 mask (resampled with nearest neighbour).
    rng : numpy.random.Generator
        Source of randomness.
    zoom : tuple of float
        Range of the scale factor (``< 1`` shrinks, as for a coarser pixel size).

    Returns
    -------
    tuple of numpy.ndarray
        ``float32`` image scaled to about 0..1 and ``uint8`` mask.
    """
    factor = float(np.exp(rng.uniform(np.log(zoom[0]), np.log(zoom[1]))))
    img = image.astype(np.float32)
    lo, hi = np.percentile(img, (0.5, 99.5))
    img = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)
    if abs(factor - 1) > 0.02:
        if factor < 1:  # anti-alias before shrinking
            img = ndi.gaussian_filter(img, 0.4 / factor)
        img = ndi.zoom(img, factor, order=1)
        mask = ndi.zoom(mask, factor, order=0)
    img = ndi.gaussian_filter(img, rng.uniform(0.0, 1.5))
    img = img ** float(np.exp(rng.uniform(-0.4, 0.4)))
    img = img + rng.normal(0.0, rng.uniform(0.0, 0.08), img.shape).astype(np.float32)
    return img.astype(np.float32), mask.astype(np.uint8)

