"""The simulated user: first strokes and corrections on known geometry."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from napari_cardioseg.core.strokes import correction_strokes, first_strokes


def _disks() -> np.ndarray:
    yy, xx = np.mgrid[:100, :100]
    return ((yy - 30) ** 2 + (xx - 30) ** 2 < 15**2) | ((yy - 70) ** 2 + (xx - 65) ** 2 < 12**2)


def test_first_strokes_stay_inside_their_class():
    mask = _disks()
    s = first_strokes(mask, np.random.default_rng(0), per_class=4, length=11)
    assert set(np.unique(s)) == {0, 1, 2}
    assert mask[s == 2].all() and not mask[s == 1].any()
    # strokes are short: every painted pixel is near one of at most 4 + 4 centres
    assert 4 <= np.count_nonzero(s == 1) <= 4 * 11
    assert 1 <= np.count_nonzero(s == 2) <= 4 * 11 * 2


def test_first_strokes_are_seeded():
    mask = _disks()
    a = first_strokes(mask, np.random.default_rng(3))
    b = first_strokes(mask, np.random.default_rng(3))
    assert np.array_equal(a, b)


def test_correction_strokes_target_the_largest_wrong_regions():
    truth = np.zeros((60, 60), bool)
    truth[5:25, 5:25] = True  # missed entirely: the false negative
    truth[38:47, 38:47] = True  # small miss (81 px; 25 px after the 2 px margin)
    pred = np.zeros_like(truth)
    pred[30:50, 5:15] = True  # false positive, 200 px
    pred[2:4, 50:53] = True  # tiny false positive, 6 px: ignored
    painted = np.zeros(truth.shape, np.uint8)
    new = correction_strokes(pred, truth, painted, np.random.default_rng(0), per_kind=1,
                             length=9, min_size=20)
    assert np.count_nonzero(new == 2) > 0 and truth[new == 2].all()
    assert not new[38:47, 38:47].any()  # only the largest false negative
    assert np.count_nonzero(new == 1) > 0 and (pred & ~truth)[new == 1].all()
    assert not new[2:4, 50:53].any()
    two = correction_strokes(pred, truth, painted, np.random.default_rng(0), per_kind=2,
                             length=9, min_size=20)
    assert two[38:47, 38:47].any()


def test_correction_strokes_skip_slivers_along_edges():
    truth = np.zeros((80, 80), bool)
    truth[10:40, 10:40] = True
    pred = np.zeros_like(truth)
    pred[8:42, 8:42] = True  # a 2 px rim of false positive all around the object: 264 px
    pred[55:70, 50:75] = True  # a plain false positive, 375 px
    painted = np.zeros(truth.shape, np.uint8)
    new = correction_strokes(pred, truth, painted, np.random.default_rng(0), per_kind=2)
    assert new[55:70, 50:75].any() and not new[:50].any()  # the rim gets no stroke
    edge = ~ndi.binary_erosion(pred[55:70, 50:75], iterations=2, border_value=0)
    assert not new[55:70, 50:75][edge].any()  # strokes keep 2 px from the error's edge
    old = correction_strokes(pred, truth, painted, np.random.default_rng(0), per_kind=2, margin=0)
    assert old[:50].any()  # without the margin the rim is stroked, as before


def test_correction_strokes_never_repaint():
    truth = np.zeros((30, 30), bool)
    truth[5:25, 5:25] = True
    pred = np.zeros_like(truth)
    painted = np.zeros(truth.shape, np.uint8)
    painted[5:25, 15] = 1  # a (wrong) earlier stroke across the region
    new = correction_strokes(pred, truth, painted, np.random.default_rng(1), per_kind=1, length=29)
    assert not new[painted > 0].any()
    assert correction_strokes(truth, truth, painted, np.random.default_rng(1)).sum() == 0
