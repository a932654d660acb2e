"""Z-disk measures on 2D label images: per object and per image (one slice of a stack).

Angles are degrees in [0, 180), counter-clockwise from the image x axis as the image is
displayed (y pointing down). The myofibril axis is perpendicular to the dominant Z-disk
orientation; the sarcomere length is the Z-disk period along it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree
from skimage.morphology import skeletonize

from .objects import Region
from .shapes import max_pairwise_distance
from .summary import half_turn


def skeleton_length(skeleton: np.ndarray, spacing: Sequence[float]) -> float:
    """Path length of an 8-connected 2D skeleton in µm.

    Horizontal and vertical steps count one pixel size, diagonal steps the pixel diagonal.
    A diagonal step is skipped where the two pixels are already joined through a shared
    4-neighbour (a staircase corner), so corners are not counted twice.
    """
    s = np.asarray(skeleton, dtype=bool)
    py, px = spacing
    horizontal = np.count_nonzero(s[:, :-1] & s[:, 1:])
    vertical = np.count_nonzero(s[:-1, :] & s[1:, :])
    a, b, c, d = s[:-1, :-1], s[:-1, 1:], s[1:, :-1], s[1:, 1:]
    diagonal = np.count_nonzero(a & d & ~b & ~c) + np.count_nonzero(b & c & ~a & ~d)
    return float(horizontal * px + vertical * py + diagonal * np.hypot(py, px))


def principal_axes(coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending) and eigenvectors (columns) of the coordinate covariance."""
    centred = coords - coords.mean(axis=0)
    cov = centred.T @ centred / max(len(coords), 1)
    values, vectors = np.linalg.eigh(cov)
    return values[::-1], vectors[:, ::-1]


def angle_of(vector_yx: np.ndarray) -> float:
    """Display angle in degrees [0, 180) of a (y, x) direction (y pointing down)."""
    return half_turn(np.degrees(np.arctan2(-vector_yx[0], vector_yx[1])))


def direction_of(angle_deg: float) -> np.ndarray:
    """Return the unit (y, x) vector of a display angle (inverse of :func:`angle_of`)."""
    t = np.radians(angle_deg)
    return np.array([-np.sin(t), np.cos(t)])


@dataclass
class ZdiskObject:
    """A 2D Z-disk object; derived quantities are computed once and cached."""

    region: Region
    z: int = 0
    myofibril_axis: float = float("nan")

    @cached_property
    def skeleton(self) -> np.ndarray:
        """One-pixel-wide skeleton of the object mask."""
        return skeletonize(self.region.mask)

    @cached_property
    def coords(self) -> np.ndarray:
        """Pixel centres in µm from the image origin, shape ``(n, 2)``."""
        return self.region.coords_um()

    @cached_property
    def length(self) -> float:
        """Skeleton path length (µm)."""
        return skeleton_length(self.skeleton, self.region.spacing)

    @cached_property
    def orientation(self) -> float:
        """Long-axis display angle (degrees; NaN for an object without a long axis)."""
        values, vectors = principal_axes(self.coords)
        if values[0] - values[1] <= 1e-9 * (values[0] + 1e-30):
            return float("nan")
        return angle_of(vectors[:, 0])


def length(obj: ZdiskObject) -> float:
    """Skeleton path length between end-pixel centres (µm)."""
    return obj.length


def width(obj: ZdiskObject) -> float:
    """Twice the median distance from the skeleton to the background (µm)."""
    # measured on the mask at twice the resolution, where a pixel's centre is a corner: bands an
    # even and an odd number of pixels wide both come out whole (w pixels, not w - 1 for even w)
    fine = np.repeat(np.repeat(obj.region.mask, 2, axis=0), 2, axis=1)
    py, px = obj.region.spacing
    edt = ndi.distance_transform_edt(np.pad(fine, 1), sampling=(py / 2, px / 2))[1:-1, 1:-1]
    ys, xs = np.nonzero(obj.skeleton)
    centres = np.max([edt[2 * ys + dy, 2 * xs + dx] for dy in (0, 1) for dx in (0, 1)], axis=0)
    return float(2.0 * np.median(centres)) if centres.size else 0.0


def orientation(obj: ZdiskObject) -> float:
    """Long-axis angle of the Z-disk (degrees, 0 = along x, counter-clockwise)."""
    return obj.orientation


