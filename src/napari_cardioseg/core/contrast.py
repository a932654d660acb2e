"""Contrast enhancement: AGCWD, the outlier-robust extended AGCWD, and percentile stretching.

Every method builds a monotone (rank-preserving) transfer function from the intensity statistics of the
whole image (one histogram for a whole ``ZYX`` volume) or, with ``per_slice=True``, of each ``Z`` slice,
and maps the image onto the full range of its dtype: uint8 → 0..255, uint16 → 0..65535, other integers
→ 0..max of the dtype (int32 → 0..2147483647), floats → 0..1 in the same float dtype. ``as_float=True``
returns float32 in 0..1 instead. The input array is never modified.

Shared rules
------------
* Non-finite values (NaN, ±inf) are left out of the statistics. NaN stays NaN in the output; +inf and
  -inf map to the top and bottom of the range. Only float images can hold NaN, and floats give float
  output, so integer outputs never need a NaN stand-in. An image with no finite value at all raises
  :class:`CardiosegError`; in per-slice mode a slice without finite values comes back all NaN.
* A constant image (a single finite level) has no contrast to enhance: it maps to 0. More generally,
  when the two ends of the range a method stretches coincide, values at or below that level map to 0 and
  values above it to the top of the range (the limit of the stretch).
* Intensities are first shifted so the lowest level is 0 (``l = value - lo``, ``l_max = hi - lo``): the
  gamma curve of AGCWD then works for negative and offset data, and for data whose minimum is 0 this is
  exactly the paper's eq. 4.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np

from .errors import CardiosegError
from .progress import drain
from .validate import as_grey

MAX_BINS = 65536
"""Most histogram bins chosen automatically (one per grey level of 16-bit data)."""

Transfer = Callable[[np.ndarray], np.ndarray]
"""Maps an array to float64 in ``[0, 1]``; NaN stays NaN."""

Fit = Callable[[np.ndarray], Transfer]
"""Builds a :data:`Transfer` from the statistics of an image (or slice)."""


@dataclass
class EnhanceProgress:
    """Progress of :func:`enhance_steps`: ``done`` of ``total`` slices written."""

    done: int
    total: int


def _finite(data: np.ndarray) -> np.ndarray:
    """The finite values of ``data`` as a 1D array."""
    flat = data.reshape(-1)
    return flat[np.isfinite(flat)] if flat.dtype.kind == "f" else flat


def _unit(data: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``(data - lo) / (hi - lo)`` clipped to ``[0, 1]`` in float64; a step at ``lo`` when ``hi <= lo``."""
    x = data.astype(np.float64)
    if hi > lo:
        return np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return np.where(np.isnan(x), np.nan, (x > lo).astype(np.float64))


def _all_nan(data: np.ndarray) -> np.ndarray:
    return np.full(data.shape, np.nan)


def _gamma_transfer(values: np.ndarray, lo: float, hi: float, alpha: float, bins: int | None) -> Transfer:
    """AGCWD (eqs. 1-4) built from ``values`` (finite, all within ``[lo, hi]``), divided by ``l_max``.

    Bins: with ``bins=None`` integer data get one bin per grey level when ``[lo, hi]`` spans at most
    :data:`MAX_BINS` levels (uint8 and uint16 are exact: ``n_l`` counts one intensity as in eq. 1), other
    data get :data:`MAX_BINS` equal bins. Eq. 4 uses each pixel's exact value with the ``cdf_w`` of its
    bin, so distinct values stay distinct (strictly increasing) except in the top bin, where
    ``cdf_w = 1`` maps every value to the maximum.
    """
    if hi <= lo:
        return lambda data: _unit(data, lo, hi)
    per_level = bins is None and values.dtype.kind in "ui" and hi - lo < MAX_BINS
    n = int(hi - lo) + 1 if per_level else (bins or MAX_BINS)

    def bin_of(unit: np.ndarray) -> np.ndarray:
        pos = unit * (n - 1) + 0.5 if per_level else unit * n
        return np.minimum(pos.astype(np.intp), n - 1)

    counts = np.bincount(bin_of(_unit(values, lo, hi)), minlength=n)
    pdf = counts / counts.sum()  # eq. 1
    spread = pdf.max() - pdf.min()
    # eq. 2; a flat histogram (0/0) keeps equal weights
    pdf_w = pdf.max() * ((pdf - pdf.min()) / spread) ** alpha if spread > 0 else pdf
    cdf_w = np.cumsum(pdf_w) / pdf_w.sum()  # eq. 3

    def transfer(data: np.ndarray) -> np.ndarray:
        unit = _unit(data, lo, hi)
        out = unit ** (1.0 - cdf_w[bin_of(np.nan_to_num(unit))])  # eq. 4 divided by l_max
        out[unit == 0] = 0.0  # T(0) = 0 even where cdf_w = 1 (0 ** 0)
        return out

    return transfer


