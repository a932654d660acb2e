"""On-the-fly augmentation of an image patch and its scribbles, 2D or 3D.

Geometric changes (small scale change, elastic warp, flips, 90° rotations in the YX plane)
are applied identically to both arrays, with linear interpolation for the image and nearest
neighbour for the labels; intensity/contrast jitter touches the image only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation strengths (0 or False switches one off).

    Attributes
    ----------
    scale : float
        Maximum relative zoom (0.1 = up to ±10 %, as in Žerovnik Mekuč et al. 2020).
    elastic : float
        Standard deviation in pixels of the smooth elastic displacement.
    elastic_prob : float
        Probability that a patch is warped elastically.
    flips, rotations : bool
        Random flips along every axis / random multiples of 90° in the YX plane.
    contrast, brightness : float
        Relative contrast jitter and brightness shift (in units of the patch std).
    """

    scale: float = 0.1
    elastic: float = 2.0
    elastic_prob: float = 0.5
    flips: bool = True
    rotations: bool = True
    contrast: float = 0.2
    brightness: float = 0.1


NO_AUGMENT = AugmentConfig(0.0, 0.0, 0.0, False, False, 0.0, 0.0)


def context_shape(shape: Sequence[int], config: AugmentConfig) -> tuple[int, ...]:
    """Crop size to extract so that zoom and warp of an ``shape`` patch stay inside it."""
    if not (config.scale or config.elastic):
        return tuple(shape)
    return tuple(
        s + 2 * (math.ceil(s * config.scale / 2) + math.ceil(3 * config.elastic) + 1) for s in shape
    )


def _coordinates(
    in_shape: Sequence[int], out_shape: Sequence[int], rng: np.random.Generator,
    config: AugmentConfig,
) -> np.ndarray:
    """Return the sampling coordinates (ndim, *out_shape) of a zoomed and warped centre crop."""
    zoom = 1.0 + rng.uniform(-config.scale, config.scale)
    grids = np.meshgrid(
        *[(np.arange(o) - (o - 1) / 2) * zoom + (i - 1) / 2
          for i, o in zip(in_shape, out_shape, strict=True)],
        indexing="ij",
    )
    coords = np.stack(grids).astype(np.float32)
    if config.elastic and rng.random() < config.elastic_prob:
        for axis in range(len(out_shape)):
            coarse = rng.normal(0.0, config.elastic, size=(3,) * len(out_shape))
            factors = [o / 3 for o in out_shape]
            coords[axis] += ndi.zoom(coarse, factors, order=1, mode="nearest", grid_mode=True)
    return coords


def augment_pair(
    image: np.ndarray,
    labels: np.ndarray,
    out_shape: Sequence[int],
    rng: np.random.Generator,
    config: AugmentConfig = AugmentConfig(),
) -> tuple[np.ndarray, np.ndarray]:
    """Augment an image crop and its labels together and return their ``out_shape`` centre.

    Parameters
    ----------
    image : numpy.ndarray
        Float image crop of :func:`context_shape` size (or larger).
    labels : numpy.ndarray
        Integer labels of the same shape (0 = unlabelled; areas warped in from outside are 0).
    out_shape : sequence of int
        Shape of the returned patches.
    rng : numpy.random.Generator
        Source of randomness (the same seed gives the same result).
    config : AugmentConfig
        Strengths.

    Returns
    -------
    tuple of numpy.ndarray
        Contiguous ``float32`` image and labels (input dtype), both of ``out_shape``.
    """
    out_shape = tuple(out_shape)
    if config.scale or config.elastic:
        coords = _coordinates(image.shape, out_shape, rng, config)
        img = ndi.map_coordinates(image.astype(np.float32, copy=False), coords, order=1,
                                  mode="mirror")
        lab = ndi.map_coordinates(labels, coords, order=0, mode="constant", cval=0)
    else:
        starts = [(i - o) // 2 for i, o in zip(image.shape, out_shape, strict=True)]
        window = tuple(slice(a, a + o) for a, o in zip(starts, out_shape, strict=True))
        img, lab = image[window].astype(np.float32), labels[window]
    if config.flips:
        for axis in range(img.ndim):
            if rng.random() < 0.5:
                img, lab = np.flip(img, axis), np.flip(lab, axis)
    if config.rotations:
        k = int(rng.integers(4)) if out_shape[-1] == out_shape[-2] else 2 * int(rng.integers(2))
        img, lab = np.rot90(img, k, axes=(-2, -1)), np.rot90(lab, k, axes=(-2, -1))
    if config.contrast or config.brightness:
        mean, std = float(img.mean()), float(img.std()) + 1e-6
        contrast = 1.0 + rng.uniform(-config.contrast, config.contrast)
        shift = rng.uniform(-config.brightness, config.brightness) * std
        img = (img - mean) * contrast + mean + shift
    return np.ascontiguousarray(img, dtype=np.float32), np.ascontiguousarray(lab)