def relative_orientation(obj: ZdiskObject) -> float:
    """Angle between the Z-disk and the dominant myofibril axis (degrees, 0-90; 90 = ideal)."""
    diff = abs(obj.orientation - obj.myofibril_axis) % 180.0
    return float(min(diff, 180.0 - diff))


def straightness(obj: ZdiskObject) -> float:
    """End-to-end extent of the skeleton over its path length (1 = straight)."""
    if obj.length <= 0:
        return float("nan")
    skel = (np.argwhere(obj.skeleton) + np.asarray(obj.region.offset)) * obj.region.spacing
    return float(min(max_pairwise_distance(skel) / obj.length, 1.0))


def touches_border(obj: ZdiskObject) -> float:
    """1 when the Z-disk touches the image border (its length is cut), else 0."""
    return float(obj.region.touches_border)


def area(obj: ZdiskObject) -> float:
    """Object area (µm²)."""
    return float(np.count_nonzero(obj.region.mask) * np.prod(obj.region.spacing))


def centroid_y(obj: ZdiskObject) -> float:
    """Centroid y (µm from the image origin)."""
    return float(obj.coords[:, 0].mean())


def centroid_x(obj: ZdiskObject) -> float:
    """Centroid x (µm from the image origin)."""
    return float(obj.coords[:, 1].mean())


@dataclass
class ZdiskSlice:
    """One 2D image (or stack slice) with its Z-disk objects and optional image / cell mask."""

    objects: list[ZdiskObject]
    labels: np.ndarray
    spacing: tuple[float, float]
    image: np.ndarray | None = None
    cell_mask: np.ndarray | None = None
    period_range: tuple[float, float] = (1.0, 4.0)
    z: int = 0
    segmented: np.ndarray | None = None
    cache: dict = field(default_factory=dict)
    _orientation: tuple[float, float] = field(init=False, default=(np.nan, 0.0))

    def __post_init__(self) -> None:
        """Compute the length-weighted dominant orientation and pass the axis to the objects."""
        angles = np.array([o.orientation for o in self.objects], dtype=float)
        weights = np.array([max(o.length, min(self.spacing)) for o in self.objects])
        ok = np.isfinite(angles)
        if ok.any():
            vec = np.sum(weights[ok] * np.exp(2j * np.radians(angles[ok]))) / weights[ok].sum()
            self._orientation = (half_turn(np.degrees(np.angle(vec)) / 2), float(abs(vec)))
        for obj in self.objects:
            obj.myofibril_axis = self.myofibril_axis

    @property
    def myofibril_axis(self) -> float:
        """Myofibril axis: perpendicular to the dominant Z-disk orientation (degrees)."""
        return half_turn(self._orientation[0] + 90.0)

    @cached_property
    def sarcomere(self) -> tuple[float, float, str]:
        """``(from spacing, from Fourier, note)``: both sarcomere-length estimates.

        The two are checked against each other (see :func:`compare_periods`).
        """
        spacing = spacing_period(self)
        source = self.image if self.image is not None else self.fourier_mask
        fft, _, note = fft_peak(source, self.spacing, self.cell_mask, self.period_range,
                                axis_deg=self.myofibril_axis)
        if closer_than_range(self):
            spacing = float("nan")
            note = note or (f"Z-disks lie closer than the period range's lower bound "
                            f"({self.period_range[0]:g}); lower it")
        return compare_periods(spacing, fft, note)

    @property
    def fourier_mask(self) -> np.ndarray:
        """The segmented pixels for the Fourier period.

        ``segmented`` if given (all objects, short fragments included), else the Z-disk labels.
        """
        return self.segmented if self.segmented is not None else self.labels > 0

    @cached_property
    def analysed_area(self) -> float:
        """Area of the cell mask if given, else of the image (µm²)."""
        pixels = self.labels.size if self.cell_mask is None else np.count_nonzero(self.cell_mask)
        return float(pixels * np.prod(self.spacing))


def count(ctx: ZdiskSlice) -> float:
    """Number of Z-disks."""  # noqa: D401 (a column description, see registry.py)
    return float(len(ctx.objects))


