"""Prediction through the CPU back ends: same labels as eager, ``auto`` picks ONNX, cached export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_cardioseg.core import backends, nets
from napari_cardioseg.core.errors import CardiosegError
from napari_cardioseg.core.models import ModelCard, load_model
from napari_cardioseg.core.predict import predict_steps
from napari_cardioseg.core.progress import drain

pytest.importorskip("onnxruntime")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """An empty ONNX cache folder and memory cache for every test."""
    monkeypatch.setenv("CARDIOSEG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CARDIOSEG_BACKEND", raising=False)
    monkeypatch.setattr(backends, "_ONNX_CACHE", {})
    monkeypatch.setattr(backends, "_SESSIONS", {})


def tiny(sha: str = "") -> tuple[torch.nn.Module, ModelCard]:
    torch.manual_seed(0)
    spec = {"arch": "unet2d", "in_channels": 1, "classes": 3, "depth": 2, "base": 4}
    card = ModelCard(name="tiny", spec=spec, class_names=["background", "a", "b"],
                     normalization={"method": "zscore"}, pixel_size=None, weights_sha256=sha)
    return nets.build_model(spec).eval(), card


def agree(image: np.ndarray, model, card, **kwargs) -> None:
    ref = drain(predict_steps(image, model, card, device="cpu", backend="eager", **kwargs))
    got = drain(predict_steps(image, model, card, device="cpu", backend="onnx", **kwargs))
    np.testing.assert_allclose(got.probabilities, ref.probabilities, atol=1e-4)
    assert np.mean(got.labels == ref.labels) >= 0.999


@pytest.mark.parametrize("flips", [False, True])
def test_tiny_net_onnx_equals_eager(flips):
    model, card = tiny()
    image = np.random.default_rng(0).gamma(2.0, 30.0, (2, 90, 70)).astype(np.float32)
    agree(image, model, card, tile=48, flips=flips)


def test_shipped_model_onnx_equals_eager_on_sample():
    from napari_cardioseg._sample_data import zdisk_sample

    model, card = load_model("zdisk-fluo")
    agree(zdisk_sample()[0][0][:256, :320], model, card, tile=256)


def test_auto_on_cpu_picks_onnx(monkeypatch):
    model, card = tiny()
    built = []
    real = backends.onnx_runner
    monkeypatch.setattr(backends, "onnx_runner", lambda *a, **k: built.append(1) or real(*a, **k))
    image = np.random.default_rng(1).normal(size=(40, 40)).astype(np.float32)
    drain(predict_steps(image, model, card, device="cpu", backend="auto"))
    assert built == [1]  # built once per run
    assert backends.cpu_runner(model, card, "eager", torch.device("cpu")) is None
    assert backends.cpu_runner(model, card, "auto", torch.device("cuda")) is None


def test_unknown_backend_is_a_clear_error():
    model, card = tiny()
    with pytest.raises(CardiosegError, match="backend must be one of auto, eager"):
        drain(predict_steps(np.zeros((32, 32), np.float32), model, card, backend="tensorrt"))


def test_onnx_export_is_cached_per_weights(monkeypatch, tmp_path):
    model, card = tiny(sha="ab" * 32)
    exports = []
    real = backends._export_onnx
    monkeypatch.setattr(backends, "_export_onnx", lambda m, c: exports.append(1) or real(m, c))
    first = backends.onnx_bytes(model, card)
    assert backends.onnx_bytes(model, card) == first and len(exports) == 1  # memory
    files = list((tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert len(files) == 1 and files[0].read_bytes() == first
    monkeypatch.setattr(backends, "_ONNX_CACHE", {})
    assert backends.onnx_bytes(model, card) == first and len(exports) == 1  # disk
    untracked = tiny()[1]  # no sha256 (a model being trained): exported every time
    backends.onnx_bytes(model, untracked)
    backends.onnx_bytes(model, untracked)
    assert len(exports) == 3


def test_int8_is_auto_only_for_models_with_calibration_images(monkeypatch):
    model, card = tiny(sha="cd" * 32)
    assert backends.auto_backend(card) == "onnx"
    assert backends.auto_backend(load_model("zdisk-fluo")[1]) == "int8"
    with pytest.raises(CardiosegError, match=r"no calibration images for model 'tiny'.*--backend onnx"):
        backends.make_runner(model, card, "int8")
    monkeypatch.setenv("CARDIOSEG_BACKEND", "onnx")
    assert backends.auto_backend(load_model("zdisk-fluo")[1]) == "onnx"


def test_shipped_model_int8_agrees_with_eager_on_unseen_image(monkeypatch, tmp_path):
    from napari_cardioseg.core import quantize
    from napari_cardioseg.core.synth import ZdiskParams, zdisk_image

    model, card = load_model("zdisk-fluo")
    assert not backends.auto_cached(card)
    made = []
    real = quantize.quantize_onnx
    monkeypatch.setattr(quantize, "quantize_onnx", lambda g, c: made.append(1) or real(g, c))
    # not the calibration image: another seed, pixel size and sarcomere length
    sample = zdisk_image((256, 320), ZdiskParams(pixel_size=0.07, sarcomere_length=2.1), seed=7)
    ref = drain(predict_steps(sample.image, model, card, device="cpu", backend="eager", tile=256))
    got = drain(predict_steps(sample.image, model, card, device="cpu", backend="int8", tile=256))
    truth = sample.mask > 0

    def dice(labels: np.ndarray, other: np.ndarray) -> float:
        return 2 * np.sum((labels > 0) & other) / (np.sum(labels > 0) + np.sum(other))

    assert dice(got.labels, ref.labels > 0) >= 0.97
    assert abs(dice(got.labels, truth) - dice(ref.labels, truth)) <= 0.01
    assert np.abs(got.probabilities - ref.probabilities).max() < 0.5
    assert made == [1] and backends.auto_cached(card)
    monkeypatch.setattr(backends, "_ONNX_CACHE", {})
    backends.int8_bytes(model, card)  # from the disk cache: not quantised again
    assert made == [1]
    assert len(list((tmp_path / "cache" / "onnx").glob("*.onnx"))) == 2  # float32 and int8


def test_a_cached_graph_runs_without_building_the_net(monkeypatch, tmp_path):
    import shutil

    import tifffile

    from napari_cardioseg.core.models import PRETRAINED_DIR
    from napari_cardioseg.core.one_file import predict_file

    for suffix in (".json", ".safetensors"):  # a private copy, to tamper with below
        shutil.copy(PRETRAINED_DIR / f"zdisk-fluo{suffix}", tmp_path / f"zd{suffix}")
    model = str(tmp_path / "zd.json")
    source = tmp_path / "in.tif"
    tifffile.imwrite(source, np.random.default_rng(4).integers(0, 4000, (96, 128), dtype=np.uint16))
    builds = []
    real = nets.build_model
    monkeypatch.setattr(nets, "build_model", lambda spec: builds.append(1) or real(spec))
    drain(predict_file(source, tmp_path / "a.tif", model=model, backend="onnx"))
    assert builds == [1]  # first run: built and exported
    drain(predict_file(source, tmp_path / "b.tif", model=model, backend="onnx"))
    assert builds == [1]  # second run: the cached graph alone
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "a.tif"), tifffile.imread(tmp_path / "b.tif"))
    drain(predict_file(source, tmp_path / "c.tif", model=model, backend="eager"))
    assert builds == [1, 1]  # eager always builds the net
    weights = tmp_path / "zd.safetensors"
    weights.write_bytes(weights.read_bytes()[:-2] + b"  ")  # changed after saving
    with pytest.raises(CardiosegError, match="do not match their card"):
        drain(predict_file(source, tmp_path / "d.tif", model=model, backend="onnx"))
