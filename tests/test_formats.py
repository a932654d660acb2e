"""The file-format registry: one row per format, channel and scene choice, missing readers.

Files are made here with the formats' own writers (tifffile, the OME-Zarr writer, pylibCZIrw for
CZI); ND2 and LIF have no writer here, so their rows are tested with a fake bioio plugin module.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path
from typing import ClassVar

import dask.array as da
import numpy as np
import pytest
import tifffile
import yaml

from napari_cardioseg import _reader
from napari_cardioseg.cli import main
from napari_cardioseg.core import formats
from napari_cardioseg.core.batch import expand_inputs, stem
from napari_cardioseg.core.errors import CardiosegError
from napari_cardioseg.core.formats import open_all, open_image
from napari_cardioseg.core.io import read_image, read_single
from napari_cardioseg.core.one_file import enhance_file, measure_file
from napari_cardioseg.core.progress import drain
from napari_cardioseg.core.table import read_csv
from napari_cardioseg.core.units import CALIBRATED_KEY
from napari_cardioseg.core.writes import write_tiff
from napari_cardioseg.core.zarr_io import write_ome_zarr

EXTRA = re.escape("pip install 'napari-cardioseg[formats]'")


# ---- the registry ---------------------------------------------------------------------------


def test_rows_have_unique_suffixes_and_unknown_suffixes_list_the_formats():
    all_suffixes = formats.suffixes()
    assert len(all_suffixes) == len(set(all_suffixes))
    assert {f.name for f in formats.FORMATS} == {"TIFF", "OME-Zarr", "CZI", "ND2", "LIF"}
    assert formats.find_format("a/b.OME.TIF").name == "TIFF"
    assert formats.find_format("a/b.ome.zarr/").name == "OME-Zarr"
    assert formats.find_format("x.czi").package == "bioio-czi"
    assert [f.package for f in formats.FORMATS if f.name in ("ND2", "LIF")] == ["bioio-nd2",
                                                                                 "bioio-lif"]
    with pytest.raises(CardiosegError, match=r"unknown file format.*CZI \(\.czi\).*LIF \(\.lif\)"):
        formats.find_format("cell.png")


def test_napari_manifest_lists_every_registry_suffix():
    manifest = Path(_reader.__file__).with_name("napari.yaml")
    patterns = yaml.safe_load(manifest.read_text())["contributions"]["readers"][0][
        "filename_patterns"]
    assert sorted(patterns) == sorted(f"*{s}" for s in formats.suffixes())
    for suffix in formats.suffixes():
        assert _reader.get_reader(f"x{suffix}") is _reader.reader_function
    assert _reader.get_reader("x.png") is None


def test_batch_picks_up_and_names_every_format(tmp_path):
    for name in ("a.czi", "b.nd2", "c.lif", "d.ome.tif", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    write_ome_zarr(tmp_path / "e.ome.zarr", np.zeros((4, 4), np.uint8), (1.0, 1.0))
    found = [p.name for p in expand_inputs([tmp_path])]
    assert found == ["a.czi", "b.nd2", "c.lif", "d.ome.tif", "e.ome.zarr"]
    assert [stem(p) for p in found] == ["a", "b", "c", "d", "e"]


# ---- TIFF and OME-Zarr through the registry -------------------------------------------------


@pytest.fixture
def two_channels(tmp_path, rng):
    data = rng.integers(0, 60000, (2, 3, 20, 24)).astype(np.uint16)
    path = tmp_path / "cell.ome.tif"
    tifffile.imwrite(path, data, ome=True, metadata={
        "axes": "CZYX", "Channel": {"Name": ["actin", "dapi"]},
        "PhysicalSizeX": 0.11, "PhysicalSizeY": 0.12, "PhysicalSizeZ": 0.5})
    return path, data


def test_ome_tiff_channels_by_name_and_index(two_channels):
    path, data = two_channels
    img = open_image(path, channel="dapi")
    assert isinstance(img.data, da.Array) and img.channel == "dapi" and img.name == "cell [dapi]"
    np.testing.assert_array_equal(img.data.compute(), data[1])
    assert img.pixel_size == pytest.approx((0.5, 0.12, 0.11)) and img.calibrated
    np.testing.assert_array_equal(open_image(path, channel=0).data.compute(), data[0])
    np.testing.assert_array_equal(open_image(path, channel="1").data.compute(), data[1])
    [eager] = read_image(path, channel="actin")
    np.testing.assert_array_equal(eager.data, data[0])
    assert eager.scale == pytest.approx((0.5, 0.12, 0.11)) and eager.channel == "actin"
    assert [i.name for i in read_image(path)] == ["cell [actin]", "cell [dapi]"]
    single = read_single(path, channel="dapi")
    np.testing.assert_array_equal(single.data, data[1])


def test_multichannel_without_a_channel_lists_the_names(two_channels):
    path, _ = two_channels
    listing = r"2 channels \(0 'actin', 1 'dapi'\); choose one with --channel"
    with pytest.raises(CardiosegError, match=listing):
        open_image(path)
    with pytest.raises(CardiosegError, match=listing):
        read_single(path)
    with pytest.raises(CardiosegError, match=r"no channel 2; the file has 2 channels: 0 'actin'"):
        open_image(path, channel=2)
    with pytest.raises(CardiosegError, match=r"no channel named 'gfp'"):
        read_single(path, channel="gfp")
    with pytest.raises(CardiosegError, match=r"no channel -1"):
        read_image(path, channel=-1)


def test_pixel_size_is_none_where_the_file_has_none(tmp_path, rng):
    data = rng.integers(0, 255, (3, 16, 16)).astype(np.uint8)
    write_tiff(tmp_path / "raw.tif", data)  # no calibration
    img = open_image(tmp_path / "raw.tif")
    assert img.pixel_size == (None, None, None) and not img.calibrated
    assert img.scale == (1.0, 1.0, 1.0)  # display only; read_image says calibrated=False too
    tifffile.imwrite(tmp_path / "xy.ome.tif", data, ome=True,
                     metadata={"axes": "ZYX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2})
    with pytest.warns(UserWarning, match="no slice spacing; slices are taken as 0.2 µm apart"):
        img = open_image(tmp_path / "xy.ome.tif")
    assert img.pixel_size == (None, 0.2, 0.2) and img.calibrated
    with pytest.warns(UserWarning, match="no slice spacing"):  # the in-memory reader says so too
        assert read_single(tmp_path / "xy.ome.tif").scale == (0.2, 0.2, 0.2)
    tifffile.imwrite(tmp_path / "xy.ome.tif", data[0], ome=True,
                     metadata={"axes": "YX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2})
    assert open_image(tmp_path / "xy.ome.tif").pixel_size == (0.2, 0.2)  # 2D: nothing missing


def test_rgb_tiff_samples_are_channels(tmp_path, rng):
    rgb = rng.integers(0, 255, (12, 10, 3)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    with pytest.raises(CardiosegError, match=r"3 channels \(0 'ch0', 1 'ch1', 2 'ch2'\)"):
        open_image(tmp_path / "rgb.tif")
    green = open_image(tmp_path / "rgb.tif", channel=1)
    np.testing.assert_array_equal(green.data.compute(), rgb[..., 1])
    np.testing.assert_array_equal(read_single(tmp_path / "rgb.tif", channel=1).data, rgb[..., 1])


def test_ome_zarr_round_trips_through_the_registry_and_read_image(tmp_path, rng):
    data = rng.integers(0, 255, (2, 30, 40)).astype(np.uint8)
    write_ome_zarr(tmp_path / "v.ome.zarr", data, (0.4, 0.02, 0.03), labels=False)
    img = open_image(tmp_path / "v.ome.zarr")
    assert isinstance(img.data, da.Array) and img.pixel_size == pytest.approx((0.4, 0.02, 0.03))
    np.testing.assert_array_equal(img.data.compute(), data)
    [eager] = read_image(tmp_path / "v.ome.zarr")
    np.testing.assert_array_equal(eager.data, data)
    assert eager.scale == pytest.approx((0.4, 0.02, 0.03)) and eager.calibrated
    with pytest.raises(CardiosegError, match="no channel 1; the file has 1 channel"):
        open_image(tmp_path / "v.ome.zarr", channel=1)
    with pytest.raises(CardiosegError, match="no scene 3; the file has 1 scene"):
        open_image(tmp_path / "v.ome.zarr", scene=3)


def test_multi_series_tiff_scene(tmp_path):
    with tifffile.TiffWriter(tmp_path / "ms.tif") as tif:
        tif.write(np.full((16, 16), 3, np.uint8))
        tif.write(np.full((8, 8), 7, np.uint8))
    with pytest.raises(CardiosegError, match=r"2 scenes \(0 'series 0', 1 'series 1'\); choose "
                                             "one with --scene"):
        open_image(tmp_path / "ms.tif")
    assert int(open_image(tmp_path / "ms.tif", scene=1).data[0, 0].compute()) == 7
    assert int(read_single(tmp_path / "ms.tif", scene="1").data[0, 0]) == 7
    with pytest.raises(CardiosegError, match="choose one with --scene"):
        read_single(tmp_path / "ms.tif")
    layers = _reader.get_reader(str(tmp_path / "ms.tif"))(str(tmp_path / "ms.tif"))
    assert [meta["name"] for _, meta, _ in layers] == ["ms [series 0]", "ms [series 1]"]
    assert [int(np.asarray(data)[0, 0]) for data, _, _ in layers] == [3, 7]


def test_each_ome_scene_has_its_own_pixel_size(tmp_path):
    # a multi-position OME-TIFF: the second scene's voxels are 0.5 x 0.5 x 1 µm, not the first's
    path = tmp_path / "multi.ome.tif"
    z, y, x = np.mgrid[:8, :32, :32]
    ball = ((z - 4) ** 2 + (y - 16) ** 2 + (x - 16) ** 2 < 16).astype(np.uint8)
    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(ball, metadata={"axes": "ZYX", "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.1,
                                  "PhysicalSizeZ": 0.2})
        tif.write(ball, metadata={"axes": "ZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5,
                                  "PhysicalSizeZ": 1.0})
    for scene, scale in ((0, (0.2, 0.1, 0.1)), (1, (1.0, 0.5, 0.5))):
        assert read_single(path, scene=scene).scale == pytest.approx(scale)
        assert open_image(path, scene=scene).scale == pytest.approx(scale)
    layers = _reader.get_reader(str(path))(str(path))
    np.testing.assert_allclose([meta["scale"] for _, meta, _ in layers],
                               [(0.2, 0.1, 0.1), (1.0, 0.5, 0.5)])
    drain(measure_file(path, tmp_path / "s1.csv", kind="shapes", scene=1))
    volume = read_csv(tmp_path / "s1.csv")["volume_um3"]
    assert volume == pytest.approx([ball.sum() * 0.25])


# ---- CZI, written with pylibCZIrw (bioio-czi's dependency) ----------------------------------


@pytest.fixture
def czi(tmp_path, rng):
    pytest.importorskip("bioio_czi")
    pyczi = pytest.importorskip("pylibCZIrw.czi")
    data = rng.integers(0, 60000, (2, 3, 20, 30)).astype(np.uint16)  # C Z Y X
    path = tmp_path / "heart.czi"
    with pyczi.create_czi(str(path)) as czi:
        for c in range(2):
            for z in range(3):
                czi.write(data[c, z][..., None], plane={"C": c, "Z": z, "T": 0})
        czi.write_metadata(document_name="heart", channel_names={0: "actin", 1: "dapi"},
                           scale_x=0.1e-6, scale_y=0.1e-6, scale_z=0.5e-6)  # metres
    return path, data


def test_czi_round_trips_values_and_pixel_size(czi):
    path, data = czi
    img = open_image(path, channel="dapi")
    assert isinstance(img.data, da.Array) and img.data.shape == (3, 20, 30)
    np.testing.assert_array_equal(img.data.compute(), data[1])
    assert img.pixel_size == pytest.approx((0.5, 0.1, 0.1))
    [eager] = read_image(path, channel=0)
    np.testing.assert_array_equal(eager.data, data[0])
    assert eager.scale == pytest.approx((0.5, 0.1, 0.1)) and eager.calibrated
    assert eager.data.dtype == np.uint16
    with pytest.raises(CardiosegError, match=r"2 channels \(0 'actin', 1 'dapi'\)"):
        read_single(path)


def test_czi_mosaic_tiles_are_stitched(tmp_path):
    pytest.importorskip("bioio_czi")
    pyczi = pytest.importorskip("pylibCZIrw.czi")
    with pyczi.create_czi(str(tmp_path / "tiles.czi")) as czi:
        czi.write(np.full((20, 30, 1), 5, np.uint16), plane={"C": 0, "Z": 0, "T": 0}, location=(0, 0))
        czi.write(np.full((20, 30, 1), 9, np.uint16), plane={"C": 0, "Z": 0, "T": 0}, location=(30, 0))
        czi.write_metadata(scale_x=0.2e-6, scale_y=0.2e-6)
    img = open_image(tmp_path / "tiles.czi")
    assert img.data.shape == (20, 60) and img.pixel_size == pytest.approx((0.2, 0.2))
    stitched = img.data.compute()
    assert (stitched[:, :30] == 5).all() and (stitched[:, 30:] == 9).all()


def test_czi_without_scaling_is_uncalibrated(tmp_path):
    pytest.importorskip("bioio_czi")
    pyczi = pytest.importorskip("pylibCZIrw.czi")
    for name, scale in (("none.czi", {}), ("xy.czi", {"scale_x": 0.1e-6, "scale_y": 0.1e-6})):
        with pyczi.create_czi(str(tmp_path / name)) as czi:
            for z in range(3):
                czi.write(np.full((8, 9, 1), z, np.uint16), plane={"C": 0, "Z": z, "T": 0})
            czi.write_metadata(**scale)  # bioio-czi reports the missing scales as 0
    img = open_image(tmp_path / "none.czi")
    assert img.pixel_size == (None, None, None) and not img.calibrated
    assert read_single(tmp_path / "none.czi").calibrated is False
    img = open_image(tmp_path / "xy.czi")
    assert img.pixel_size == pytest.approx((None, 0.1, 0.1)) and img.calibrated
    np.testing.assert_array_equal(img.data[:, 0, 0].compute(), [0, 1, 2])


def test_czi_through_the_cli(czi, tmp_path, capsys):
    path, data = czi
    out = tmp_path / "e.tif"
    assert main(["enhance", str(path), "-o", str(out), "--method", "percentile"]) == 2
    assert "choose one with --channel" in capsys.readouterr().err
    assert main(["enhance", str(path), "-o", str(out), "--method", "percentile",
                 "--channel", "actin"]) == 0
    [written] = read_image(out)
    assert written.data.shape == data[0].shape and written.scale == pytest.approx((0.5, 0.1, 0.1))
    # the stretch is monotone, so the output is ordered like the chosen channel (not the other)
    assert _ordered_like(written.data, data[0]) and not _ordered_like(written.data, data[1])


def _ordered_like(out, source):
    ranked = out.ravel()[np.argsort(source.ravel(), kind="stable")].astype(np.int64)
    return bool(np.all(np.diff(ranked) >= 0))


# ---- ND2 and LIF: dispatch and errors with a fake bioio plugin ------------------------------


class FakeReader:
    """What the bioio-base Reader API gives: scenes, dims order, dask data, names, pixel sizes."""

    files: ClassVar[dict[str, dict]] = {}

    def __init__(self, path):
        spec = self.files.get(Path(path).name)
        if spec is None:
            raise ValueError("this is not a real microscope file")
        self.spec = spec
        self.index = 0

    @property
    def scenes(self):
        return tuple(self.spec["scenes"])

    def set_scene(self, index):
        self.index = index

    @property
    def _scene(self):
        return self.spec["scenes"][self.scenes[self.index]]

    @property
    def dims(self):
        return types.SimpleNamespace(order=self._scene["order"])

    @property
    def dask_data(self):
        return da.from_array(self._scene["data"], chunks=-1)

    @property
    def channel_names(self):
        return self._scene.get("channels")

    @property
    def physical_pixel_sizes(self):
        z, y, x = self._scene.get("sizes", (None, None, None))
        return types.SimpleNamespace(Z=z, Y=y, X=x)


@pytest.fixture
def fake_plugins(monkeypatch, tmp_path, rng):
    """Install fake ``bioio_nd2`` and ``bioio_lif`` modules; write placeholder files."""
    FakeReader.files = {}
    for module in ("bioio_nd2", "bioio_lif"):
        fake = types.ModuleType(module)
        fake.Reader = FakeReader
        monkeypatch.setitem(sys.modules, module, fake)
    a = rng.integers(0, 4000, (1, 2, 4, 12, 14)).astype(np.uint16)
    b = rng.integers(0, 4000, (1, 2, 1, 10, 9)).astype(np.uint16)
    FakeReader.files["two.nd2"] = {"scenes": {
        "XY01": {"order": "TCZYX", "data": a, "channels": ["GFP", "DAPI"],
                 "sizes": (None, 0.25, 0.25)},
        "XY02": {"order": "TCZYX", "data": b, "channels": ["GFP", "DAPI"],
                 "sizes": (2.0, 0.5, 0.5)}}}
    lif = rng.random((3, 15, 16)).astype(np.float32)
    FakeReader.files["one.lif"] = {"scenes": {"Series001": {"order": "ZYX", "data": lif}}}
    time = np.zeros((5, 1, 1, 8, 8), np.uint8)
    FakeReader.files["movie.nd2"] = {"scenes": {"s": {"order": "TCZYX", "data": time}}}
    for name in (*FakeReader.files, "broken.lif"):
        (tmp_path / name).write_bytes(b"placeholder")
    return {"a": a, "b": b, "lif": lif}


def test_nd2_scenes_and_channels(fake_plugins, tmp_path):
    path = tmp_path / "two.nd2"
    with pytest.raises(CardiosegError, match=r"2 scenes \(0 'XY01', 1 'XY02'\); choose one with "
                                             "--scene"):
        open_image(path, channel=0)
    with pytest.raises(CardiosegError, match=r"2 channels \(0 'GFP', 1 'DAPI'\)"):
        open_image(path, scene="XY02")
    img = open_image(path, scene="XY02", channel="DAPI")
    assert img.data.shape == (10, 9) and img.pixel_size == (0.5, 0.5)  # singleton Z dropped
    np.testing.assert_array_equal(img.data.compute(), fake_plugins["b"][0, 1, 0])
    img = open_image(path, scene=0, channel=0)
    assert img.pixel_size == (None, 0.25, 0.25)  # no Z step stated: None, never 1.0
    assert img.scale == (0.25, 0.25, 0.25)
    [eager] = read_image(path, scene=0, channel="GFP")
    np.testing.assert_array_equal(eager.data, fake_plugins["a"][0, 0])
    with pytest.raises(CardiosegError, match=r"no scene 5; the file has 2 scenes"):
        read_image(path, scene=5, channel=0)
    with pytest.raises(CardiosegError, match=r"no scene named 'XY09'"):
        read_single(path, scene="XY09", channel=0)


def test_lif_single_channel_uncalibrated_and_bad_files(fake_plugins, tmp_path):
    img = read_single(tmp_path / "one.lif")
    np.testing.assert_array_equal(img.data, fake_plugins["lif"])
    assert not img.calibrated and img.scale == (1.0, 1.0, 1.0) and img.name == "one"
    with pytest.raises(CardiosegError, match=r"broken\.lif: not a readable LIF file \(this is "
                                             "not a real"):
        read_image(tmp_path / "broken.lif")
    with pytest.raises(CardiosegError, match=r"axis 'T' \(time, 5 points\)"):
        open_image(tmp_path / "movie.nd2")
    with pytest.raises(CardiosegError, match="no such file"):
        open_image(tmp_path / "missing.nd2")


def test_napari_reader_opens_every_scene_and_channel(fake_plugins, tmp_path):
    path = str(tmp_path / "two.nd2")
    layers = _reader.get_reader(path)(path)
    assert [meta["name"] for _, meta, _ in layers] == [
        "two [XY01] [GFP]", "two [XY01] [DAPI]", "two [XY02] [GFP]", "two [XY02] [DAPI]"]
    data, meta, kind = layers[3]
    assert kind == "image" and isinstance(data, da.Array)
    np.testing.assert_array_equal(data.compute(), fake_plugins["b"][0, 1, 0])
    assert meta["scale"] == (0.5, 0.5) and meta["metadata"][CALIBRATED_KEY] is True
    assert layers[0][1]["scale"] == (0.25, 0.25, 0.25)
    assert len(open_all(path)) == 4


def test_cli_and_batch_pass_channel_and_scene(fake_plugins, tmp_path, capsys):
    out = tmp_path / "e.tif"
    assert main(["enhance", str(tmp_path / "two.nd2"), "-o", str(out), "--method", "percentile",
                 "--scene", "XY01", "--channel", "DAPI"]) == 0
    [written] = read_image(out)
    assert written.data.shape == (4, 12, 14) and written.scale == pytest.approx((0.25,) * 3)
    assert main(["enhance", str(tmp_path / "two.nd2"), "-o", str(out), "--scene", "XY01",
                 "--channel", "7"]) == 2
    assert "no channel 7; the file has 2 channels: 0 'GFP', 1 'DAPI'" in capsys.readouterr().err
    folder = tmp_path / "batch"
    assert main(["enhance", str(tmp_path / "two.nd2"), str(tmp_path / "one.lif"), "-o",
                 str(folder), "--method", "percentile", "--workers", "1", "--scene", "0",
                 "--channel", "0"]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["one_enhanced.tif", "two_enhanced.tif"]
    # the intensity image of measure takes the channel; the one-channel labels ignore it
    labels = np.zeros((10, 9), np.uint16)
    labels[2:8, 4] = 1
    write_tiff(tmp_path / "lab.tif", labels, (0.5, 0.5))
    result = drain(measure_file(tmp_path / "lab.tif", tmp_path / "m.csv", kind="zdisk",
                                image=tmp_path / "two.nd2", channel="DAPI", scene="XY02"))
    assert result.count == 1 and result.calibrated
    with pytest.raises(CardiosegError,
                       match=r"two\.nd2: the file has 2 channels .*choose one with --channel"):
        drain(measure_file(tmp_path / "lab.tif", tmp_path / "m.csv", kind="zdisk",
                           image=tmp_path / "two.nd2", scene="XY02"))
    with pytest.raises(CardiosegError, match=r"two\.nd2: no channel 3"):
        drain(measure_file(tmp_path / "lab.tif", tmp_path / "m.csv", kind="zdisk",
                           image=tmp_path / "two.nd2", scene="XY02", channel=3))


# ---- a missing optional reader ---------------------------------------------------------------


@pytest.mark.parametrize(("name", "module", "package"), [
    ("x.nd2", "bioio_nd2", "bioio-nd2"), ("x.lif", "bioio_lif", "bioio-lif"),
    ("x.czi", "bioio_czi", "bioio-czi")])
def test_missing_reader_package_is_named(tmp_path, monkeypatch, capsys, name, module, package):
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    (tmp_path / name).write_bytes(b"placeholder")
    message = rf"reading {re.escape(Path(name).suffix)} \(\w+\) needs {package}: {EXTRA}"
    with pytest.raises(CardiosegError, match=message):
        read_image(tmp_path / name)
    with pytest.raises(CardiosegError, match=message):
        _reader.get_reader(str(tmp_path / name))(str(tmp_path / name))
    assert main(["enhance", str(tmp_path / name), "-o", str(tmp_path / "o.tif")]) == 2
    assert re.search(message, capsys.readouterr().err)
    with pytest.raises(CardiosegError, match=message):
        drain(enhance_file(tmp_path / name, tmp_path / "o.tif", method="percentile", params={}))


def test_labels_with_several_channels_name_the_file_role(two_channels, tmp_path):
    path, _ = two_channels
    with pytest.raises(CardiosegError, match=r"2 channels .*\(reading the labels\)"):
        drain(measure_file(path, tmp_path / "m.csv", kind="shapes"))


# ---- predict: the in-memory and the streaming (.zarr) paths take the channel ------------------


@pytest.fixture
def tiny_model(user_model):
    return "tiny"


def test_predict_channel_matches_the_channel_saved_alone(tmp_path, rng, tiny_model):
    from napari_cardioseg.core.zarr_io import read_ome_zarr

    data = rng.integers(0, 255, (2, 40, 48)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "two.ome.tif", data, ome=True, metadata={
        "axes": "CYX", "Channel": {"Name": ["actin", "dapi"]},
        "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.1})
    write_tiff(tmp_path / "dapi.tif", data[1], (0.1, 0.1))
    common = ["--model", tiny_model, "--device", "cpu", "--tile", "32"]
    for out in ("alone.tif", "alone.zarr"):
        assert main(["predict", str(tmp_path / "dapi.tif"), "-o", str(tmp_path / out), *common]) == 0
    for out in ("chosen.tif", "chosen.zarr"):
        assert main(["predict", str(tmp_path / "two.ome.tif"), "-o", str(tmp_path / out),
                     "--channel", "dapi", *common]) == 0
    [alone], [chosen] = read_image(tmp_path / "alone.tif"), read_image(tmp_path / "chosen.tif")
    np.testing.assert_array_equal(chosen.data, alone.data)
    assert chosen.scale == pytest.approx((0.1, 0.1))
    streamed = read_ome_zarr(tmp_path / "chosen.zarr")
    np.testing.assert_array_equal(streamed.data[...], read_ome_zarr(tmp_path / "alone.zarr").data[...])
    assert streamed.scale == pytest.approx((0.1, 0.1))
    assert main(["predict", str(tmp_path / "two.ome.tif"), "-o", str(tmp_path / "x.zarr"),
                 *common]) == 2


def test_train_and_report_ask_for_the_channel_of_the_image(two_channels, tmp_path, capsys):
    path, data = two_channels
    scribbles = np.zeros(data.shape[1:], np.uint8)
    write_tiff(tmp_path / "s.tif", scribbles)
    assert main(["train", "--image", str(path), "--labels", str(tmp_path / "s.tif"),
                 "-o", str(tmp_path / "m")]) == 2
    assert "2 channels (0 'actin', 1 'dapi'); choose one with --channel" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "s.tif"), "--kind", "shapes", "--image", str(path),
                 "--channel", "gfp", "-o", str(tmp_path / "r.html")]) == 2
    assert "no channel named 'gfp'" in capsys.readouterr().err
