"""Large inputs into TIFF outputs: streamed through a hidden OME-Zarr, written page by page."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_cardioseg.cli import main
from napari_cardioseg.core import stream_tiff, zarr_io
from napari_cardioseg.core.errors import CardiosegError
from napari_cardioseg.core.io import read_single
from napari_cardioseg.core.one_file import predict_file
from napari_cardioseg.core.progress import drain
from napari_cardioseg.core.writes import write_tiff, write_tiff_blocks

SCALE = (0.03, 0.005, 0.004)


@pytest.fixture
def tiny(user_model):
    return "tiny"


def test_write_tiff_blocks_round_trips_stacks_and_tiled_images(tmp_path, rng):
    import zarr

    stack = rng.integers(0, 3, (4, 70, 90)).astype(np.uint8)
    store = zarr.create_array(str(tmp_path / "s.zarr"), shape=stack.shape, chunks=(1, 32, 32),
                              dtype=np.uint8)
    store[...] = stack
    image = read_single(write_tiff_blocks(tmp_path / "s.tif", store, SCALE))
    assert np.array_equal(image.data, stack) and image.calibrated
    assert image.scale == pytest.approx(SCALE)
    plane = rng.random((1000, 1300)).astype(np.float16)
    out = write_tiff_blocks(tmp_path / "p.tif", plane, None, dtype=np.float32, tile=256)
    with tifffile.TiffFile(out) as tif:
        assert tif.pages[0].is_tiled and tif.pages[0].dtype == np.float32
    back = read_single(out)
    assert not back.calibrated  # no calibration invented
    assert np.array_equal(back.data, plane.astype(np.float32))
    with pytest.raises(CardiosegError, match="uint8, uint16 or float32"):
        write_tiff_blocks(tmp_path / "bad.tif", stack.astype(np.int32))
    with pytest.raises(CardiosegError, match="2D or 3D"):
        write_tiff_blocks(tmp_path / "bad.tif", stack[None])
    assert not (tmp_path / "bad.tif").exists()


def test_large_input_streams_into_tiff_equal_to_the_zarr_run(tmp_path, rng, tiny, monkeypatch):
    data = rng.integers(0, 255, (3, 70, 90)).astype(np.uint8)
    write_tiff(tmp_path / "in.tif", data, SCALE)
    # the reference: the in-memory path (the input is under the threshold)
    assert main(["predict", str(tmp_path / "in.tif"), "--model", "tiny", "-o",
                 str(tmp_path / "mem.tif"), "--prob", str(tmp_path / "mem_p.tif"),
                 "--device", "cpu"]) == 0
    monkeypatch.setattr(stream_tiff, "STREAM_VOXELS", data.size - 1)
    assert main(["predict", str(tmp_path / "in.tif"), "--model", "tiny", "-o",
                 str(tmp_path / "big.tif"), "--prob", str(tmp_path / "big_p.tif"),
                 "--tile", "32", "--device", "cpu"]) == 0
    assert main(["predict", str(tmp_path / "in.tif"), "--model", "tiny", "-o",
                 str(tmp_path / "ref.zarr"), "--tile", "32", "--device", "cpu"]) == 0
    streamed, memory = read_single(tmp_path / "big.tif"), read_single(tmp_path / "mem.tif")
    assert streamed.data.dtype == np.uint8 and streamed.scale == pytest.approx(SCALE)
    assert np.array_equal(streamed.data, zarr_io.read_ome_zarr(tmp_path / "ref.zarr").data[...])
    assert np.mean(streamed.data == memory.data) >= 0.999
    assert np.sort(np.bincount(memory.data.ravel()))[-2] > 0.05 * data.size  # not one class
    for name in ("mito", "lyso"):  # one float32 TIFF per foreground class, as in memory
        prob = read_single(tmp_path / f"big_p-{name}.tif").data
        assert prob.dtype == np.float32
        assert np.abs(prob - read_single(tmp_path / f"mem_p-{name}.tif").data).max() < 0.02
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_interrupted_streamed_tiff_leaves_no_output_and_resumes(tmp_path, rng, tiny, monkeypatch):
    data = rng.integers(0, 255, (6, 70, 90)).astype(np.uint8)
    write_tiff(tmp_path / "in.tif", data, None)
    monkeypatch.setattr(stream_tiff, "STREAM_VOXELS", 0)
    out = tmp_path / "labels.tif"
    steps = predict_file(tmp_path / "in.tif", out, model=tiny, tile=32, device="cpu")
    for _, progress in zip(range(4), steps, strict=False):
        assert progress.stage != "write"
    steps.close()  # as Ctrl-C between blocks
    assert not out.exists()
    partial = stream_tiff.partial_store(out)
    assert zarr_io.done_blocks(partial), "finished blocks are kept for the rerun"
    written = drain(predict_file(tmp_path / "in.tif", out, model=tiny, tile=32, device="cpu"))
    assert written == [out] and not partial.exists()
    drain(predict_file(tmp_path / "in.tif", tmp_path / "fresh.tif", model=tiny, tile=32,
                       device="cpu", resume=False))
    result = read_single(out)
    assert not result.calibrated  # an uncalibrated input gives an uncalibrated output
    assert np.array_equal(result.data, read_single(tmp_path / "fresh.tif").data)
