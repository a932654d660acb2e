"""Synthetic microscopy with exact ground truth: Z-disks (fluorescence) and mitochondria (EM).

Used by the tests, the plugin's sample data and the training of the shipped models. Every generator is
deterministic for a given ``seed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi
from scipy.special import erf

from .errors import CardiosegError

# ---------------------------------------------------------------------------------------------------------
# Z-disks in fluorescence images
# ---------------------------------------------------------------------------------------------------------


@dataclass
class ZdiskParams:
    """Parameters of one synthetic Z-disk image (lengths in µm).

    Intensities are relative to a bright Z-disk (1). ``photons`` is the photon count of that disk,
    ``coverage`` the share of the cell that holds myofibrils (hiPSC cardiomyocytes often have them
    only in part of the cell), ``brightness_sd`` the log-normal spread of the brightness between
    disks and between fibrils, and ``saturated`` the percentage of pixels clipped at the top of the
    range. ``sample(rng)`` draws a random, realistic set for training diversity.
    """

    pixel_size: float = 0.1
    sarcomere_length: float = 1.8
    sarcomere_jitter: float = 0.04
    disk_thickness: float = 0.3
    fibril_width: tuple[float, float] = (0.6, 1.6)
    fibril_gap: float = 0.12
    orientation: float = 20.0
    curvature: float = 0.8
    curvature_wavelength: float = 25.0
    disk_tilt: float = 0.1
    gap_fraction: float = 0.05
    punctate_fraction: float = 0.25
    psf_sigma: float = 0.16
    photons: float = 150.0
    read_noise: float = 0.005
    background: float = 0.02
    fibril_signal: float = 0.03
    illumination: float = 0.35
    cell_fill: float = 0.85
    coverage: float = 1.0
    brightness_sd: float = 0.3
    saturated: float = 0.0

    @classmethod
    def sample(cls, rng: np.random.Generator) -> ZdiskParams:
        """Random parameters within the ranges seen in confocal / Airyscan images of cardiomyocytes."""
        low_w = rng.uniform(0.5, 1.0)
        return cls(
            pixel_size=float(rng.uniform(0.04, 0.2)),
            sarcomere_length=float(rng.uniform(1.5, 2.3)),
            sarcomere_jitter=float(rng.uniform(0.0, 0.08)),
            disk_thickness=float(rng.uniform(0.15, 0.4)),
            fibril_width=(low_w, float(low_w + rng.uniform(0.3, 1.0))),
            fibril_gap=float(rng.uniform(0.05, 0.5)),
            orientation=float(rng.uniform(0, 180)),
            curvature=float(rng.uniform(0.0, 2.0)),
            curvature_wavelength=float(rng.uniform(12, 40)),
            disk_tilt=float(rng.uniform(0, 0.25)),
            gap_fraction=float(rng.uniform(0, 0.15)),
            punctate_fraction=float(rng.uniform(0, 0.6)),
            psf_sigma=float(rng.uniform(0.1, 0.25)),
            photons=float(np.exp(rng.uniform(np.log(10), np.log(1000)))),
            read_noise=float(rng.uniform(0.002, 0.04)),
            background=float(rng.uniform(0.0, 0.1)),
            fibril_signal=float(rng.uniform(0.0, 0.25)),
            illumination=float(rng.uniform(0.0, 0.6)),
            cell_fill=float(rng.uniform(0.6, 1.0)),
            coverage=float(rng.uniform(0.3, 1.0)),
            brightness_sd=float(rng.uniform(0.0, 0.6)),
            saturated=float(rng.choice([0.0, rng.uniform(0.0, 1.0)])),
        )


@dataclass
class SyntheticZdisk:
    """A synthetic Z-disk image and its exact ground truth.

    Attributes
    ----------
    image : numpy.ndarray
        ``YX`` fluorescence image.
    mask : numpy.ndarray
        uint8 0/1 Z-disk mask at pixel resolution.
    cell_mask : numpy.ndarray
        uint8 0/1 mask of the cell.
    pixel_size : float
        µm per pixel (both axes).
    sarcomere_length : float
        True mean Z-disk spacing along the myofibrils, µm.
    orientation : float
        Dominant myofibril axis, degrees counter-clockwise from +x as displayed (y down), in [0, 180).
    """

    image: np.ndarray
    mask: np.ndarray
    cell_mask: np.ndarray
    pixel_size: float
    sarcomere_length: float
    orientation: float


def _smooth_noise(shape: tuple[int, ...], sigma: float | Sequence[float], rng: np.random.Generator
                  ) -> np.ndarray:
    """Gaussian-filtered white noise scaled to unit standard deviation."""
    field = ndi.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return field / (field.std() + 1e-12)


def _cell_mask(shape: tuple[int, int], fill: float, angle: float, rng: np.random.Generator) -> np.ndarray:
    """Draw a smooth, elongated blob covering about ``fill`` of the field (everything when fill >= 1)."""
    if fill >= 0.999:
        return np.ones(shape, bool)
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    cy, cx = (np.array(shape) - 1) / 2
    t = np.deg2rad(angle)
    u = (xx - cx) * np.cos(t) - (yy - cy) * np.sin(t)
    v = (xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
    a, b = 0.62 * max(shape) * np.sqrt(fill), 0.42 * min(shape) * np.sqrt(fill)
    radius = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    wobble = 0.12 * _smooth_noise(shape, max(shape) / 10, rng)
    return radius + wobble < 1.0


def zdisk_image(
    shape: tuple[int, int] = (512, 512),
    params: ZdiskParams | None = None,
    *,
    seed: int = 0,
    dtype: type = np.uint16,
) -> SyntheticZdisk:
    """Make a fluorescence image of Z-disks (α-actinin-like staining) with its exact mask.

    Myofibrils are parallel bands (widths ``fibril_width``) that bend along a smooth sine, start and end
    at random places (so neighbours appear to split and merge), and carry Z-disks: thin bands across them
    every ``sarcomere_length`` (per-fibril length and phase: stagger), with per-disk jitter and tilt, some
    disks missing (gaps) and, in ``punctate_fraction`` of the fibrils, broken into dots as in immature
    hiPSC cardiomyocytes. Disks and fibrils vary in brightness (log-normal), myofibrils may fill only
    patches of the cell, and the image gets a point-spread blur, uneven illumination, Poisson–Gaussian
    noise and optional saturation. The mask is the disks' visible band: where the blurred, noise-free
    disk pattern reaches half the peak of a blurred disk (its full width at half maximum).

    Parameters
    ----------
    shape : tuple of int
        ``(rows, cols)``.
    params : ZdiskParams, optional
        Defaults to ``ZdiskParams()``; use ``ZdiskParams.sample(rng)`` for random ones.
    seed : int
        Seed of every random choice.
    dtype : numpy dtype
        ``uint8``, ``uint16`` (full range used) or a float type (0..1).
    """
    if len(shape) != 2 or min(shape) < 16:
        raise CardiosegError(f"zdisk_image needs a 2D shape of at least 16×16, got {shape}")
    p = params or ZdiskParams()
    if not 0.01 <= p.pixel_size <= 1.0:
        raise CardiosegError(f"pixel size {p.pixel_size} µm is outside 0.01–1 µm")
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[:h, :w].astype(np.float64) * p.pixel_size
    yy -= yy.mean()
    xx -= xx.mean()
    theta = np.deg2rad(p.orientation)
    # u runs along the fibrils, v across them; with y pointing down the fibrils run at +theta as displayed
    u = xx * np.cos(theta) - yy * np.sin(theta)
    v = xx * np.sin(theta) + yy * np.cos(theta)
    v = v + p.curvature * np.sin(2 * np.pi * u / p.curvature_wavelength + rng.uniform(0, 2 * np.pi))
    half = 0.75 * np.hypot(h, w) * p.pixel_size
    start_list: list[float] = []
    width_list: list[float] = []
    pos = -half
    while pos < half:
        width = rng.uniform(*p.fibril_width)
        start_list.append(pos)
        width_list.append(width)
        pos += width + rng.uniform(0.3, 1.7) * p.fibril_gap
    starts, widths = np.array(start_list), np.array(width_list)
    n = len(starts)
    idx = np.clip(np.searchsorted(starts, v) - 1, 0, n - 1)
    across = v - starts[idx]
    length = rng.uniform(0.4, 1.6, n) * 2 * half
    u0 = rng.uniform(-half - 0.5 * length, half - 0.5 * length)
    inside = (across >= 0) & (across < widths[idx]) & (u >= u0[idx]) & (u <= u0[idx] + length[idx])
    if p.coverage < 0.999:  # only bundles of neighbouring fibrils, ``coverage`` of them, are present
        bundles = ndi.gaussian_filter1d(rng.standard_normal(n), 2.0, mode="wrap")
        inside &= (bundles >= np.quantile(bundles, 1 - p.coverage))[idx]

    sl = p.sarcomere_length * (1 + rng.normal(0, 0.02, n))
    offset = rng.uniform(0, 1, n) * sl
    n_disks = int(np.ceil(2 * half / p.sarcomere_length)) + 4
    jitter = rng.normal(0, p.sarcomere_jitter, (n, n_disks)) * p.sarcomere_length
    tilt = rng.normal(0, p.disk_tilt, (n, n_disks))
    keep = rng.random((n, n_disks)) >= p.gap_fraction
    phase = (u - offset[idx]) / sl[idx]
    k = np.round(phase).astype(np.int64)
    kk = np.mod(k, n_disks)
    centred = across - widths[idx] / 2
    along = (phase - k) * sl[idx] - jitter[idx, kk] - tilt[idx, kk] * centred
    disks = inside & keep[idx, kk] & (np.abs(along) < p.disk_thickness / 2)

    punctate = rng.random(n) < p.punctate_fraction
    if punctate.any():
        dots = _smooth_noise(shape, max(0.15 / p.pixel_size, 0.7), rng) > 0.3
        disks &= ~punctate[idx] | dots

    cell = _cell_mask(shape, p.cell_fill, p.orientation, rng)
    disks &= cell
    fibrils = inside & cell
    brightness = np.exp(rng.normal(0, p.brightness_sd, (n, n_disks)) + rng.normal(0, p.brightness_sd, (n, 1)))
    signal = (
        p.background
        + 0.6 * p.background * cell
        + p.fibril_signal * fibrils
        + disks * brightness[idx, kk] / np.exp(p.brightness_sd**2)
    )
    sigma = p.psf_sigma / p.pixel_size
    signal = ndi.gaussian_filter(signal, sigma)
    illumination = 1 + p.illumination * _smooth_noise(shape, max(shape) / 4, rng) / 2
    signal = np.clip(signal * illumination, 0, None)
    noisy = rng.poisson(signal * p.photons) / p.photons + rng.normal(0, p.read_noise, shape)
    image = _to_dtype(noisy, dtype, p.saturated)
    weights = fibrils.sum()
    true_sl = float(np.sum(sl[idx][fibrils]) / weights) if weights else float(p.sarcomere_length)
    # the mask is the disks' half-maximum band after the blur: the visible band an annotator (or
    # ilastik, as for the ground truth of Croitor Ibrahim et al. 2024) draws, never thinner than
    # the optics show it
    seen = ndi.gaussian_filter(disks.astype(np.float32), sigma)
    band_peak = erf(p.disk_thickness / (2 * np.sqrt(2) * p.psf_sigma))
    return SyntheticZdisk(
        image=image,
        mask=((seen >= 0.5 * band_peak) & cell).astype(np.uint8),
        cell_mask=cell.astype(np.uint8),
        pixel_size=float(p.pixel_size),
        sarcomere_length=true_sl,
        orientation=float(np.mod(p.orientation, 180.0)),
    )


def _to_dtype(values: np.ndarray, dtype: npt.DTypeLike, saturated: float = 0.0) -> np.ndarray:
    """Scale float values (robustly, 0.01 % to 99.99 % or ``100 - saturated`` %) into ``dtype``."""
    dtype = np.dtype(dtype)
    lo, hi = np.percentile(values, (0.01, min(99.99, 100 - saturated)))
    scaled = np.clip((values - lo) / max(hi - lo, 1e-12), 0, 1)
    if dtype.kind == "f":
        return scaled.astype(dtype)
    if dtype.kind == "u":
        return np.round(scaled * np.iinfo(dtype).max).astype(dtype)
    raise CardiosegError(f"synthetic images can be uint8, uint16 or float, not {dtype}")


# ---------------------------------------------------------------------------------------------------------
# Mitochondria in EM stacks
# ---------------------------------------------------------------------------------------------------------


@dataclass
class SyntheticEM:
    """A synthetic EM stack (or slice) and its exact ground truth.

    Attributes
    ----------
    image : numpy.ndarray
        uint8 ``ZYX`` (or ``YX``) stack, membranes dark as in FIB-SEM / SBF-SEM.
    labels : numpy.ndarray
        int32 instance labels of the mitochondria (0 = background).
    mask : numpy.ndarray
        uint8 0/1 mitochondria mask.
    voxel_size : tuple of float
        µm per axis.
    """

    image: np.ndarray
    labels: np.ndarray
    mask: np.ndarray
    voxel_size: tuple[float, ...]


def _rotation(rng: np.random.Generator) -> np.ndarray:
    """Draw a random 3D rotation matrix."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))