def _fit_agcwd(data: np.ndarray, alpha: float, bins: int | None) -> Transfer:
    values = _finite(data)
    if values.size == 0:
        return _all_nan
    return _gamma_transfer(values, float(values.min()), float(values.max()), alpha, bins)


def _fit_extended(data: np.ndarray, alpha: float, n_sigma: float, bins: int | None) -> Transfer:
    values = _finite(data)
    if values.size == 0:
        return _all_nan
    vmin, vmax = values.min(), values.max()
    if vmin == vmax:
        return lambda d: _unit(d, float(vmin), float(vmax))
    mean, std = values.mean(dtype=np.float64), values.std(dtype=np.float64)
    lo = values.min(initial=vmax, where=values >= mean - n_sigma * std)
    hi = values.max(initial=vmin, where=values <= mean + n_sigma * std)
    inside = values[(values >= lo) & (values <= hi)]
    return _gamma_transfer(inside, float(lo), float(hi), alpha, bins)


def _fit_percentile(data: np.ndarray, low: float, high: float) -> Transfer:
    values = _finite(data)
    if values.size == 0:
        return _all_nan
    lo, hi = np.percentile(values, [low, high])
    return lambda d: _unit(d, float(lo), float(hi))


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha <= 1.0:
        raise CardiosegError(f"alpha must be in (0, 1], got {alpha}")


def _check_bins(bins: int | None) -> None:
    if bins is not None and (int(bins) != bins or bins < 2):
        raise CardiosegError(f"bins must be an integer of at least 2 (or None for automatic), got {bins}")


def _agcwd_fit(alpha: float = 0.5, bins: int | None = None) -> Fit:
    _check_alpha(alpha)
    _check_bins(bins)
    return lambda data: _fit_agcwd(data, alpha, bins)


def _extended_fit(alpha: float = 0.5, n_sigma: float = 3.5, bins: int | None = None) -> Fit:
    _check_alpha(alpha)
    _check_bins(bins)
    if not n_sigma >= 1.0 or not np.isfinite(n_sigma):
        raise CardiosegError(f"n_sigma must be a finite number of at least 1, got {n_sigma}")
    return lambda data: _fit_extended(data, alpha, n_sigma, bins)


def _percentile_fit(low: float = 5.0, high: float = 98.0) -> Fit:
    if not 0.0 <= low < high <= 100.0:
        raise CardiosegError(f"percentiles need 0 <= low < high <= 100, got low={low}, high={high}")
    return lambda data: _fit_percentile(data, low, high)


_FITS: dict[str, Callable[..., Fit]] = {
    "agcwd": _agcwd_fit,
    "agcwd-extended": _extended_fit,
    "percentile": _percentile_fit,
}


def check_method(method: str) -> str:
    """Return ``method`` if it names a method, else raise :class:`CardiosegError` listing the names."""
    if method not in _FITS:
        raise CardiosegError(f"unknown method {method!r}; choose one of: {', '.join(_FITS)}")
    return method


def _make_fit(method: str, params: dict) -> Fit:
    builder = _FITS[check_method(method)]
    try:
        bound = inspect.signature(builder).bind(**params)
    except TypeError as exc:
        names = ", ".join(inspect.signature(builder).parameters)
        raise CardiosegError(f"method {method!r}: {exc} (it takes {names})") from None
    return builder(*bound.args, **bound.kwargs)


