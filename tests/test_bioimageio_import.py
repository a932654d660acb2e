"""Running bioimage.io packages through our sliding window (packages built here from a tiny net)."""

from __future__ import annotations

import gc
import shutil
import warnings
import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("bioimageio.spec")
pytest.importorskip("onnxruntime")

from napari_cardioseg.core import nets
from napari_cardioseg.core.bioimageio_export import export_bioimageio
from napari_cardioseg.core.bioimageio_import import REGISTRY, is_bioimageio, load_bioimageio
from napari_cardioseg.core.errors import CardiosegError
from napari_cardioseg.core.models import ModelCard
from napari_cardioseg.core.normalize import apply_normalization, fit_normalization
from napari_cardioseg.core.predict import predict_probabilities

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning",
                                        "ignore::pytest.PytestUnraisableExceptionWarning")
SPEC = {"arch": "unet2d", "in_channels": 1, "classes": 2, "depth": 2, "base": 4}


@pytest.fixture(autouse=True)
def _registry(monkeypatch):
    """Imported-model architectures registered for the test only (test_nets checks the registry)."""
    for name, arch in REGISTRY.items():
        monkeypatch.setitem(nets.ARCHITECTURES, name, arch)


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """A tiny net, its card, and its package with onnx + torchscript weights."""
    torch.manual_seed(3)
    model = nets.build_model(SPEC).eval()
    card = ModelCard(name="tiny-import", spec=dict(SPEC), class_names=["background", "cell"],
                     normalization={"method": "percentile", "low": 1.0, "high": 99.8},
                     pixel_size=[0.05, 0.05], license="MIT")
    path = tmp_path_factory.mktemp("pkg") / "tiny.zip"
    export_bioimageio(model, card, path, test_size=32, weight_formats=("torchscript", "onnx"))
    yield model, card, path
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def stack() -> np.ndarray:
    return np.random.default_rng(0).gamma(2.0, 30.0, (2, 70, 90)).astype(np.float32)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_package_predicts_like_the_original(package, fmt):
    model, card, path = package
    net, imported = load_bioimageio(path, weight_format=fmt)
    assert imported.class_names == ["background", "cell"]
    assert imported.normalization == {"method": "percentile", "low": 1.0, "high": 99.8}
    assert imported.pixel_size == pytest.approx([0.05, 0.05])
    assert nets.size_multiple(imported.spec) == 4 and nets.spec_ndim(imported.spec) == 2
    image = stack()
    # the package keeps its receptive field (in this plugin's config): tiles overlap as the
    # original's do, so the result is the original's and does not depend on the tile size
    assert imported.receptive_field_px() == card.receptive_field_px() != (1, 1)
    ref = predict_probabilities(image, model, card, tile=32, device="cpu")
    for tile in (32, 48):
        got = predict_probabilities(image, net, imported, tile=tile, device="cpu")
        np.testing.assert_allclose(got, ref, atol=1e-5)


def test_halo_is_padded_and_cropped(package, tmp_path):
    model, card, path = package
    edited = tmp_path / "halo.zip"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(edited, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "rdf.yaml":
                text = data.decode()
                for axis in ("y", "x"):
                    text = text.replace(f"          axis_id: {axis}\n",
                                        f"          axis_id: {axis}\n        halo: 4\n")
                text = text.replace("min: 4\n", "min: 12\n")  # more than twice the halo
                assert text.count("halo: 4") == 2 and text.count("min: 12") == 2
                data = text.encode()
            dst.writestr(item, data)
    net, imported = load_bioimageio(edited, weight_format="onnx")
    image = stack()[0, :64, :64]
    got = predict_probabilities(image, net, imported, tile=64, device="cpu")  # one tile
    x = apply_normalization(image, fit_normalization(image, card.normalization))
    padded = F.pad(torch.from_numpy(x)[None, None], (4, 4, 4, 4), mode="reflect")
    with torch.no_grad():
        want = torch.softmax(model(padded), dim=1)[0, :, 4:-4, 4:-4].numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    plain = predict_probabilities(image, model, card, tile=64, device="cpu")
    assert np.abs(plain - want).max() > 1e-4  # the halo changed the border


def test_state_dict_only_package_is_refused_by_name(package, tmp_path):
    model, card, _ = package
    path = export_bioimageio(model, card, tmp_path / "sd.zip", test_size=16,
                             weight_formats=("pytorch_state_dict",))
    with pytest.raises(CardiosegError, match=r"unsupported bioimage.io package: weights \['pytorch"):
        load_bioimageio(path)


def test_invalid_package_is_one_error(tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("rdf.yaml", "type: model\nformat_version: 0.5.4\nname: broken\n")
    with pytest.raises(CardiosegError, match=r"not a valid bioimage\.io model"):
        load_bioimageio(bad)


def test_is_bioimageio(package, tmp_path):
    _, _, path = package
    assert is_bioimageio(path)
    folder = tmp_path / "unpacked"
    shutil.unpack_archive(path, folder)
    assert is_bioimageio(folder) and is_bioimageio(folder / "rdf.yaml")
    assert not is_bioimageio(tmp_path / "model.json")
    _, card = load_bioimageio(folder, weight_format="torchscript")
    assert card.spec["classes"] == 2
