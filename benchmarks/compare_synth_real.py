"""Real vs synthetic images: statistics and the figures in docs/images/ (not a test).

Needs the third-party images in ``../shared/data`` (never shipped). Prints, for the real hiPSC
cardiomyocyte and the synthetic Z-disk generator at the same pixel size, the Z-disk period, band
width, noise, intensity percentiles and skewness inside the cell; writes ``docs/images/synth_vs_real.png`` and
``docs/images/em_synth_vs_real.png``.

Usage: ``python benchmarks/compare_synth_real.py [--data ../shared/data]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from scipy import ndimage as ndi

from napari_cardioseg.core.io import read_single
from napari_cardioseg.core.measure.zdisk import fft_period
from napari_cardioseg.core.synth import ZdiskParams, organelle_stack, zdisk_image

ROOT = Path(__file__).resolve().parents[1]
PIXEL = 0.1195  # µm/px of the real single-cell image (see its SOURCE.md)
#: imaging conditions of the real cell (Airyscan-like low noise, patchy myofibrils, some saturation),
#: all inside the ranges that ``ZdiskParams.sample`` draws for training
REALISTIC = ZdiskParams(pixel_size=PIXEL, sarcomere_length=1.55, photons=600.0, read_noise=0.003,
                        background=0.005, fibril_signal=0.02, coverage=0.5, brightness_sd=0.5,
                        saturated=0.5, cell_fill=0.7, punctate_fraction=0.3, psf_sigma=0.22,
                        disk_thickness=0.4)


def noise_sigma(image: np.ndarray, region: np.ndarray) -> float:
    """Immerkær's noise estimate (grey levels) inside ``region``."""
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], float)
    response = np.abs(ndi.convolve(image.astype(float), kernel))
    return float(np.sqrt(np.pi / 2) * response[ndi.binary_erosion(region, iterations=2)].mean() / 6)


def band_width(image: np.ndarray, cell: np.ndarray) -> float:
    """Z-disk band width (µm, full width at half maximum) from the image alone.

    The autocorrelation of the in-cell image has a central lobe that is narrow along the
    myofibrils; for bands of width w its half-maximum width there is about √2·w. The narrow
    axis comes from the lobe's second moments (full axis of an ellipse = 4·√eigenvalue).
    """
    inside = cell.astype(bool)
    values = image.astype(float)
    centred = np.where(inside, values - values[inside].mean(), 0.0)
    h, w = centred.shape
    power = np.abs(np.fft.rfft2(centred, s=(2 * h, 2 * w))) ** 2
    auto = np.fft.fftshift(np.fft.irfft2(power, s=(2 * h, 2 * w)))
    # white noise adds to the zero lag only: take it from the four neighbours
    auto[h, w] = (auto[h - 1, w] + auto[h + 1, w] + auto[h, w - 1] + auto[h, w + 1]) / 4
    lobes, _ = ndi.label(auto >= 0.5 * auto[h, w])
    rows, cols = np.nonzero(lobes == lobes[h, w])
    narrow = np.linalg.eigvalsh(np.cov(np.stack([rows, cols])))[0]
    return float(4 * np.sqrt(narrow) * PIXEL / np.sqrt(2))


def zdisk_stats(image: np.ndarray, cell: np.ndarray) -> dict[str, float]:
    """Period (µm), noise and histogram shape inside the cell, relative to its 99th percentile."""
    cell = cell.astype(bool)
    values = image[cell].astype(float)
    top = np.percentile(values, 99)
    z = (values - values.mean()) / values.std()
    return {
        "period_um": fft_period(image, (PIXEL, PIXEL), cell, (1.0, 2.6))[0],
        "band_um": band_width(image, cell),
        "noise": noise_sigma(image, cell) / top,
        "p50": np.percentile(values, 50) / top,
        "p90": np.percentile(values, 90) / top,
        "skewness": float(np.mean(z**3)),
    }


def busiest_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` × ``size`` crop around the brightest region (heavily smoothed maximum)."""
    smooth = ndi.gaussian_filter(image.astype(np.float32), size / 6)
    cy, cx = np.unravel_index(np.argmax(smooth), smooth.shape)
    y = int(np.clip(cy - size // 2, 0, image.shape[0] - size))
    x = int(np.clip(cx - size // 2, 0, image.shape[1] - size))
    return image[y : y + size, x : x + size]


def zdisk_figure(data: Path) -> None:
    """Real cell vs synthetic image: full view, central crop, in-cell histogram."""
    real = read_single(data / "zdisk_fluor/sgi_sample_raw.tif").data
    cell = read_single(data / "zdisk_fluor/sgi_sample_cellmask.tif").data
    synth = zdisk_image((512, 512), REALISTIC, seed=0, dtype=np.uint8)
    fig, ax = plt.subplots(2, 3, figsize=(13, 8.5))
    for row, (img, mask, name) in enumerate([(real, cell, "real hiPSC-CM (third-party)"),
                                             (synth.image, synth.cell_mask, "synthetic (core.synth)")]):
        stats = zdisk_stats(img, mask)
        print(name, {k: round(float(v), 3) for k, v in stats.items()})
        ax[row, 0].imshow(img, cmap="gray")
        ax[row, 0].set_title(name)
        ax[row, 1].imshow(busiest_crop(img, 128), cmap="gray", interpolation="nearest")
        ax[row, 1].set_title(f"128 px crop; period {stats['period_um']:.2f} µm, "
                             f"band {stats['band_um']:.2f} µm")
        values = img[mask.astype(bool)] / np.percentile(img[mask.astype(bool)], 99)
        ax[row, 2].hist(values, bins=60, range=(0, 1.3), density=True, log=True)
        ax[row, 2].set_title(f"in-cell histogram; noise {stats['noise']:.3f}, skew {stats['skewness']:.1f}")
        for a in ax[row, :2]:
            a.axis("off")
    fig.tight_layout()
    fig.savefig(ROOT / "docs/images/synth_vs_real.png", dpi=70)


def em_figure(data: Path) -> None:
    """Real FIB-SEM / SBF-SEM slices vs the synthetic EM generator."""
    lucchi = read_single(data / "lucchi_pp_train/train_crop_image.tif").data[80, :256, :256]
    emnet = read_single(data / "emnet_cardiac_sbfsem/train_image.tif").data[0, :256, :256]
    fib = organelle_stack((16, 256, 256), (0.005, 0.005, 0.005), seed=0, modality="fibsem").image[8]
    sbf = organelle_stack((16, 256, 256), (0.05, 0.012, 0.012), seed=0, modality="sbfsem").image[8]
    fig, ax = plt.subplots(2, 2, figsize=(9, 9))
    for a, img, title in [(ax[0, 0], lucchi, "Lucchi++ FIB-SEM (real)"), (ax[0, 1], fib, "synthetic fibsem"),
                          (ax[1, 0], emnet, "EM-net cardiac SBF-SEM (real)"),
                          (ax[1, 1], sbf, "synthetic sbfsem")]:
        a.imshow(img, cmap="gray", vmin=0, vmax=255)
        a.set_title(f"{title}: mean {img.mean():.0f}, sd {img.std():.0f}")
        a.axis("off")
    fig.tight_layout()
    fig.savefig(ROOT / "docs/images/em_synth_vs_real.png", dpi=70)


def main() -> None:
    """Print the statistics and write both figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    zdisk_figure(args.data)
    em_figure(args.data)


if __name__ == "__main__":
    main()