def density(ctx: ZdiskSlice) -> float:
    """Z-disks per µm² of the analysed area (the cell mask if given, else the image)."""
    return len(ctx.objects) / ctx.analysed_area if ctx.analysed_area > 0 else float("nan")


def area_fraction(ctx: ZdiskSlice) -> float:
    """Fraction of the analysed area covered by Z-disks."""
    if not ctx.analysed_area > 0:
        return float("nan")
    inside = ctx.labels > 0 if ctx.cell_mask is None else (ctx.labels > 0) & ctx.cell_mask
    return float(np.count_nonzero(inside) * np.prod(ctx.spacing) / ctx.analysed_area)


def dominant_orientation(ctx: ZdiskSlice) -> float:
    """Length-weighted mean Z-disk orientation (degrees, doubled-angle average)."""
    return ctx._orientation[0]


def myofibril_axis(ctx: ZdiskSlice) -> float:
    """Myofibril axis: perpendicular to the dominant Z-disk orientation (degrees)."""
    return ctx.myofibril_axis


def order_parameter(ctx: ZdiskSlice) -> float:
    """Orientation order parameter |<exp(2iθ)>| (length weighted; 1 = all parallel, 0 = random)."""
    return ctx._orientation[1] if ctx.objects else float("nan")


#: the two sarcomere-length estimates agree when they differ by less than this fraction
AGREEMENT = 0.05


def forward_gaps(ctx: ZdiskSlice, lo: float | None = None) -> np.ndarray:
    """Distance from each Z-disk to the next one ahead along the myofibril axis (µm).

    A neighbour counts when it lies ahead along the axis, within the period range (from ``lo``
    instead of the range's lower bound when given), and laterally within half the longer of the
    two disks (plus one pixel), i.e. in the same myofibril. Taking the next disk ahead of each
    disk counts every gap once.
    """
    if len(ctx.objects) < 2:
        return np.zeros(0)
    low, hi = ctx.period_range
    lo = low if lo is None else lo
    centres = np.array([[centroid_y(o), centroid_x(o)] for o in ctx.objects])
    lengths = np.array([o.length for o in ctx.objects])
    pairs = cKDTree(centres).query_pairs(r=hi * 1.5, output_type="ndarray")
    if len(pairs) == 0:
        return np.zeros(0)
    axis = direction_of(ctx.myofibril_axis)
    d = centres[pairs[:, 1]] - centres[pairs[:, 0]]
    signed = d @ axis
    along = np.abs(signed)
    lateral = np.abs(d @ np.array([-axis[1], axis[0]]))
    tol = 0.5 * np.maximum(lengths[pairs[:, 0]], lengths[pairs[:, 1]]) + max(ctx.spacing)
    ok = (lateral <= tol) & (along >= lo) & (along <= hi)
    forward, backward = ok & (signed > 0), ok & (signed < 0)
    ahead = np.full(len(ctx.objects), np.inf)
    np.minimum.at(ahead, pairs[forward, 0], along[forward])
    np.minimum.at(ahead, pairs[backward, 1], along[backward])
    return ahead[np.isfinite(ahead)]


def closer_than_range(ctx: ZdiskSlice) -> bool:
    """Tell whether most Z-disks have their next neighbour closer than the period range allows.

    Then the gaps within the range are mostly two sarcomeres, and the spacing estimate would
    report twice the true length.
    """
    nearest = forward_gaps(ctx, lo=min(ctx.spacing))
    return bool(nearest.size) and float(np.median(nearest)) < ctx.period_range[0]


def fundamental(gaps: np.ndarray, rounds: int = 10) -> float:
    """Return the median gap, counting gaps over a missed Z-disk as several sarcomeres.

    A gap that spans several sarcomeres is divided by its whole number of sarcomeres:
    ``median(g / k)``, ``k = round(g / median)``, iterated until the median settles.
    """
    if gaps.size == 0:
        return float("nan")
    period = float(np.median(gaps))
    for _ in range(rounds):
        k = np.maximum(np.floor(gaps / period + 0.5), 1.0)
        new = float(np.median(gaps / k))
        if abs(new - period) <= 1e-9 * period:
            break
        period = new
    return period


def spacing_period(ctx: ZdiskSlice) -> float:
    """Sarcomere length from the Z-disk positions (µm; NaN with fewer than two disks)."""
    return fundamental(forward_gaps(ctx))