def output_limits(dtype: np.dtype | type, as_float: bool = False) -> tuple[float, float]:
    """The ``(0, top)`` range an enhanced image of input ``dtype`` spans (for contrast limits)."""
    dtype = np.dtype(dtype)
    if as_float or dtype.kind == "f":
        return 0.0, 1.0
    return 0.0, float(np.iinfo(dtype).max)


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(as_grey(image))
    kind, size = image.dtype.kind, image.dtype.itemsize
    if kind not in "uif" or (kind in "ui" and size > 4):
        raise CardiosegError(
            f"cannot enhance pixel type {image.dtype}; use 8-32 bit integers or floats"
        )
    if kind == "f" and not np.isfinite(image).any():
        raise CardiosegError("the image has no finite values (all NaN or infinite); nothing to enhance")
    return image


def enhance_steps(
    image: np.ndarray,
    method: str = "agcwd",
    *,
    per_slice: bool = False,
    as_float: bool = False,
    **params: float | int | None,
) -> Generator[EnhanceProgress, None, np.ndarray]:
    """Enhance ``image`` slice by slice, yielding progress; the enhanced array is the return value.

    The method, its parameters and the image are checked when the generator starts (the first
    ``next``), so a widget's worker reports bad input like any other error.

    Parameters
    ----------
    image : numpy.ndarray
        2D ``YX`` or 3D ``ZYX`` greyscale image.
    method : str
        A key of :data:`METHODS`.
    per_slice : bool
        Fit every ``Z`` slice separately instead of the whole volume (no effect on 2D images).
    as_float : bool
        Return float32 in 0..1 instead of the input dtype's range.
    **params
        The method's parameters (see :func:`agcwd`, :func:`agcwd_extended`, :func:`percentile_stretch`).

    Yields
    ------
    EnhanceProgress
        ``0`` before the work starts, then one step per slice written.
    """
    fit = _make_fit(method, params)
    image = _check_image(image)
    dtype = np.dtype(np.float32) if as_float else image.dtype
    top = output_limits(dtype)[1]
    out = np.empty(image.shape, dtype)
    planes, out_planes = (image[None], out[None]) if image.ndim == 2 else (image, out)
    total = len(planes)
    yield EnhanceProgress(0, total)
    shared = None if per_slice else fit(image)
    for i, plane in enumerate(planes):
        transfer = shared if shared is not None else fit(plane)
        unit = transfer(plane)
        out_planes[i] = unit if dtype.kind == "f" else np.rint(unit * top)
        yield EnhanceProgress(i + 1, total)
    return out


def agcwd(
    image: np.ndarray,
    alpha: float = 0.5,
    *,
    per_slice: bool = False,
    bins: int | None = None,
    as_float: bool = False,
) -> np.ndarray:
    """Adaptive gamma correction with weighting distribution (AGCWD, Huang et al. 2013).

    Seed 002 eqs. 1-4: ``pdf`` is the histogram of the finite intensities, weighted to
    ``pdf_w = pdf_max ((pdf - pdf_min) / (pdf_max - pdf_min)) ** alpha`` (``pdf_min``/``pdf_max`` over
    all bins, empty ones included; a flat histogram keeps equal weights), ``cdf_w`` is its normalised
    cumulative sum and ``T(l) = l_max (l / l_max) ** (1 - cdf_w(l))`` with ``l = value - min`` and
    ``l_max = max - min``; ``T(0) = 0``. The darkest value maps to 0 and the brightest to the top of the
    range. See the module docstring for dtypes, NaN and constant images.

    Parameters
    ----------
    image : numpy.ndarray
        2D or 3D greyscale image.
    alpha : float
        Weighting exponent in (0, 1]; smaller flattens the histogram weighting more.
    per_slice : bool
        One histogram per ``Z`` slice instead of one for the volume.
    bins : int, optional
        Histogram bins. ``None``: one bin per grey level for integer data spanning at most 65536 levels
        (uint8/uint16 stay exact), else 65536 equal bins (floats, wide int32). Eq. 4 uses each
        pixel's exact value with its bin's ``cdf_w``, so the output is not quantised to the bins;
        only the top bin (``cdf_w = 1``) maps all its values to the maximum, which matters for a
        small explicit ``bins``.
    as_float : bool
        Return float32 in 0..1 instead of the input dtype.

    Returns
    -------
    numpy.ndarray
        A new array, same shape.
    """
    return drain(enhance_steps(image, "agcwd", alpha=alpha, bins=bins, per_slice=per_slice,
                                as_float=as_float))


