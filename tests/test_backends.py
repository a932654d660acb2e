"""CPU back ends give the same probabilities as eager PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_cardioseg.core import backends, nets
from napari_cardioseg.core.errors import CardiosegError
from napari_cardioseg.core.models import ModelCard


def tiny(arch: str = "unet2d") -> tuple[torch.nn.Module, ModelCard]:
    torch.manual_seed(0)
    spec = {"arch": arch, "in_channels": 1, "classes": 3, "depth": 2, "base": 4}
    model = nets.build_model(spec).eval()
    card = ModelCard(name="tiny", spec=spec, class_names=["background", "a", "b"],
                     normalization={"method": "zscore"}, pixel_size=None)
    return model, card


@pytest.mark.parametrize("backend", ["torchscript", "onnx"])
@pytest.mark.parametrize("arch", ["unet2d", "unet3d"])
def test_backend_matches_eager(backend, arch):
    if backend == "onnx":
        pytest.importorskip("onnxruntime")
    model, card = tiny(arch)
    shape = (2, 24, 40) if arch == "unet2d" else (2, 8, 16, 12)  # not the export example size
    batch = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    ref = backends.make_runner(model, card, "eager")(batch)
    got = backends.make_runner(model, card, backend)(batch)
    assert got.shape == (shape[0], 3, *shape[1:])
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got, ref, atol=2e-5)


def test_unknown_backend_is_an_error():
    model, card = tiny()
    with pytest.raises(CardiosegError, match="backend must be one of"):
        backends.make_runner(model, card, "tensorrt")


def test_auto_honours_the_environment(monkeypatch):
    model, card = tiny()
    monkeypatch.setenv("CARDIOSEG_BACKEND", "eager")
    batch = np.zeros((1, 16, 16), np.float32)
    np.testing.assert_allclose(backends.make_runner(model, card, "auto")(batch),
                               backends.eager_runner(model, card)(batch), atol=0)


def test_onnx_sessions_are_reused_per_weights_and_threads(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("CARDIOSEG_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(backends, "_SESSIONS", {})
    model, card = tiny()
    batch = np.random.default_rng(2).normal(size=(1, 16, 24)).astype(np.float32)
    ref = backends.make_runner(model, card, "eager")(batch)
    backends.onnx_runner(model, card, threads=1)(batch)
    assert backends._SESSIONS == {}  # weights without a sha256 may change: never reused
    cards = []
    for i in range(3):
        fixed = ModelCard(name=f"m{i}", spec=card.spec, class_names=card.class_names,
                          normalization=card.normalization, pixel_size=None,
                          weights_sha256=f"{i:064x}")
        cards.append(fixed)
        np.testing.assert_allclose(backends.onnx_runner(model, fixed, threads=1)(batch), ref,
                                   atol=2e-5)
    assert len(backends._SESSIONS) == backends.SESSIONS_KEPT  # the oldest went
    kept = dict(backends._SESSIONS)
    backends.onnx_runner(model, cards[2], threads=1)
    assert backends._SESSIONS == kept  # the same session object, not a new one
    backends.onnx_runner(model, cards[2], threads=2)
    assert set(backends._SESSIONS) == {(backends._onnx_key(cards[2]), 1),
                                       (backends._onnx_key(cards[2]), 2)}