def _place_mitochondrion(
    signal: np.ndarray, labels: np.ndarray, label: int, spacing: np.ndarray,
    rng: np.random.Generator, membrane: float, matrix_tone: float,
) -> bool:
    """Draw one ellipsoidal mitochondrion (double membrane, cristae) if it doesn't overlap another."""
    axes = np.sort(rng.uniform([0.12, 0.14, 0.25], [0.25, 0.32, 0.9]))  # semi-axes, µm
    rot = _rotation(rng)
    centre = rng.uniform(0, 1, 3) * np.array(labels.shape) * spacing
    reach = axes.max() + 2 * membrane
    lo = np.maximum(((centre - reach) / spacing).astype(int), 0)
    hi = np.minimum(((centre + reach) / spacing).astype(int) + 1, labels.shape)
    if np.any(hi - lo < 2):
        return False
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    if labels[tuple((centre / spacing).astype(int).clip(0, np.array(labels.shape) - 1))]:
        return False  # cheap rejection: the centre is already inside another mitochondrion
    grid = np.stack(np.meshgrid(*[np.arange(a, b) * s for a, b, s in zip(lo, hi, spacing, strict=True)],
                                indexing="ij"), axis=-1).astype(np.float32) - centre.astype(np.float32)
    local = grid @ rot.astype(np.float32)
    radius = np.sqrt(np.sum((local / axes) ** 2, axis=-1))
    depth = (1 - radius) * axes.min()  # approximate distance inside the surface, µm
    inside = depth > 0
    if not inside.any() or np.any(labels[box][depth > -membrane] > 0):
        return False
    labels[box][inside] = label
    cristae_dir = rot[:, 0] + rng.normal(0, 0.3, 3)
    along = grid @ (cristae_dir / np.linalg.norm(cristae_dir))
    along += 0.015 * _smooth_noise(along.shape, 3.0, rng)
    period = rng.uniform(0.05, 0.09)
    cristae = np.cos(2 * np.pi * along / period + rng.uniform(0, 6.3)) > 0.55
    tone = np.where(cristae, matrix_tone - 0.25, matrix_tone)
    ring = (depth > -membrane * 0.5) & (depth < membrane)
    region = signal[box]
    region[inside] = tone[inside]
    region[ring] = 0.15
    return True