def compare_periods(spacing: float, fft: float, note: str = "") -> tuple[float, float, str]:
    """Check the two sarcomere-length estimates against each other.

    A Fourier value that is a whole multiple or fraction of the spacing (a harmonic) becomes
    NaN, and the note says why.
    """
    if note or not (np.isfinite(spacing) and np.isfinite(fft)):
        return spacing, fft, note
    ratio = fft / spacing
    for k in (2, 3, 4):
        for r, word in ((ratio, f"{k}x"), (1 / ratio, f"1/{k} of")):
            if abs(r - k) <= AGREEMENT * k:
                return spacing, float("nan"), f"Fourier peak at a harmonic ({word} the Z-disk spacing)"
    if abs(ratio - 1.0) > AGREEMENT:
        return spacing, fft, f"estimates differ by {abs(ratio - 1.0):.0%}"
    return spacing, fft, ""


def sarcomere_length_spacing(ctx: ZdiskSlice) -> float:
    """Sarcomere length from the spacing of neighbouring Z-disks along the myofibril axis (µm).

    The median distance, with gaps over a missed Z-disk counted as several sarcomeres.
    """
    return ctx.sarcomere[0]


def sarcomere_length_fft(ctx: ZdiskSlice) -> float:
    """Dominant period of the intensity image (or of the mask) inside the period range (µm).

    NaN when the peak lies on the range bound or on a harmonic of the Z-disk spacing.
    """
    return ctx.sarcomere[1]


def sarcomere_note(ctx: ZdiskSlice) -> str:
    """Why a sarcomere length is missing, or how the two estimates disagree ("" = agree)."""
    return ctx.sarcomere[2]


def fft_period(
    image: np.ndarray,
    spacing: tuple[float, float],
    mask: np.ndarray | None = None,
    period_range: tuple[float, float] = (1.0, 4.0),
) -> tuple[float, float]:
    """Return the dominant period (µm) and its axis (display degrees) of a 2D image.

    The first two values of :func:`fft_peak` (NaN period when no peak lies inside the range).
    """
    return fft_peak(image, spacing, mask, period_range)[:2]


#: width (µm) of the strips along the axis whose profiles' power spectra are summed (about one
#: myofibril; 1, 2 and 4 µm all fixed the lattice error on the synthetic images, 1 µm best)
STRIP_WIDTH = 1.0


