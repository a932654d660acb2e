"""Window sampling: anchors are labelled pixels, classes balanced per eq. 6."""

from __future__ import annotations

import time

import numpy as np
import pytest

from napari_cardioseg.core.errors import CardiosegError
from napari_cardioseg.core.sampling import (
    MAX_CLASSES,
    ScribbleIndex,
    check_classes,
    check_pairs,
    extract,
    window_centre,
)


def _scribbles() -> list[np.ndarray]:
    a = np.zeros((40, 50), np.uint8)
    a[5, 5:45] = 1  # 40 background pixels
    a[20, 10:12] = 2  # only 2 pixels of class 1
    b = np.zeros((30, 30), np.uint8)
    b[3:6, 25] = 3  # 3 pixels of class 2
    b[10:20, 10] = 1  # 10 more background pixels
    return [a, b]


def test_counts_and_probabilities():
    index = ScribbleIndex(_scribbles())
    assert index.counts() == {1: 50, 2: 2, 3: 3}
    assert index.class_probabilities() == pytest.approx({1: 0.2, 2: 0.4, 3: 0.4})
    binary = ScribbleIndex([np.array([[1, 2, 0]])])
    assert binary.class_probabilities() == pytest.approx({1: 0.2, 2: 0.8})


def test_samples_are_labelled_and_class_balanced(rng):
    scribbles = _scribbles()
    index = ScribbleIndex(scribbles)
    draws = [index.sample(rng) for _ in range(3000)]
    values = np.array([scribbles[i][c] for i, c in draws])
    assert np.all(values > 0)
    freq = {v: np.mean(values == v) for v in (1, 2, 3)}
    assert freq[1] == pytest.approx(0.2, abs=0.03)
    assert freq[2] == pytest.approx(0.4, abs=0.03)
    assert freq[3] == pytest.approx(0.4, abs=0.03)
    # background pixels from both images are drawn in proportion to their counts
    bg_images = np.array([i for (i, _), v in zip(draws, values, strict=True) if v == 1])
    assert np.mean(bg_images == 1) == pytest.approx(10 / 50, abs=0.06)


def test_window_contains_anchor(rng):
    for _ in range(200):
        point = tuple(rng.integers(0, 100, size=3))
        centre = window_centre(point, (8, 32, 32), rng)
        for p, c, w in zip(point, centre, (8, 32, 32), strict=True):
            assert c - w // 2 <= p < c - w // 2 + w
            assert abs(p - c) <= w // 4


def test_extract_pads_outside():
    image = np.arange(20, dtype=float).reshape(4, 5)
    inside = extract(image, (2, 2), (2, 3))
    np.testing.assert_array_equal(inside, image[1:3, 1:4])
    corner = extract(image, (0, 0), (4, 4), fill=0)
    assert corner.shape == (4, 4)
    np.testing.assert_array_equal(corner[2:, 2:], image[:2, :2])
    assert corner[:2].sum() == 0 and corner[:, :2].sum() == 0
    mirrored = extract(image, (0, 0), (4, 4))
    np.testing.assert_array_equal(mirrored[2:, 2:], image[:2, :2])
    assert mirrored[1, 2] == image[0, 0]  # symmetric padding mirrors the border row


def test_refresh_picks_up_new_strokes():
    scribbles = _scribbles()
    index = ScribbleIndex(scribbles, refresh_every=0.05)
    scribbles[1][25, 25] = 4  # painted in place, as a Labels layer does
    assert 4 not in index.counts()
    assert not index.maybe_refresh() or 4 in index.counts()
    time.sleep(0.06)
    assert index.maybe_refresh()
    assert index.counts()[4] == 1


@pytest.mark.parametrize(("value", "dtype"), [(300, np.int32), (2**31, np.int64), (2**31, np.uint32),
                                              (MAX_CLASSES + 1, np.uint16)])
def test_scribble_values_beyond_the_class_bound_are_refused(value, dtype):
    image = np.zeros((16, 16), np.float32)
    scribbles = np.zeros((16, 16), dtype)
    scribbles[2, 2:6] = 1
    scribbles[8, 2:6] = value
    with pytest.raises(CardiosegError, match=f"value {value}, beyond the {MAX_CLASSES} classes"):
        check_pairs([image], [scribbles])
    scribbles[8, 2:6] = MAX_CLASSES  # the largest class a model can hold is accepted
    images, _ = check_pairs([image], [scribbles])
    assert images[0] is image


def test_check_classes_bounds_and_consecutive_values():
    check_classes({1: 5, 2: 3, 3: 1}, 3, transfer_hint=False)
    with pytest.raises(CardiosegError, match="skip 3, 4: classes must be consecutive"):
        check_classes({1: 5, 2: 3, 5: 1}, 5, transfer_hint=False)
    check_classes({1: 5, 3: 1}, 3, transfer_hint=True)  # fine-tuning may leave a class alone
    with pytest.raises(CardiosegError, match="more than the 256 classes"):
        check_classes({1: 5, 300: 1}, 300, transfer_hint=False)
    with pytest.raises(CardiosegError, match="beyond the model's 2 classes"):
        check_classes({1: 5, 3: 1}, 2, transfer_hint=False)
