"""Synthetic data: deterministic, exact ground truth consistent with the image, known period."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.special import erf

from napari_cardioseg.core.errors import CardiosegError
from napari_cardioseg.core.measure.zdisk import fft_period
from napari_cardioseg.core.synth import ZdiskParams, organelle_stack, zdisk_image


def test_zdisk_is_deterministic():
    a, b = zdisk_image((96, 96), seed=3), zdisk_image((96, 96), seed=3)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert not np.array_equal(a.image, zdisk_image((96, 96), seed=4).image)


@pytest.mark.parametrize("length,angle", [(1.6, 0.0), (2.1, 35.0), (1.8, 100.0)])
def test_zdisk_period_matches_true_sarcomere_length(length, angle):
    params = ZdiskParams(pixel_size=0.1, sarcomere_length=length, orientation=angle, curvature=0.0,
                         sarcomere_jitter=0.0, punctate_fraction=0.0, cell_fill=1.0,
                         brightness_sd=0.0)
    s = zdisk_image((384, 384), params, seed=1, dtype=np.float32)
    assert abs(s.sarcomere_length - length) / length < 0.02
    period, axis = fft_period(s.image, (0.1, 0.1), period_range=(1.0, 3.0))
    assert abs(period - s.sarcomere_length) / s.sarcomere_length < 0.03
    assert min(abs(axis - s.orientation), 180 - abs(axis - s.orientation)) < 6


def test_zdisk_mask_marks_the_bright_bands():
    s = zdisk_image((256, 256), seed=2, dtype=np.float32)
    inside_cell = s.cell_mask > 0
    assert 0.01 < s.mask.mean() < 0.3
    assert np.all(s.mask <= s.cell_mask)
    assert s.image[s.mask > 0].mean() > 2 * s.image[inside_cell & (s.mask == 0)].mean()


@pytest.mark.parametrize(("psf", "thickness"), [(0.1, 0.3), (0.2, 0.2), (0.25, 0.4)])
def test_zdisk_mask_is_the_half_maximum_band(psf, thickness):
    """Across a disk the mask spans the full width at half maximum of the blurred band."""
    px = 0.02
    params = ZdiskParams(pixel_size=px, orientation=0.0, curvature=0.0, sarcomere_jitter=0.0,
                         disk_tilt=0.0, punctate_fraction=0.0, cell_fill=1.0, gap_fraction=0.0,
                         fibril_width=(2.0, 2.0), psf_sigma=psf, disk_thickness=thickness,
                         brightness_sd=0.0)
    mask = zdisk_image((300, 300), params, seed=1, dtype=np.float32).mask

    def profile(x):
        scale = np.sqrt(2) * psf
        return 0.5 * (erf((x + thickness / 2) / scale) - erf((x - thickness / 2) / scale))

    fwhm = 2 * brentq(lambda x: profile(x) - 0.5 * profile(0.0), 0.0, 5.0)
    edges = np.diff(np.pad(mask.astype(np.int8), ((0, 0), (1, 1))), axis=1)
    runs = np.flatnonzero(edges.ravel() == -1) - np.flatnonzero(edges.ravel() == 1)  # along the rows
    # rows near a fibril's edge see a weaker, narrower band; the widest runs cross its middle
    assert abs(np.percentile(runs, 90) * px - fwhm) <= 1.0 * px


@pytest.mark.parametrize("dtype,top", [(np.uint8, 255), (np.uint16, 65535), (np.float32, 1.0)])
def test_zdisk_dtypes(dtype, top):
    s = zdisk_image((64, 80), seed=0, dtype=dtype)
    assert s.image.dtype == dtype and s.image.shape == (64, 80) and s.mask.dtype == np.uint8
    assert s.image.max() <= top and s.image.max() > 0.5 * top


def test_random_parameters_stay_in_range():
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = ZdiskParams.sample(rng)
        assert 0.04 <= p.pixel_size <= 0.2 and 1.5 <= p.sarcomere_length <= 2.3
        assert 0.5 <= p.fibril_width[0] <= p.fibril_width[1] <= 2.0


def test_bad_zdisk_arguments():
    with pytest.raises(CardiosegError):
        zdisk_image((8, 8))
    with pytest.raises(CardiosegError):
        zdisk_image((64, 64), dtype=np.int32)


def test_em_stack_ground_truth():
    s = organelle_stack((12, 96, 96), (0.02, 0.01, 0.01), seed=5)
    again = organelle_stack((12, 96, 96), (0.02, 0.01, 0.01), seed=5)
    np.testing.assert_array_equal(s.image, again.image)
    assert s.image.dtype == np.uint8 and s.labels.dtype == np.int32
    assert s.labels.max() >= 2
    np.testing.assert_array_equal(s.mask, (s.labels > 0).astype(np.uint8))
    # mitochondria are darker than the cytoplasm (FIB-SEM contrast)
    assert s.image[s.mask > 0].mean() < s.image[s.mask == 0].mean() - 20


def test_em_single_slice():
    s = organelle_stack((80, 80), (0.01, 0.01), seed=1)
    assert s.image.shape == s.labels.shape == (80, 80) and s.voxel_size == (0.01, 0.01)


def test_bad_em_arguments():
    with pytest.raises(CardiosegError, match="modality"):
        organelle_stack((4, 16, 16), (0.02, 0.01, 0.01), modality="tem")
    with pytest.raises(CardiosegError):
        organelle_stack((4, 16, 16), (0.01, 0.01))