def _strip_spectrum(img: np.ndarray, weight: np.ndarray, spacing: tuple[float, float],
                    axis: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Sum the power spectra of the profiles of :data:`STRIP_WIDTH`-wide strips along ``axis``.

    Each strip (about one myofibril wide) is averaged into a profile along the axis, one bin per
    ``step``; summing power rather than profiles keeps neighbouring myofibrils whose Z-disks are
    out of register (staggered) from cancelling. Returns ``(frequencies, power)``, zero-padded.
    """
    py, px = spacing
    yy, xx = np.indices(img.shape)
    along = yy * py * axis[0] + xx * px * axis[1]
    across = -yy * py * axis[1] + xx * px * axis[0]
    bins = np.round((along - along.min()) / step).astype(np.int64).ravel()
    strips = ((across - across.min()) // STRIP_WIDTH).astype(np.int64).ravel()
    n = int(bins.max()) + 1
    index = strips * n + bins
    size = (int(strips.max()) + 1) * n
    wsum = np.bincount(index, weight.ravel(), size).reshape(-1, n)
    vsum = np.bincount(index, (img * weight).ravel(), size).reshape(-1, n)
    n_fft = int(2 ** np.ceil(np.log2(n * 32)))
    spec = np.zeros(n_fft // 2 + 1)
    for w, v in zip(wsum, vsum, strict=True):
        filled = np.flatnonzero(w > 1e-9 * max(wsum.max(), 1e-300))
        if filled.size < 8:
            continue
        pos = np.arange(filled[0], filled[-1] + 1)
        profile = np.interp(pos, filled, v[filled] / w[filled])
        profile = (profile - profile.mean()) * np.hanning(len(profile))
        spec += np.abs(np.fft.rfft(profile * np.sqrt(w[pos].sum()), n_fft)) ** 2
    return np.fft.rfftfreq(n_fft, d=step), spec


#: degrees either side of the myofibril axis in which :func:`fft_peak` looks for the period
AXIS_SECTOR = 15.0


def fft_peak(
    image: np.ndarray,
    spacing: tuple[float, float],
    mask: np.ndarray | None = None,
    period_range: tuple[float, float] = (1.0, 4.0),
    axis_deg: float | None = None,
) -> tuple[float, float, str]:
    """Dominant period (µm), its axis (display degrees) and a note ("" when fine) of a 2D image.

    The strongest peak of the windowed 2D power spectrum inside the period range gives the
    axis. With ``axis_deg`` (the myofibril axis from the Z-disks' orientation) only peaks within
    :data:`AXIS_SECTOR` degrees of it count, because staggered myofibrils put strong diagonal
    peaks (a 2D lattice) at shorter periods, and the axis is ``axis_deg`` itself (finer than the
    spectrum's grid). The image is then averaged into a profile along the axis, whose zero-padded 1D
    spectrum (with parabolic peak interpolation) gives the period to a fraction of a pixel.
    The period is NaN, with a note, when no period fits in the image, when the strongest
    frequency lies on a bound of the range (the true peak is outside it), or when it is a
    harmonic of a stronger period longer than the range.
    """
    img = np.asarray(image, dtype=float)
    py, px = spacing
    weight = np.outer(np.hanning(img.shape[0] + 2)[1:-1], np.hanning(img.shape[1] + 2)[1:-1])
    if mask is not None:
        weight = weight * (np.asarray(mask) > 0)
    if weight.sum() <= 0:
        return float("nan"), float("nan"), "no image inside the cell mask"
    centred = (img - np.sum(img * weight) / weight.sum()) * weight
    power = np.abs(np.fft.fft2(centred)) ** 2
    fy = np.fft.fftfreq(img.shape[0], d=py)[:, None]
    fx = np.fft.fftfreq(img.shape[1], d=px)[None, :]
    radius = np.hypot(fy, fx)
    band = (radius >= 1.0 / period_range[1]) & (radius <= 1.0 / period_range[0])
    if axis_deg is not None and np.isfinite(axis_deg):
        angles = np.degrees(np.arctan2(-fy, fx)) % 180.0  # display angle of each frequency
        band &= np.abs((angles - axis_deg + 90.0) % 180.0 - 90.0) <= AXIS_SECTOR
    if not band.any() or not np.any(power[band] > 0):
        return float("nan"), float("nan"), "no periodic signal in the period range"
    iy, ix = np.unravel_index(np.argmax(np.where(band, power, -1.0)), power.shape)
    axis = np.array([fy[iy, 0], fx[0, ix]]) / radius[iy, ix]
    if axis_deg is not None and np.isfinite(axis_deg):
        axis = direction_of(axis_deg)  # finer than the spectrum's grid of directions
    step = min(py, px)
    freq, spec = _strip_spectrum(img, weight, (py, px), axis, step)
    band1 = (freq >= 1.0 / period_range[1]) & (freq <= 1.0 / period_range[0])
    k = int(np.argmax(np.where(band1, spec, -1.0)))
    inside = np.flatnonzero(band1)
    if inside.size == 0:
        return float("nan"), angle_of(axis), "no periodic signal in the period range"
    if k in (inside[0], inside[-1]):
        return float("nan"), angle_of(axis), (
            f"Fourier peak on the period-range bound ({1.0 / freq[k]:.3g}); widen the range")
    if 0 < k < len(spec) - 1 and spec[k] > 0:
        a, b, c = np.log(spec[k - 1 : k + 2] + 1e-300)
        shift = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) < 0 else 0.0
        f0 = freq[k] + shift * (freq[1] - freq[0])
    else:
        f0 = freq[k]
    for n in (2, 3):  # a stronger peak at f0 / n, outside the range: f0 is its harmonic
        near = np.abs(freq - f0 / n) <= 0.03 * f0 / n
        if near.any() and spec[near].max() > spec[k] and freq[near].max() < freq[inside[0]]:
            return float("nan"), angle_of(axis), (
                f"Fourier peak at a harmonic (1/{n} of a stronger period {n / f0:.3g} outside "
                "the period range)")
    return (float(1.0 / f0) if f0 > 0 else float("nan")), angle_of(axis), ""
