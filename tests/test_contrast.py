"""Contrast enhancement: known answers, monotone full-range mapping, outliers, per-slice, dtypes, NaN."""

from __future__ import annotations

import re

import numpy as np
import pytest

from napari_cardioseg.core.contrast import (
    MAX_BINS,
    METHODS,
    Method,
    Param,
    agcwd,
    agcwd_extended,
    all_params,
    check_params,
    enhance,
    enhance_steps,
    output_limits,
    percentile_stretch,
)
from napari_cardioseg.core.errors import CardiosegError
from napari_cardioseg.core.progress import Progress

DTYPES = [np.uint8, np.uint16, np.int32, np.float32, np.float64]
FUNCS = [agcwd, agcwd_extended, percentile_stretch]
TOP = {np.uint8: 255, np.uint16: 65535, np.int32: 2**31 - 1, np.float32: 1.0, np.float64: 1.0}


def _image(rng, dtype, shape=(2, 24, 20)) -> np.ndarray:
    """Skewed (gamma-distributed) intensities with a negative offset for signed dtypes."""
    values = rng.gamma(2.0, 30.0, shape) + 10
    if np.dtype(dtype).kind in "if":
        values -= 40
    return values.astype(dtype)


def test_agcwd_hand_computed_example():
    # levels 0..4 with counts 3, 0, 1, 2, 2: pdf_min = 0, pdf_max = 3/8; with alpha = 0.5 the weights
    # are pdf_max * sqrt([1, 0, 1/3, 2/3, 2/3]), cdf_w = [.3115, .3115, .4913, .7457, 1] and
    # T(l) / 4 = (l / 4) ** (1 - cdf_w(l))
    image = np.array([[0, 0, 0, 2, 3, 3, 4, 4]], np.uint8)
    out = agcwd(image, as_float=True)
    np.testing.assert_allclose(out[0, [0, 3, 4, 6]], [0.0, 0.70287, 0.92945, 1.0], atol=5e-5)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(agcwd(image), np.rint(255 * out.astype(np.float64)))


def test_agcwd_flat_histogram_keeps_equal_weights():
    # every level once: pdf_max == pdf_min, so cdf_w(l) = (l + 1) / 256
    ramp = np.arange(256, dtype=np.uint8).reshape(16, 16)
    levels = np.arange(256.0)
    expected = np.rint(255 * (levels / 255) ** (1 - (levels + 1) / 256))
    np.testing.assert_array_equal(agcwd(ramp).ravel(), expected)


def test_uint16_histogram_has_one_bin_per_grey_level(rng):
    # 4000 distinct 16-bit levels, each once: cdf_w(l) = (l + 1) / 4000 exactly, no 256-level binning
    image = (rng.permutation(4000) + 30000).astype(np.uint16).reshape(40, 100)
    levels = image.astype(np.float64) - 30000
    expected = (levels / 3999) ** (1 - (levels + 1) / 4000)
    out = agcwd(image, as_float=True)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    np.testing.assert_array_equal(agcwd(image), np.rint(65535 * expected))
    coarse = agcwd(image.astype(np.float64), bins=256)  # 256 bins give a coarser cdf_w
    assert np.abs(coarse - out).max() > 1e-3
    ranked = coarse.ravel()[np.argsort(image, axis=None)]
    assert np.all(np.diff(ranked[ranked < 1]) > 0)  # still the exact values in the gamma, below the top bin


def test_bit_depth_does_not_change_agcwd(rng):
    image8 = _image(rng, np.uint8)
    image16 = image8.astype(np.uint16) * 257
    np.testing.assert_allclose(agcwd(image8, as_float=True), agcwd(image16, as_float=True), atol=1e-6)
    np.testing.assert_allclose(agcwd(image8.astype(np.float32), as_float=True),
                               agcwd(image8, as_float=True), atol=1e-6)


