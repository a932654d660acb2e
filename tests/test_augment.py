"""Augmentation keeps image and labels aligned and shapes fixed, in 2D and 3D."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_cardioseg.core.augment import NO_AUGMENT, AugmentConfig, augment_pair, context_shape

GEOMETRY_ONLY = AugmentConfig(contrast=0.0, brightness=0.0, elastic_prob=1.0)


def _blobs(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Piecewise-constant labels 1..4 in blocks, so every pixel's value is known."""
    labels = np.ones(shape, np.int32)
    for value in (2, 3, 4):
        start = [int(rng.integers(0, s - s // 3)) for s in shape]
        labels[tuple(slice(a, a + s // 3) for a, s in zip(start, shape, strict=True))] = value
    return labels


@pytest.mark.parametrize("out_shape", [(32, 32), (8, 24, 24), (20, 28)])
def test_intensity_travels_with_label(rng, out_shape):
    shape = context_shape(out_shape, GEOMETRY_ONLY)
    assert all(c > o for c, o in zip(shape, out_shape, strict=True))
    for _ in range(10):
        labels = _blobs(shape, rng)
        image = labels.astype(np.float32) * 10.0
        img, lab = augment_pair(image, labels, out_shape, rng, GEOMETRY_ONLY)
        assert img.shape == lab.shape == out_shape
        assert img.dtype == np.float32 and lab.dtype == labels.dtype
        assert img.flags.c_contiguous and lab.flags.c_contiguous
        labelled = lab > 0
        assert labelled.mean() > 0.95  # the context crop covers the warped window
        # away from label edges (where linear interpolation mixes values) the values match
        interior = ndi.minimum_filter(lab, 3, mode="constant") == ndi.maximum_filter(lab, 3)
        interior &= labelled
        assert interior.mean() > 0.2
        assert np.mean(np.round(img[interior] / 10.0) == lab[interior]) > 0.99


def test_flips_and_rotations_are_exact(rng):
    config = AugmentConfig(scale=0.0, elastic=0.0, contrast=0.0, brightness=0.0)
    image = rng.random((16, 16)).astype(np.float32)
    labels = np.arange(256).reshape(16, 16)
    seen = set()
    for _ in range(30):
        img, lab = augment_pair(image, labels, (16, 16), rng, config)
        np.testing.assert_array_equal(img.ravel(), image.ravel()[lab.ravel()])
        seen.add(lab.tobytes())
    assert len(seen) == 8  # the dihedral group of the square


def test_no_augment_is_centre_crop_and_intensity_jitter_spares_labels(rng):
    image = rng.random((10, 12)).astype(np.float32)
    labels = rng.integers(0, 3, (10, 12))
    img, lab = augment_pair(image, labels, (6, 8), rng, NO_AUGMENT)
    np.testing.assert_array_equal(img, image[2:8, 2:10])
    np.testing.assert_array_equal(lab, labels[2:8, 2:10])
    jitter = AugmentConfig(scale=0.0, elastic=0.0, flips=False, rotations=False)
    img, lab = augment_pair(image, labels, (10, 12), rng, jitter)
    np.testing.assert_array_equal(lab, labels)
    # an affine intensity change: perfectly correlated with the input, but not equal to it
    assert np.corrcoef(img.ravel(), image.ravel())[0, 1] == pytest.approx(1.0, abs=1e-5)
    assert not np.allclose(img, image)


def test_same_seed_same_result():
    image = np.random.default_rng(1).random((40, 40)).astype(np.float32)
    labels = (image > 0.5).astype(np.uint8)
    a = augment_pair(image, labels, (32, 32), np.random.default_rng(5))
    b = augment_pair(image, labels, (32, 32), np.random.default_rng(5))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
