"""Shape statistics stay inside their mathematical bounds for random objects of every size,
huge label ids measure in little memory, and uncalibrated images are measured in pixels."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_cardioseg.core.measure import list_columns, measure

SPACINGS_3D = [(1.0, 1.0, 1.0), (0.5, 0.1, 0.1), (0.03, 0.03, 0.2)]


def random_objects(rng: np.random.Generator, ndim: int, n: int) -> list[np.ndarray]:
    """Small random objects of every sort: single voxels, pairs, lines, plates, blobs, noise."""
    out = []
    for i in range(n):
        shape = (9,) * ndim
        obj = np.zeros(shape, bool)
        sort = i % 6
        centre = tuple(rng.integers(2, 7, ndim))
        if sort == 0:
            obj[centre] = True
        elif sort == 1:
            obj[centre] = True
            axis = rng.integers(ndim)
            other = list(centre)
            other[axis] += 1
            obj[tuple(other)] = True
        elif sort == 2:  # line along one axis
            sl = [slice(c, c + 1) for c in centre]
            axis = rng.integers(ndim)
            sl[axis] = slice(1, 1 + rng.integers(2, 8))
            obj[tuple(sl)] = True
        elif sort == 3:  # plate one voxel thick
            sl = [slice(1, 1 + rng.integers(2, 8)) for _ in range(ndim)]
            sl[rng.integers(ndim)] = slice(centre[0], centre[0] + 1)
            obj[tuple(sl)] = True
        elif sort == 4:  # random blob
            obj = ndi.binary_opening(rng.random(shape) < 0.6) | obj
            obj[centre] = True
        else:  # sparse noise, 8/26-connected pieces
            obj = rng.random(shape) < 0.25
            obj[centre] = True
        out.append(obj)
    return out


def check_bounds(objects, ndim):
    ratios = ("sphericity", "compactness", "solidity") if ndim == 3 else ("circularity", "solidity")
    for name in ratios:
        v = objects[name]
        ok = np.isfinite(v)
        assert np.all((v[ok] > 0) & (v[ok] <= 1 + 1e-9)), (name, v[ok].max())
    elongation = objects["elongation"]
    assert np.all(np.isfinite(elongation)) and np.all(elongation >= 1 - 1e-9)
    if ndim == 3:
        assert np.all(objects["flatness"] >= 1 - 1e-9)
        assert np.all(objects["compactness"][np.isfinite(objects["compactness"])]
                      <= objects["sphericity"][np.isfinite(objects["sphericity"])] + 1e-12)
    size = objects["volume_um3" if ndim == 3 else "area_um2"]
    assert np.all(size > 0)
    missing = ~np.isfinite(objects["sphericity" if ndim == 3 else "circularity"])
    notes = objects["shape_note"]
    assert all((note != "") == bool(m) for note, m in zip(notes, missing, strict=True))


@pytest.mark.parametrize("spacing", SPACINGS_3D)
def test_random_3d_objects_stay_in_bounds(spacing):
    rng = np.random.default_rng(42)
    for obj in random_objects(rng, 3, 60):
        objects = measure(np.pad(obj, 1).astype(np.uint8), spacing, "shapes", min_size=0,
                          connectivity=3).objects
        assert len(objects) >= 1
        check_bounds(objects, 3)


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (0.2, 0.05)])
def test_random_2d_objects_stay_in_bounds(spacing):
    rng = np.random.default_rng(7)
    for obj in random_objects(rng, 2, 120):
        objects = measure(np.pad(obj, 1).astype(np.uint8), spacing, "shapes", min_size=0).objects
        check_bounds(objects, 2)


def test_small_objects_get_a_note_not_a_huge_value():
    labels = np.zeros((8, 12, 12), np.uint8)
    labels[2, 2, 2] = 1                 # one voxel
    labels[4, 5, 5:7] = 1               # two voxels
    labels[1:6, 8:11, 8:11] = 1         # 45 voxels: resolved
    objects = measure(labels, (0.5, 0.1, 0.1), "shapes", min_size=0).objects
    by_size = np.argsort(objects["volume_um3"])
    assert list(objects["shape_note"][by_size]) == ["fewer than 27 voxels"] * 2 + [""]
    assert np.isnan(objects["sphericity"][by_size[:2]]).all()
    assert 0 < objects["sphericity"][by_size[2]] <= 1
    assert objects["solidity"][by_size[0]] == pytest.approx(1.0)  # one voxel is its own hull
    assert objects["elongation"][by_size[0]] == pytest.approx(5.0)  # a 0.5 x 0.1 x 0.1 box
    assert objects["elongation"][by_size[1]] == pytest.approx(2.5)


def test_solidity_of_an_l_shape():
    labels = np.zeros((12, 12), np.uint8)
    labels[1:11, 1:4] = 1
    labels[8:11, 1:11] = 1
    obj = measure(labels, (1.0, 1.0), "shapes").objects.row(0)
    # 51 pixels; hull of the pixel corners: 10x10 square minus the triangle beyond the diagonal
    # from (0.5, 3.5) to (7.5, 10.5) ... i.e. 100 - 7*7/2 = 75.5
    assert obj["solidity"] == pytest.approx(51 / 75.5)


def test_touches_border():
    labels = np.zeros((20, 20), np.uint8)
    labels[0:4, 5:9] = 1
    labels[8:12, 8:12] = 2
    labels[15:20, 15:20] = 3
    objects = measure(labels, (0.1, 0.1), "shapes").objects
    assert dict(zip(objects["label"], objects["touches_border"], strict=True)) == {1: 1, 2: 0, 3: 1}
    zd = measure(labels > 0, (0.1, 0.1), "zdisk", min_length=0).objects
    assert sorted(zd["touches_border"]) == [0, 1, 1]


def test_default_minimum_size_is_physical():
    labels = np.zeros((10, 30, 30), np.uint8)
    labels[1, 1, 1] = 1                 # 1 voxel
    labels[3:5, 10:14, 10:14] = 1       # 32 voxels
    fine = measure(labels, (0.05, 0.05, 0.05), "shapes").objects  # 32 * 1.25e-4 = 0.004 µm³
    assert len(fine) == 1
    coarse = measure(labels, (1.0, 1.0, 1.0), "shapes").objects    # 1 µm³ voxels: both kept
    assert len(coarse) == 2
    assert len(measure(labels, None, "shapes").objects) == 1       # uncalibrated: >= 27 voxels


@pytest.mark.parametrize("big", [100_000_000, 2**31, 2**40])
def test_huge_label_ids_measure_in_little_memory(big):
    labels = np.zeros((64, 64), np.int64)
    labels[10:20, 10:20] = big
    labels[40:50, 30:45] = 3
    tracemalloc.start()
    try:
        result = measure(labels, (0.1, 0.1), "shapes", mode="labels", min_size=5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50e6
    objects = result.objects
    assert list(objects["label"]) == [3, big]
    assert list(objects["area_um2"]) == pytest.approx([150 * 0.01, 100 * 0.01])
    assert set(np.unique(result.labels)) == {0, 3, big}


def test_uncalibrated_columns_and_summary_say_px():
    labels = np.zeros((20, 20), np.uint8)
    labels[5:15, 5:15] = 1
    result = measure(labels, None, "shapes")
    assert not result.calibrated and result.unit == "px"
    names = result.objects.names + result.summary.names
    assert not [n for n in names if "um" in n]
    assert result.objects["area_px2"][0] == 100
    assert result.summary["total_area_px2"][0] == 100
    assert result.summary["density_per_px2"][0] == pytest.approx(1 / 400)
    columns = {c[0]: c for c in list_columns("shapes", calibrated=False)}
    assert columns["feret_max_px"][1] == "px" and "µm" not in columns["feret_max_px"][3]
    assert columns["volume_px3"][1] == "px³"
