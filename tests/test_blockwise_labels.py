"""Blockwise instance labelling equals skimage.measure.label, with the same bounding boxes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.measure import label, regionprops

from napari_cardioseg.core import zarr_io
from napari_cardioseg.core.blockwise_labels import label_blockwise, object_crops
from napari_cardioseg.core.errors import CardiosegError
from napari_cardioseg.core.progress import drain


def blobs(rng, shape, classes=1, sigma=1.5, fraction=0.35):
    """Random smooth blobs (labels 1..classes) that often cross any block border."""
    field = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
    mask = field > np.quantile(field, 1 - fraction)
    values = rng.integers(1, classes + 1, shape) if classes > 1 else 1
    return np.where(mask, values, 0).astype(np.uint8)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when the labellings group the voxels identically (same background, relabelling)."""
    if not np.array_equal(a == 0, b == 0):
        return False
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return pairs.shape[1] == len(np.unique(a)) == len(np.unique(b))


@pytest.mark.parametrize(("shape", "block", "connectivity"), [
    ((60, 71), 16, 1),
    ((60, 71), (7, 30), 2),
    ((23, 30, 28), 8, 1),
    ((23, 30, 28), (5, 9, 12), 3),
])
def test_equals_skimage_label(rng, shape, block, connectivity):
    mask = blobs(rng, shape, fraction=0.35 if len(shape) == 2 else 0.15)
    expected = label(mask, connectivity=connectivity)
    out = np.zeros(shape, np.int64)
    found = drain(label_blockwise(mask, out, block=block, connectivity=connectivity))
    assert found.count == expected.max() > 5
    assert same_partition(out, expected)
    assert np.array_equal(out, expected)  # the same numbers too: raster order of first voxels
    assert np.array_equal(found.sizes, np.bincount(expected.ravel())[1:])
    props = {tuple(np.asarray(p.bbox)) for p in regionprops(expected)}
    assert {tuple(found.boxes[i].ravel()) for i in range(found.count)} == props
    # an object that spans several blocks was actually merged
    assert max(np.prod(np.diff(found.boxes, axis=1)[:, 0], axis=1)) > np.prod(
        np.broadcast_to(block, (len(shape),)))


def test_semantic_labels_keep_classes_apart(rng):
    """Touching voxels of different classes are different objects, as in skimage."""
    labels = blobs(rng, (40, 44), classes=3, sigma=3.0, fraction=0.6)
    expected = label(labels)
    out = np.zeros(labels.shape, np.int32)
    found = drain(label_blockwise(labels, out, block=(9, 13)))
    assert found.count == expected.max()
    assert same_partition(out, expected)
    assert np.array_equal(out, expected)


def test_zarr_in_and_out_and_object_crops(rng, tmp_path):
    mask = blobs(rng, (12, 40, 36))
    source = zarr_io.write_ome_zarr(tmp_path / "m.zarr", mask, (1.0, 1.0, 1.0), chunks=(6, 16, 16))
    group = zarr_io.create_ome_zarr(tmp_path / "i.zarr", mask.shape, np.uint32, (1.0, 1.0, 1.0),
                                    chunks=(6, 16, 16), levels=1)
    found = drain(label_blockwise(zarr_io.read_ome_zarr(source).data, group["0"],
                                  block=(6, 16, 16)))
    expected = label(mask)
    assert same_partition(group["0"][...], expected)
    instances = group["0"][...]
    sizes = [int(crop.sum()) for _, _, crop in object_crops(group["0"], found)]
    assert sizes == [int((instances == i).sum()) for i in range(1, found.count + 1)]


def test_progress_and_errors(rng):
    mask = blobs(rng, (20, 20))
    steps = label_blockwise(mask, np.zeros((20, 20), np.int32), block=10)
    totals = {p.total for p in _all(steps)}
    assert totals == {12}
    with pytest.raises(CardiosegError, match="connectivity"):
        drain(label_blockwise(mask, np.zeros((20, 20), np.int32), block=10, connectivity=3))
    with pytest.raises(CardiosegError, match="same shape"):
        drain(label_blockwise(mask, np.zeros((20, 21), np.int32), block=10))
    with pytest.raises(CardiosegError, match="integers"):
        drain(label_blockwise(mask.astype(float), np.zeros((20, 20), np.int32), block=10))


def test_empty_volume(rng):
    out = np.full((10, 10), 7, np.int32)
    found = drain(label_blockwise(np.zeros((10, 10), np.uint8), out, block=4))
    assert found.count == 0 and found.boxes.shape == (0, 2, 2) and not out.any()


def _all(steps):
    items = []
    while True:
        try:
            items.append(next(steps))
        except StopIteration:
            return items
