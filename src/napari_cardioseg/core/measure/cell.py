"""Whole-cell features from a cell mask (after Gerbin et al. 2021, as used by SarcNet, Le et al. 2024).

* cell area and aspect ratio (major / minor axis of the inertia ellipse);
* the periodicity profile: the grey-level co-occurrence (GLCM) correlation ``C(d, θ)`` of the
  intensity inside the cell for offsets ``d`` and 12 directions ``θ``. *Max coefficient of
  variation* = max over ``d`` of std / mean over ``θ`` of ``(1 + C) / 2`` (correlation moved
  to [0, 1]; high when the texture is aligned). Along the myofibril axis (the direction of the
  strongest Fourier period inside the cell) the first *peak* after the first trough gives the
  *peak height* (peak − trough correlation) and *peak distance* (µm).

Le et al. name these features but not their exact recipe; this is our reading, stated here
so that the numbers can be interpreted.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import find_peaks
from skimage.feature import graycomatrix
from skimage.transform import rescale, rotate

from .zdisk import ZdiskSlice, fft_period

N_ANGLES = 12
N_LEVELS = 32


def _isotropic_crop(image: np.ndarray, mask: np.ndarray, spacing: tuple[float, float]
                    ) -> tuple[np.ndarray, np.ndarray, float]:
    """Crop the cell's bounding box and resample it to square pixels of the smaller pixel size."""
    rows, cols = np.nonzero(mask)
    crop = np.s_[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    img, msk = np.array(image[crop], dtype=float), np.array(mask[crop], dtype=bool)
    step = min(spacing)
    factors = (spacing[0] / step, spacing[1] / step)
    if factors != (1.0, 1.0):
        img = rescale(img, factors, order=1, preserve_range=True)
        msk = rescale(msk.astype(float), factors, order=0, preserve_range=True) > 0.5
    return img, msk, step


def glcm_correlation(img: np.ndarray, msk: np.ndarray, distances: np.ndarray,
                     angles: np.ndarray) -> np.ndarray:
    """GLCM correlation of ``img`` inside ``msk`` (32 grey levels), shape (distances, angles).

    NaN where an offset has no pixel pair inside the mask or the grey levels do not vary.
    """
    lo, hi = np.percentile(img[msk], [1, 99])
    levels = np.clip((img - lo) / max(hi - lo, 1e-12) * N_LEVELS, 0, N_LEVELS - 1).astype(np.uint8)
    quantised = np.where(msk, levels + 1, 0).astype(np.uint8)  # 0 = outside the cell
    glcm = graycomatrix(quantised, distances, angles, levels=N_LEVELS + 1, symmetric=True)
    p = glcm[1:, 1:].astype(float)  # drop pairs touching the outside
    total = p.sum(axis=(0, 1))
    i = np.arange(N_LEVELS, dtype=float)[:, None, None, None]
    j = np.arange(N_LEVELS, dtype=float)[None, :, None, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        p = p / total
        mean = np.sum(i * p, axis=(0, 1))
        var = np.sum((i - mean) ** 2 * p, axis=(0, 1))
        corr = np.sum((i - mean) * (j - mean) * p, axis=(0, 1)) / var
    corr[~(total > 0) | ~(var > 0)] = np.nan
    return corr


def max_cv_of(image: np.ndarray, mask: np.ndarray, spacing: tuple[float, float],
              max_distance: float) -> float:
    """Max over offsets of the coefficient of variation of (1 + C) / 2 across directions."""
    img, msk, step = _isotropic_crop(image, mask, spacing)
    n_dist = int(max(1, min(round(max_distance / step), min(img.shape) // 2)))
    distances = np.unique(np.linspace(1, n_dist, min(n_dist, 32)).round().astype(int))
    corr = glcm_correlation(img, msk, distances, np.arange(N_ANGLES) * np.pi / N_ANGLES)
    cvs = []
    for row in (1.0 + corr) / 2.0:
        row = row[np.isfinite(row)]
        if row.size > 1 and row.mean() > 0:
            cvs.append(row.std() / row.mean())
    return float(max(cvs)) if cvs else float("nan")


def axis_profile(image: np.ndarray, mask: np.ndarray, spacing: tuple[float, float],
                 axis: float, max_distance: float) -> tuple[np.ndarray, np.ndarray]:
    """GLCM correlation along the direction ``axis`` (display degrees): ``(distances_um, corr)``.

    Offsets go up to ``max_distance`` µm. The cell is rotated so that the axis is horizontal,
    which keeps every offset an exact whole number of pixels.
    """
    img, msk, step = _isotropic_crop(image, mask, spacing)
    img = rotate(img, -axis, resize=True, order=1, preserve_range=True)
    msk = rotate(msk.astype(float), -axis, resize=True, order=0, preserve_range=True) > 0.5
    n_dist = int(max(1, min(round(max_distance / step), img.shape[1] // 2)))
    distances = np.arange(1, n_dist + 1)
    return distances * step, glcm_correlation(img, msk, distances, np.array([0.0]))[:, 0]


def first_peak(distances: np.ndarray, corr: np.ndarray, prominence: float = 0.05
               ) -> tuple[float, float]:
    """``(height, distance)`` of the first clear local maximum of the profile.

    A maximum counts when it stands ``prominence`` above its surroundings; its height is
    measured from the lowest value before it. ``(0, nan)`` when there is none.
    """
    c = np.where(np.isfinite(corr), corr, np.nanmin(corr) if np.isfinite(corr).any() else 0.0)
    peaks, _ = find_peaks(c, prominence=prominence)
    if len(peaks) == 0:
        return 0.0, float("nan")
    k = int(peaks[0])
    return float(c[k] - c[:k].min()), float(distances[k])


def _cell_mask(ctx: ZdiskSlice) -> np.ndarray:
    """Return the slice's cell mask (the registry runs these measures only when there is one)."""
    if ctx.cell_mask is None:
        raise ValueError("cell features need a cell mask")
    return ctx.cell_mask


def _profile(ctx: ZdiskSlice) -> tuple[float, float]:
    """Peak height and distance of the slice, computed once and kept in ``ctx.cache``."""
    if "periodicity" not in ctx.cache:
        if not ctx.analysed_area > 0:
            return 0.0, float("nan")
        image = ctx.image if ctx.image is not None else ctx.fourier_mask
        axis = fft_period(image, ctx.spacing, ctx.cell_mask, ctx.period_range)[1]
        if np.isfinite(axis):
            profile = axis_profile(image, _cell_mask(ctx), ctx.spacing, axis, ctx.period_range[1])
            ctx.cache["periodicity"] = first_peak(*profile)
        else:
            ctx.cache["periodicity"] = (0.0, float("nan"))
    return ctx.cache["periodicity"]


def cell_area(ctx: ZdiskSlice) -> float:
    """Area of the cell mask (µm²)."""
    return ctx.analysed_area


def cell_aspect_ratio(ctx: ZdiskSlice) -> float:
    """Major over minor axis of the cell's inertia ellipse."""
    if not ctx.analysed_area > 0:
        return float("nan")
    coords = np.argwhere(_cell_mask(ctx)) * np.asarray(ctx.spacing)
    centred = coords - coords.mean(axis=0)
    cov = centred.T @ centred / len(coords) + np.diag(np.square(ctx.spacing)) / 12.0
    values = np.linalg.eigvalsh(cov)
    return float(np.sqrt(values[1] / values[0]))


def max_cv(ctx: ZdiskSlice) -> float:
    """Max coefficient of variation of the periodicity profile across directions."""
    if not ctx.analysed_area > 0:
        return float("nan")
    image = ctx.image if ctx.image is not None else ctx.fourier_mask
    return max_cv_of(image, _cell_mask(ctx), ctx.spacing, ctx.period_range[1])


def peak_height(ctx: ZdiskSlice) -> float:
    """Height of the first periodicity peak above the preceding trough (correlation units)."""
    return _profile(ctx)[0]


def peak_distance(ctx: ZdiskSlice) -> float:
    """Offset of the first periodicity peak along the myofibril axis (µm; NaN if none)."""
    return _profile(ctx)[1]