@pytest.mark.parametrize("func", FUNCS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_monotone_full_range_same_dtype_input_untouched(rng, func, dtype):
    image = _image(rng, dtype)
    original = image.copy()
    out = func(image)
    np.testing.assert_array_equal(image, original)
    assert out.dtype == dtype and out.shape == image.shape
    assert out.min() == 0 and out.max() == TOP[dtype]
    order = np.argsort(image, axis=None, kind="stable")
    assert np.all(np.diff(out.ravel()[order].astype(np.float64)) >= 0)  # rank-preserving
    as_float = func(image, as_float=True)
    assert as_float.dtype == np.float32 and as_float.min() == 0 and as_float.max() == 1


@pytest.mark.parametrize("func", [agcwd, agcwd_extended])
def test_agcwd_is_strictly_increasing_on_floats(rng, func):
    values = np.sort(rng.normal(0, 1, 2000)).reshape(40, 50)
    out = func(values).ravel()
    inside = (out > 0) & (out < 1)  # agcwd-extended clips values beyond ±3.5 σ
    assert inside.sum() > 1900
    assert np.all(np.diff(out[inside]) > 0)


def test_percentile_stretch_known_answer():
    image = np.arange(101, dtype=np.float64).reshape(1, 101)  # percentile p is the value p
    out = percentile_stretch(image)
    np.testing.assert_allclose(out[0, 5:99], (np.arange(5, 99) - 5) / 93)
    assert np.all(out[0, :6] == 0) and np.all(out[0, 98:] == 1)
    np.testing.assert_array_equal(percentile_stretch(image.astype(np.uint8), 0, 100)[0],
                                  np.rint(np.arange(101) * 255 / 100))


def test_extended_equals_agcwd_without_outliers(rng):
    image = rng.integers(0, 1000, (30, 30)).astype(np.uint16)  # uniform: nothing beyond 1.8 σ
    np.testing.assert_array_equal(agcwd_extended(image), agcwd(image))


def test_outliers_barely_change_extended_agcwd(rng):
    clean = rng.integers(1000, 3001, (64, 64)).astype(np.uint16)
    hot = rng.choice(clean.size, 5, replace=False)
    dirty = clean.copy()
    dirty.flat[hot] = 65535
    rest = np.ones(clean.size, bool)
    rest[hot] = False
    change = {f: np.abs(f(dirty).astype(float) - f(clean)).ravel()[rest] for f in (agcwd, agcwd_extended)}
    assert change[agcwd].mean() > 0.2 * 65535  # plain AGCWD is thrown off by 5 hot pixels out of 4096
    assert change[agcwd_extended].max() < 0.001 * 65535
    assert np.all(agcwd_extended(dirty).flat[hot] == 65535)  # outliers are set to the range limit


def test_extended_clips_low_outliers_to_zero(rng):
    image = rng.normal(0, 1, (40, 40))
    image[0, :3] = -100.0
    out = agcwd_extended(image)
    assert np.all(out[0, :3] == 0) and np.sum(out == 0) == 4  # the 3 outliers plus the lowest inlier


def test_whole_volume_is_one_histogram(rng):
    vol = _image(rng, np.uint16, (3, 10, 12))
    tiled = np.concatenate(list(vol), axis=1)  # the same pixels side by side in one 2D image
    for func in FUNCS:
        np.testing.assert_array_equal(func(vol), np.stack(np.split(func(tiled), 3, axis=1)))


@pytest.mark.parametrize("func", FUNCS)
def test_per_slice_fits_each_slice(rng, func):
    vol = _image(rng, np.uint8, (3, 16, 16))
    vol[1] //= 4  # one dim slice
    per_slice = func(vol, per_slice=True)
    for z in range(3):
        np.testing.assert_array_equal(per_slice[z], func(vol[z]))
        assert per_slice[z].min() == 0 and per_slice[z].max() == 255
    whole = func(vol)
    assert whole[1].max() < 200 and not np.array_equal(whole, per_slice)
    np.testing.assert_array_equal(func(vol[0], per_slice=True), func(vol[0]))  # no effect on 2D


@pytest.mark.parametrize("func", FUNCS)
def test_nan_is_ignored_and_kept(rng, func):
    image = _image(rng, np.float32, (12, 16))
    with_nan = np.concatenate([image, np.full((12, 3), np.nan, np.float32)], axis=1)
    out = func(with_nan)
    assert np.all(np.isnan(out[:, 16:])) and not np.isnan(out[:, :16]).any()
    np.testing.assert_array_equal(out[:, :16], func(image))


def test_infinities_map_to_range_ends(rng):
    image = _image(rng, np.float64, (10, 10))
    extra = np.full((10, 1), np.nan)
    extra[:2, 0] = [np.inf, -np.inf]
    with_inf = np.concatenate([image, extra], axis=1)
    for func in FUNCS:
        out = func(with_inf)
        assert out[0, -1] == 1 and out[1, -1] == 0
        np.testing.assert_array_equal(out[:, :-1], func(image))  # the statistics ignore ±inf


@pytest.mark.parametrize("func", FUNCS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_constant_image_maps_to_zero(func, dtype):
    out = func(np.full((2, 5, 5), 7, dtype))
    assert out.dtype == dtype and np.all(out == 0)


def test_constant_with_nan_keeps_nan():
    image = np.full((4, 4), 3.0)
    image[0, 0] = np.nan
    out = agcwd_extended(image)
    assert np.isnan(out[0, 0]) and np.all(out.ravel()[1:] == 0)


def test_all_nan_image_is_an_error_but_an_all_nan_slice_is_kept(rng):
    with pytest.raises(CardiosegError, match="no finite values"):
        agcwd(np.full((4, 4), np.nan))
    vol = _image(rng, np.float32, (2, 8, 8))
    vol[1] = np.nan
    for func in FUNCS:
        out = func(vol, per_slice=True)
        assert np.all(np.isnan(out[1])) and out[0].min() == 0 and out[0].max() == 1


def test_mostly_blank_percentile_is_a_step():
    image = np.zeros((10, 20), np.uint16)
    image[0, :3] = [5, 6, 7]  # 197 zeros: the 5th and 98th percentiles are both 0
    out = percentile_stretch(image)
    assert np.all(out[0, :3] == 65535) and np.sum(out == 0) == 197


@pytest.mark.parametrize("bad,message", [
    (np.zeros((8, 8, 3), np.uint8), "RGB"),
    (np.zeros((2, 2, 8, 8), np.uint8), "must be 2D"),
    (np.zeros(8, np.uint8), "must be 2D"),
    (np.zeros((0, 8), np.uint8), "empty"),
    (np.zeros((8, 8), bool), "pixel type bool"),
    (np.zeros((8, 8), np.int64), "pixel type int64"),
    (np.zeros((8, 8), complex), "unsupported pixel type"),
])
def test_bad_images_raise(bad, message):
    with pytest.raises(CardiosegError, match=message):
        agcwd(bad)


@pytest.mark.parametrize("call,message", [
    (lambda im: agcwd(im, alpha=0), "alpha must be a number in (0, 1], got 0"),
    (lambda im: agcwd(im, alpha=float("nan")), "alpha must be a number in (0, 1], got nan"),
    (lambda im: agcwd(im, alpha=float("inf")), "alpha must be a number in (0, 1], got inf"),
    (lambda im: agcwd(im, alpha=1.5), "alpha must be a number in (0, 1]"),
    (lambda im: agcwd(im, alpha="0.5"), "alpha must be a number"),
    (lambda im: agcwd(im, alpha=True), "alpha must be a number"),
    (lambda im: agcwd(im, bins=1), "bins must be a whole number in [2, 65536], got 1"),
    (lambda im: agcwd(im, bins=2.5), "bins must be a whole number"),
    (lambda im: agcwd(im, bins=10**12), "bins must be a whole number in [2, 65536], got 1000000000000"),
    (lambda im: agcwd_extended(im, bins=MAX_BINS + 1), "bins must be a whole number in [2, 65536]"),
    (lambda im: agcwd_extended(im, n_sigma=0.5), "n_sigma must be a number in [1, 100], got 0.5"),
    (lambda im: agcwd_extended(im, n_sigma=float("inf")), "n_sigma must be a number in [1, 100], got inf"),
    (lambda im: percentile_stretch(im, 50, 50), "0 <= low < high <= 100, got low=50, high=50"),
    (lambda im: percentile_stretch(im, -1, 50), "low must be a number in [0, 100], got -1"),
    (lambda im: percentile_stretch(im, 5, float("nan")), "high must be a number in [0, 100], got nan"),
    (lambda im: enhance(im, "clahe"), "choose one of: agcwd, agcwd-extended, percentile"),
    (lambda im: enhance(im, "percentile", alpha=0.5),
     "method 'percentile' has no parameter 'alpha' (it takes low, high)"),
])
def test_bad_parameters_raise(call, message):
    with pytest.raises(CardiosegError, match=re.escape(message)):
        call(np.arange(16, dtype=np.uint8).reshape(4, 4))


def test_registry_rows_are_complete():
    assert list(METHODS) == ["agcwd", "agcwd-extended", "percentile"]
    shared = all_params()
    assert set(shared) == {"alpha", "bins", "n_sigma", "low", "high"}
    for name, method in METHODS.items():
        assert isinstance(method, Method) and method.name == name and method.help
        for param in method.params:
            assert shared[param.name] is param  # one description per parameter name
            assert param.type in (float, int) and param.help and np.isfinite([param.low, param.high]).all()
            if param.default is None:
                assert param.auto and param.check(None) is None
            else:
                assert param.check(param.default) == param.default  # defaults lie inside their range
        # the defaults of the row are what the method uses when nothing is given
        assert check_params(name, {}) == {p.name: p.default for p in method.params}


def test_param_range_ends():
    open_low = Param("x", float, 0.5, 0.0, 1.0, "x", low_open=True)
    assert open_low.check(1.0) == 1.0 and open_low.check(1e-9) == 1e-9
    for bad in (0.0, -0.0, 1.0 + 1e-12, float("-inf")):
        with pytest.raises(CardiosegError, match=r"x must be a number in \(0, 1\]"):
            open_low.check(bad)
    closed = Param("n", int, 3, 2, 9, "n")
    assert closed.check(2) == 2 and closed.check(9.0) == 9 and isinstance(closed.check(np.int64(4)), int)
    with pytest.raises(CardiosegError, match="n must be a whole number"):
        closed.check(None)  # None is only allowed where the default is automatic
    assert closed.flag == "--n" and Param("n_sigma", float, 1, 1, 2, "h").flag == "--n-sigma"


def test_a_new_method_is_one_function_and_one_row(monkeypatch, rng):
    def fit_invert(data, gain):
        lo, hi = float(np.nanmin(data)), float(np.nanmax(data))
        return lambda d: np.clip(gain * (hi - d.astype(np.float64)) / (hi - lo), 0, 1)

    gain = Param("gain", float, 1.0, 0.5, 2.0, "how much brighter")
    monkeypatch.setitem(METHODS, "invert", Method("invert", fit_invert, (gain,), "dark becomes bright"))
    image = np.arange(16, dtype=np.uint8).reshape(4, 4)
    np.testing.assert_array_equal(enhance(image, "invert"), np.rint(255 * (15.0 - image) / 15))
    with pytest.raises(CardiosegError, match=r"gain must be a number in \[0.5, 2\], got 3"):
        enhance(image, "invert", gain=3)


def test_registry_and_enhance_match_the_functions(rng):
    image = _image(rng, np.uint16)
    np.testing.assert_array_equal(enhance(image, "agcwd-extended", alpha=0.3, per_slice=True),
                                  agcwd_extended(image, 0.3, per_slice=True))
    for name, func in (("agcwd", agcwd), ("agcwd-extended", agcwd_extended),
                       ("percentile", percentile_stretch)):
        np.testing.assert_array_equal(enhance(image, name), func(image))


def test_steps_yield_progress_per_slice(rng):
    image = _image(rng, np.uint8, (3, 8, 8))
    steps = enhance_steps(image, "percentile", low=2.0)
    progress = []
    with pytest.raises(StopIteration) as stop:
        while True:
            progress.append(next(steps))
    assert progress == [Progress(i, 3, "enhance") for i in range(4)]
    np.testing.assert_array_equal(stop.value.value, percentile_stretch(image, 2.0))


def test_bad_parameters_are_refused_before_any_work():
    steps = enhance_steps(np.zeros((2, 2, 2, 2)), "agcwd", bins=10**12)  # a bad image too: params first
    with pytest.raises(CardiosegError, match="bins must be"):
        next(steps)


@pytest.mark.parametrize("func", FUNCS)
def test_float16_gives_float32(rng, func):
    image = _image(rng, np.float16)
    out = func(image)
    assert out.dtype == np.float32 and out.min() == 0 and out.max() == 1
    np.testing.assert_allclose(out, func(image.astype(np.float32)), atol=1e-6)
    assert output_limits(np.float16) == (0.0, 1.0)


@pytest.mark.parametrize("func", FUNCS)
@pytest.mark.parametrize("dtype,limit", [(np.float32, 3.3e38), (np.float64, 1.7e308)])
def test_values_near_the_float_limits_do_not_overflow(rng, func, dtype, limit):
    unit = rng.random((2, 20, 20))
    image = (limit * (2 * unit - 1)).astype(dtype)  # spans -limit..limit
    with np.errstate(all="raise"):
        out = func(image)
    expected = func((2 * unit - 1).astype(dtype))  # the same picture at ordinary magnitudes
    assert not np.isnan(out).any() and out.min() == 0 and out.max() == 1
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_output_limits():
    assert output_limits(np.uint8) == (0.0, 255.0)
    assert output_limits(np.uint16) == (0.0, 65535.0)
    assert output_limits(np.float64) == (0.0, 1.0)
    assert output_limits(np.uint16, as_float=True) == (0.0, 1.0)
