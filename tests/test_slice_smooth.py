"""Smoothing a 2D net's probabilities across slices: width from the voxel size, in place by
slabs equal to one pass, off without a calibration."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import zarr
from scipy import ndimage as ndi

from napari_cardioseg.core.errors import CardiosegError
from napari_cardioseg.core.slice_smooth import (
    CONTINUOUS,
    SLAB,
    applied_sigma,
    check_sigma,
    default_sigma,
    slice_continuity,
    slice_radius,
    slice_sigma,
    smooth,
    smooth_in_place,
)


def reference(prob: np.ndarray, sigma: float) -> np.ndarray:
    """Whole-array Gaussian along Z with edges reflected, cut at three widths (rounded up)."""
    return ndi.gaussian_filter1d(prob.astype(np.float64), sigma, axis=1, mode="reflect",
                                 radius=int(np.ceil(3.0 * sigma)))


@pytest.mark.parametrize(("scale", "sigma"), [
    ((0.005, 0.005, 0.005), 1.0),   # isotropic FIB-SEM: one slice
    ((0.02, 0.005, 0.005), 1.0),    # sections four pixels thick: still one slice
    ((0.05, 0.01, 0.008), 0.64),    # thicker: four of the finer in-plane pixels
    ((0.16, 0.01, 0.01), 0.25),     # sixteen pixels thick: a quarter of a slice
    ((0.2, 0.01, 0.01), 0.0),       # narrower than MIN_SIGMA: skipped
    ((0.003, 0.006, 0.006), 1.0),   # slices closer than pixels: one slice
    (None, 0.0),                    # unknown spacing: never guessed
    ((0.005, 0.005), 0.0),          # a 2D image has no slices
    ((0.0, 0.005, 0.005), 0.0),
    ((float("nan"), 0.005, 0.005), 0.0),
])
def test_width_is_one_slice_at_most_four_pixels(scale, sigma):
    assert slice_sigma(scale) == pytest.approx(sigma)


def test_width_applies_only_to_a_2d_model_on_a_stack():
    assert applied_sigma(2, 3, 1.5) == 1.5
    assert applied_sigma(3, 3, 1.5) == applied_sigma(2, 2, 1.5) == 0.0
    with pytest.raises(CardiosegError, match="z_sigma"):
        applied_sigma(2, 3, -1.0)


def test_radius_and_bad_widths():
    assert [slice_radius(s) for s in (0.0, 0.25, 1.0, 1.01, 2.0)] == [0, 1, 3, 4, 6]
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(CardiosegError, match="z_sigma"):
            check_sigma(bad)


@pytest.mark.parametrize("depth", [1, 5, SLAB, SLAB + 1, 3 * SLAB + 7])
@pytest.mark.parametrize("sigma", [0.4, 1.0, 6.0])
def test_in_place_by_slabs_equals_one_pass(rng, depth, sigma):
    raw = rng.random((2, 1, 6, 5)).astype(np.float32)
    raw = np.repeat(raw, depth, axis=1) * rng.random((1, depth, 1, 1)).astype(np.float32)
    raw[1] = 1 - raw[0]
    expected = reference(raw, sigma)
    prob = raw.copy()
    smooth_in_place(prob, sigma)
    np.testing.assert_allclose(prob, expected, atol=1e-6)
    store = zarr.zeros(raw.shape, chunks=(1, 3, 6, 5), dtype=np.float32)
    store[...] = raw
    smooth_in_place(store, sigma)  # an array-like that is not NumPy: slab by slab
    np.testing.assert_allclose(store[...], expected, atol=1e-6)
    np.testing.assert_allclose(prob.sum(axis=0), 1.0, atol=1e-6)  # still probabilities
    if depth > 1:
        assert np.abs(prob - raw).max() > 1e-3


def test_zero_width_changes_nothing(rng):
    prob = rng.random((2, 9, 4, 4)).astype(np.float32)
    kept = prob.copy()
    smooth_in_place(prob, 0.0)
    assert smooth(prob, 0.0) is prob
    np.testing.assert_array_equal(prob, kept)


def test_continuity_tells_a_volume_from_a_stack_of_unrelated_tiles(volume):
    continuous = volume((12, 96, 80))
    unrelated = np.stack([volume((1, 96, 80))[0] for _ in range(12)])
    assert slice_continuity(continuous) > 0.9
    assert abs(slice_continuity(unrelated)) < CONTINUOUS
    scale = (0.005, 0.005, 0.005)
    assert default_sigma(continuous, scale) == 1.0
    assert default_sigma(unrelated, scale) == 0.0
    assert default_sigma(continuous, None) == 0.0  # no pixel size: never smoothed
    assert default_sigma(continuous[0], scale[1:]) == 0.0  # a 2D image
    lazy = da.from_array(continuous, chunks=(1, 32, 32))
    assert slice_continuity(lazy) == pytest.approx(slice_continuity(continuous))
    assert slice_continuity(continuous[:1]) == 1.0  # one slice: nothing to compare
    assert slice_continuity(np.zeros((3, 2, 3))) == 1.0  # flat and smaller than the pooling


@pytest.mark.parametrize("output,streamed", [("out.tif", False), ("out.tif", True),
                                             ("out.zarr", True)])
def test_predict_file_notes_a_calibrated_stack_of_unrelated_tiles(tmp_path, volume, user_model,
                                                                  monkeypatch, output, streamed):
    from napari_cardioseg.core import stream_tiff
    from napari_cardioseg.core.one_file import predict_file
    from napari_cardioseg.core.progress import drain
    from napari_cardioseg.core.writes import write_tiff

    if streamed:  # every path decides the width the same way and says why it is 0
        monkeypatch.setattr(stream_tiff, "STREAM_VOXELS", 0)
    tiles = np.stack([volume((1, 40, 48))[0] for _ in range(4)])
    write_tiff(tmp_path / "tiles.tif", tiles, (0.01, 0.01, 0.01))
    write_tiff(tmp_path / "plain.tif", tiles)
    for name, expected in (("tiles.tif", 1), ("plain.tif", 0)):  # uncalibrated: nothing to say
        notes: list[str] = []
        drain(predict_file(tmp_path / name, tmp_path / f"{name}-{output}", model="tiny",
                           device="cpu", note=notes.append))
        assert sum("do not continue each other" in n for n in notes) == expected


def test_width_for_is_zero_for_a_3d_net_and_a_2d_image(volume):
    from napari_cardioseg.core.slice_smooth import width_for

    smooth_stack = ndi.gaussian_filter(volume((12, 40, 48)).astype(np.float32), 3)
    tiles = np.stack([volume((1, 40, 48))[0] for _ in range(4)])
    scale = (0.01, 0.01, 0.01)
    notes: list[str] = []
    assert width_for(2, smooth_stack, scale, "a", notes.append) == 1.0
    assert width_for(3, smooth_stack, scale, "a", notes.append) == 0.0  # a 3D net is not smoothed
    assert width_for(3, tiles, scale, "b", notes.append) == 0.0
    assert width_for(2, smooth_stack[0], scale[1:], "c", notes.append) == 0.0
    assert notes == []
    assert width_for(2, tiles, scale, "d", notes.append) == 0.0 and len(notes) == 1
