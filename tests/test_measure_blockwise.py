"""Blockwise measurement of chunked label volumes equals the in-memory measurement."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage

from napari_cardioseg.cli import main
from napari_cardioseg.core import zarr_io
from napari_cardioseg.core.errors import CardiosegError
from napari_cardioseg.core.measure import measure
from napari_cardioseg.core.measure_blockwise import (
    default_block,
    measure_blockwise,
    measure_blockwise_iter,
)
from napari_cardioseg.core.synth import zdisk_image
from napari_cardioseg.core.table import Table
from napari_cardioseg.core.writes import write_tiff


def blobs(rng, shape, sigma=2.5, fraction=0.15):
    """Smooth random blobs much larger than the blocks used below."""
    field = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
    return (field > np.quantile(field, 1 - fraction)).astype(np.uint8)


def assert_same_table(a: Table, b: Table) -> None:
    assert a.names == b.names
    for name in a.names:
        x, y = a.columns[name], b.columns[name]
        if x.dtype.kind in "fiu":
            np.testing.assert_allclose(y, x, rtol=1e-9, atol=1e-12, err_msg=name)
        else:
            assert list(x) == list(y), name


class Recorder:
    """A read-only array that remembers the largest region read from it."""

    def __init__(self, data):
        self.data, self.shape, self.dtype, self.largest = data, data.shape, data.dtype, 0

    def __getitem__(self, index):
        out = self.data[index]
        self.largest = max(self.largest, out.size)
        return out


def test_shapes_3d_equals_in_memory(rng, tmp_path):
    mask = blobs(rng, (20, 40, 44))
    spacing = (0.5, 0.2, 0.2)
    store = zarr_io.write_ome_zarr(tmp_path / "m.zarr", mask, spacing, chunks=(5, 8, 8))
    lazy = zarr_io.read_ome_zarr(store).data
    expected = measure(mask, spacing, "shapes")
    result = measure_blockwise(lazy, spacing, "shapes", block=(5, 8, 8))
    assert len(expected.objects) > 8
    assert_same_table(expected.objects, result.objects)
    assert_same_table(expected.summary, result.summary)
    # objects crossing many blocks were merged; some touch the border, some do not
    z0, z1 = expected.objects["bbox_z0_um"], expected.objects["bbox_z1_um"]
    assert np.max((z1 - z0) / 0.5 + 1) > 3 * 5
    assert 0 < expected.objects["touches_border"].sum() < len(expected.objects)
    # the default min size dropped small fragments in both
    assert expected.objects["volume_um3"].min() >= 0.004


def test_reads_one_block_at_a_time(rng):
    mask = blobs(rng, (16, 48, 48), sigma=1.5)
    recorder = Recorder(mask)
    steps = list(measure_blockwise_iter(recorder, None, "shapes", block=(8, 12, 12)))
    assert {"label", "measure"} <= {p.stage for p in steps}
    assert steps[-1].done == steps[-1].total > 5
    # the input is read one block (plus the 1-voxel border for merging) at a time
    assert recorder.largest <= (8 + 2) * (12 + 2) * (12 + 2)


def test_label_image_and_class_and_2d(rng):
    mask = blobs(rng, (12, 36, 36), sigma=2.0)
    ids = ndimage.label(mask)[0].astype(np.int64)
    labels = np.where(ids > 0, ids * 1000 + 7, 0)  # sparse, large ids
    labels[labels == labels.max()] = 0
    labels[0, 0, :3] = labels.max()  # one label in two separate pieces
    spacing = (0.4, 0.1, 0.1)
    for mode in ("auto", "labels"):
        expected = measure(labels, spacing, "shapes", mode=mode)
        assert_same_table(expected.objects,
                          measure_blockwise(labels, spacing, "shapes", mode=mode,
                                            block=(4, 10, 10)).objects)
    semantic = np.where(mask > 0, 1 + (np.arange(36) >= 18), 0).astype(np.uint8)
    expected = measure(semantic, spacing, "shapes", class_value=2, min_size=0)
    result = measure_blockwise(semantic, spacing, "shapes", class_value=2, min_size=0,
                               block=(5, 9, 9))
    assert len(result.objects) > 2
    assert_same_table(expected.objects, result.objects)
    plane = labels[5]
    expected = measure(plane, spacing[1:], "shapes", connectivity=1)
    result = measure_blockwise(plane, spacing[1:], "shapes", connectivity=1, block=7)
    assert "perimeter_um" in result.objects.names and len(result.objects) > 3
    assert_same_table(expected.objects, result.objects)
    assert_same_table(expected.summary, result.summary)


def test_empty_volume_and_errors(rng):
    result = measure_blockwise(np.zeros((6, 10, 10), np.uint8), (1.0, 0.5, 0.5), block=4)
    assert len(result.objects) == 0 and result.summary["count"][0] == 0
    with pytest.raises(CardiosegError, match="not used for shapes"):
        measure_blockwise(np.ones((10, 10), np.uint8), None, image=np.ones((10, 10)))
    with pytest.raises(CardiosegError, match="negative"):
        measure_blockwise(-np.ones((4, 4), np.int16), None, block=2)
    with pytest.raises(CardiosegError, match="class 3 is not"):
        measure_blockwise(np.ones((4, 4), np.uint8), None, class_value=3)
    with pytest.raises(CardiosegError, match="integer"):
        measure_blockwise(np.ones((4, 4), np.float32), None)
    with pytest.raises(CardiosegError, match="class 3 is not"):
        measure_blockwise(np.ones((3, 8, 8), np.uint8), None, "zdisk", class_value=3)
    with pytest.raises(CardiosegError, match="cell mask is empty"):
        measure_blockwise(np.ones((3, 8, 8), np.uint8), None, "zdisk",
                          cell_mask=np.zeros((3, 8, 8), np.uint8))


def zdisk_stack(slices=3, shape=(96, 96)):
    samples = [zdisk_image(shape, seed=s) for s in range(slices)]
    return (np.stack([s.mask for s in samples]), np.stack([s.image for s in samples]),
            np.stack([s.cell_mask for s in samples]), samples[0].pixel_size)


def test_zdisk_stack_slice_by_slice_equals_in_memory():
    mask, image, cells, pixel = zdisk_stack()
    recorder = Recorder(mask)
    spacing = (0.5, pixel, pixel)
    expected = measure(mask, spacing, "zdisk", image=image, cell_mask=cells)
    result = measure_blockwise(recorder, spacing, "zdisk", image=image, cell_mask=cells)
    assert len(expected.objects) > 20 and set(expected.objects["z"]) == {0, 1, 2}
    assert recorder.largest == mask[0].size  # one slice at a time
    assert_same_table(expected.objects, result.objects)
    assert_same_table(expected.summary, result.summary)
    assert np.isfinite(result.summary["sarcomere_length_fft_um"]).all()
    # a multi-class stack: one class, and all labels as they are
    semantic = np.where(mask > 0, 1 + (np.arange(96) >= 48), 0).astype(np.uint16)
    for options in ({"class_value": 2}, {"mode": "labels"}, {"mode": "auto"}):
        expected = measure(semantic, None, "zdisk", **options)
        result = measure_blockwise(semantic, None, "zdisk", **options)
        assert len(expected.objects) > 5
        assert_same_table(expected.objects, result.objects)
        assert_same_table(expected.summary, result.summary)
    # a 2D image is measured whole
    expected = measure(mask[1], spacing[1:], "zdisk", image=image[1])
    result = measure_blockwise(mask[1], spacing[1:], "zdisk", image=image[1])
    assert_same_table(expected.objects, result.objects)
    assert_same_table(expected.summary, result.summary)


def test_one_class_object_image_keeps_more_than_255_labels():
    """Regression: the object image of a one-class (uint8) mask wrapped at 255 labels."""
    labels = np.zeros((2, 60, 120), np.uint8)
    labels[:, ::3, ::3] = 2
    result = measure(labels, None, "zdisk", class_value=2, min_length=0)
    assert len(result.objects) == 1600
    assert result.labels.max() == 1600 and len(np.unique(result.labels)) == 1601


def test_default_block_covers_whole_chunks(tmp_path):
    store = zarr_io.create_ome_zarr(tmp_path / "b.zarr", (300, 2000, 2000), np.uint8,
                                    (1.0, 1.0, 1.0), chunks=(16, 256, 256), levels=1)
    block = default_block(store["0"])
    chunks, shape = (16, 256, 256), (300, 2000, 2000)
    assert all(b % c == 0 or b == n for b, c, n in zip(block, chunks, shape, strict=True))
    assert 2**22 <= np.prod(block) <= 2**23


def test_cli_zarr_gives_the_same_csv_as_tiff(rng, tmp_path, capsys):
    mask = blobs(rng, (14, 30, 32))
    spacing = (0.5, 0.2, 0.2)
    write_tiff(tmp_path / "m.tif", mask, spacing)
    zarr_io.write_ome_zarr(tmp_path / "m.ome.zarr", mask, spacing, chunks=(4, 8, 8))
    blockwise = {}
    for name, extra in [("tif", []), ("zarr", []), ("forced", ["--blockwise"]),
                        ("memory", ["--no-blockwise"])]:
        source = tmp_path / ("m.ome.zarr" if name in ("zarr", "memory") else "m.tif")
        out = tmp_path / f"{name}.csv"
        capsys.readouterr()
        assert main(["measure", str(source), "--kind", "shapes", "-o", str(out), *extra]) == 0
        blockwise[name] = "labelling blocks" in "".join(capsys.readouterr())
    assert blockwise == {"tif": False, "zarr": True, "forced": True, "memory": False}
    assert len((tmp_path / "tif.csv").read_text().splitlines()) > 6
    for suffix in (".csv", "_summary.csv"):
        reference = (tmp_path / f"tif{suffix}").read_text()
        assert (tmp_path / f"zarr{suffix}").read_text() == reference
        assert (tmp_path / f"memory{suffix}").read_text() == reference
        assert (tmp_path / f"forced{suffix}").read_text() == reference


def test_cli_batch_folder_measures_zarr_stores_too(rng, tmp_path):
    mask = blobs(rng, (8, 24, 24))
    folder = tmp_path / "in"
    folder.mkdir()
    write_tiff(folder / "a.tif", mask, (0.5, 0.2, 0.2))
    zarr_io.write_ome_zarr(folder / "b.ome.zarr", mask, (0.5, 0.2, 0.2), chunks=(4, 8, 8))
    assert main(["measure", str(folder), "--kind", "shapes", "-o", str(tmp_path / "out"),
                 "--workers", "1"]) == 0
    a, b = (tmp_path / "out" / "a.csv").read_text(), (tmp_path / "out" / "b.csv").read_text()
    assert len(a.splitlines()) > 2 and a == b


def test_blockwise_path_does_not_import_torch():
    code = ("import sys, napari_cardioseg.core.measure_blockwise, napari_cardioseg.core.batch\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cli_zdisk_zarr_stack_with_image_equals_tiff(tmp_path):
    mask, image, cells, pixel = zdisk_stack(slices=2, shape=(64, 64))
    spacing = (0.5, pixel, pixel)
    write_tiff(tmp_path / "z.tif", mask, spacing)
    write_tiff(tmp_path / "img.tif", image, spacing)
    write_tiff(tmp_path / "cells.tif", cells, spacing)
    zarr_io.write_ome_zarr(tmp_path / "z.ome.zarr", mask, spacing, chunks=(1, 32, 32))
    for name in ("z.tif", "z.ome.zarr"):
        assert main(["measure", str(tmp_path / name), "--kind", "zdisk", "--image",
                     str(tmp_path / "img.tif"), "--cell-mask", str(tmp_path / "cells.tif"),
                     "-o", str(tmp_path / f"{name}.csv")]) == 0
    for suffix in (".csv", "_summary.csv"):
        reference = (tmp_path / f"z.tif{suffix}").read_text()
        assert len(reference.splitlines()) > 2
        assert (tmp_path / f"z.ome.zarr{suffix}").read_text() == reference
    assert "cell_area_um2" in (tmp_path / "z.tif_summary.csv").read_text()