def agcwd_extended(
    image: np.ndarray,
    alpha: float = 0.5,
    n_sigma: float = 3.5,
    *,
    per_slice: bool = False,
    bins: int | None = None,
    as_float: bool = False,
) -> np.ndarray:
    """Extended AGCWD (Žerovnik Mekuč et al. 2020, seed 002 eq. 5): AGCWD that ignores outliers.

    How eq. 5 is read here (the paper leaves these open):

    * The ±``n_sigma`` σ range is computed on the *input* intensities ("3.5 standard deviations of all
      intensities"): μ and σ of all finite values of the volume (or slice, with ``per_slice``).
    * The paper's α and β (called ``lo`` and ``hi`` here, to keep ``alpha`` for eq. 2) are the lowest
      and highest input intensities that lie within ``[μ - n_sigma σ, μ + n_sigma σ]``.
    * "Only considers intensities within the range": the AGCWD histogram (eqs. 1-3) is built from the
      values in ``[lo, hi]`` alone, and eq. 4 uses ``l = value - lo``, ``l_max = hi - lo``, so outliers
      change neither the weighting nor the gamma curve.
    * The ``cdf`` of eq. 5 is read as the AGCWD-corrected intensity (the paper finds α and β "from the
      cumulative distribution function of AGCWD corrected intensities"), so eq. 5 stretches the corrected
      intensities linearly so that ``lo`` → 0 and ``hi`` → the top of the range. With the shift above
      the corrected curve already runs from 0 at ``lo`` to ``l_max`` at ``hi``, so the stretch is
      exact and needs no separate step.
    * Values outside ``[lo, hi]`` are set to the limits: below → 0, above → the top of the range.

    With no values beyond ``n_sigma`` σ (uniform-like histograms, σ-spread < 3.5) the result equals
    :func:`agcwd`. Parameters are those of :func:`agcwd`, plus ``n_sigma`` (at least 1).
    """
    return drain(enhance_steps(image, "agcwd-extended", alpha=alpha, n_sigma=n_sigma, bins=bins,
                                per_slice=per_slice, as_float=as_float))


def percentile_stretch(
    image: np.ndarray,
    low: float = 5.0,
    high: float = 98.0,
    *,
    per_slice: bool = False,
    as_float: bool = False,
) -> np.ndarray:
    """Linear stretch between two percentiles (seed 004 eq. 5.1, default 5th and 98th).

    ``f(x) = (x - a) / (b - a)`` scaled to the output range, ``a`` and ``b`` the ``low`` and ``high``
    percentiles (linear interpolation) of the finite values; values outside ``[a, b]`` are clipped. If
    ``a == b`` (e.g. a mostly blank image) values ``<= a`` map to 0 and values above to the top.

    Parameters
    ----------
    image : numpy.ndarray
        2D or 3D greyscale image.
    low, high : float
        Percentiles with ``0 <= low < high <= 100``.
    per_slice : bool
        Percentiles per ``Z`` slice instead of over the volume.
    as_float : bool
        Return float32 in 0..1 instead of the input dtype.
    """
    return drain(enhance_steps(image, "percentile", low=low, high=high, per_slice=per_slice,
                                as_float=as_float))


METHODS: dict[str, Callable[..., np.ndarray]] = {
    "agcwd": agcwd,
    "agcwd-extended": agcwd_extended,
    "percentile": percentile_stretch,
}
"""Enhancement functions by their CLI name."""


def enhance(image: np.ndarray, method: str, **params: float | int | bool | None) -> np.ndarray:
    """Run the method named ``method`` (a key of :data:`METHODS`) with its keyword parameters.

    Raises
    ------
    CardiosegError
        For an unknown method (the message lists the valid names), unknown or invalid parameters, and
        invalid images.
    """
    return drain(enhance_steps(image, method, **params))