def organelle_stack(
    shape: tuple[int, ...] = (32, 256, 256),
    voxel_size: tuple[float, ...] = (0.02, 0.008, 0.008),
    *,
    seed: int = 0,
    n_mitochondria: int | None = None,
    modality: str = "fibsem",
) -> SyntheticEM:
    """Make an EM-like stack with mitochondria, vesicles and ER-like membranes.

    Mitochondria are ellipsoids of 0.25–1.8 µm with a dark double membrane and cristae; the cytoplasm
    is textured and holds small vesicles and thin dark membrane sheets (distractors). Blur and noise
    follow. ``modality`` ``"fibsem"`` gives mitochondria darker than the cytoplasm, ``"sbfsem"`` gives
    higher-contrast membranes on a brighter background. A 2D ``shape`` gives a single slice.

    Parameters
    ----------
    shape : tuple of int
        ``(Z, Y, X)`` or ``(Y, X)``.
    voxel_size : tuple of float
        µm per axis (same length as ``shape``).
    seed : int
        Seed of every random choice.
    n_mitochondria : int, optional
        Attempts to place; by default about one per 0.5 µm³.
    modality : {"fibsem", "sbfsem"}
        Contrast style.
    """
    if len(shape) not in (2, 3) or len(voxel_size) != len(shape):
        raise CardiosegError(f"organelle_stack needs a 2D/3D shape with matching voxel size, got {shape}")
    if modality not in ("fibsem", "sbfsem"):
        raise CardiosegError(f"unknown modality {modality!r}; use 'fibsem' or 'sbfsem'")
    if len(shape) == 2:
        # a thin isotropic slab whose middle slice is the 2D image
        slab = organelle_stack((15, *shape), (voxel_size[-1], *voxel_size), seed=seed,
                               n_mitochondria=n_mitochondria, modality=modality)
        return SyntheticEM(slab.image[7], slab.labels[7], slab.mask[7], tuple(float(s) for s in voxel_size))
    spacing = np.asarray(voxel_size, float)
    rng = np.random.default_rng(seed)
    volume = float(np.prod(np.array(shape) * spacing))
    attempts = n_mitochondria if n_mitochondria is not None else max(2, int(volume / 0.12))
    base = 0.62 if modality == "fibsem" else 0.72
    signal = base + 0.05 * _smooth_noise(shape, 2.0, rng) + 0.03 * _smooth_noise(shape, 6.0, rng)
    # ER-like sheets: thin level sets of a smooth random field
    field = _smooth_noise(shape, tuple(np.maximum(0.04 / spacing, 1.0)), rng)
    signal[np.abs(field) < 0.08] -= 0.22
    labels = np.zeros(shape, np.int32)
    membrane = 0.012
    matrix = 0.45 if modality == "fibsem" else 0.5
    label = 0
    for _ in range(attempts * 3):
        if label >= attempts:
            break
        label += int(_place_mitochondrion(signal, labels, label + 1, spacing, rng, membrane, matrix))
    # vesicles: small light spheres with a dark rim, away from mitochondria
    for _ in range(max(1, attempts)):
        centre = rng.uniform(0, 1, 3) * np.array(shape) * spacing
        radius = rng.uniform(0.02, 0.05)
        lo = np.maximum(((centre - radius - membrane) / spacing).astype(int), 0)
        hi = np.minimum(((centre + radius + membrane) / spacing).astype(int) + 2, shape)
        box = tuple(slice(x, y) for x, y in zip(lo, hi, strict=True))
        grid = np.meshgrid(*[np.arange(x, y) * s for x, y, s in zip(lo, hi, spacing, strict=True)],
                           indexing="ij")
        dist = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True))) - radius
        if np.any(labels[box][dist < membrane]):
            continue
        region = signal[box]
        region[dist < 0] = base + 0.12
        region[np.abs(dist) < membrane / 2] = 0.2
    signal = ndi.gaussian_filter(signal, np.maximum(0.009 / spacing, 0.5))
    signal += rng.normal(0, 0.06, shape)
    image = np.round(np.clip(signal, 0, 1) * 255).astype(np.uint8)
    return SyntheticEM(image=image, labels=labels, mask=(labels > 0).astype(np.uint8),
                       voxel_size=tuple(float(s) for s in voxel_size))
