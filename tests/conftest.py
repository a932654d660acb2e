"""Shared fixtures. torch is imported before any viewer exists (Mesa/LLVM clash, see notes)."""

from __future__ import annotations

import os
import sys
import tempfile

sys.modules.setdefault("triton", None)  # keep triton (and its LLVM) out of the process
# exported ONNX files of the CPU back end go to a throwaway folder, not the user's cache
os.environ.setdefault("CARDIOSEG_CACHE_DIR", tempfile.mkdtemp(prefix="cardioseg-test-cache-"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Record each phase's report on the item; napari's ``make_napari_viewer`` reads ``rep_call``."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def volume(rng):
    """Make a stack whose slices continue each other (smooth along every axis), uint8 0-255."""
    from scipy import ndimage as ndi

    def make(shape: tuple[int, ...]) -> np.ndarray:
        field = ndi.gaussian_filter(rng.normal(size=shape), 2.0)
        field = (field - field.min()) / (field.max() - field.min())
        return np.round(255 * field).astype(np.uint8)

    return make


@pytest.fixture
def viewer(make_napari_viewer, qtbot):
    """A real napari viewer; workers are awaited at teardown so none outlives the test."""
    from napari.qt.threading import WorkerBase

    v = make_napari_viewer()
    yield v
    WorkerBase.await_workers(msecs=30000)
    qtbot.wait(50)


@pytest.fixture
def user_model(tmp_path, monkeypatch):
    """A 3-class user model ``tiny`` whose labels vary over an image (its head is re-centred)."""
    from napari_cardioseg.core import models, nets

    monkeypatch.setenv("CARDIOSEG_HOME", str(tmp_path / "home"))
    spec = {"arch": "unet2d", "in_channels": 1, "classes": 3, "depth": 2, "base": 4}
    torch.manual_seed(0)
    model = nets.build_model(spec).eval()
    with torch.no_grad():
        model.head.weight.normal_(0.0, 1.0)
        model.head.bias.zero_()
        logits = model(torch.randn(1, 1, 64, 64))
        margins = (logits - logits[:, :1]).transpose(0, 1).reshape(3, -1)
        model.head.bias -= margins.median(dim=1).values
    card = models.ModelCard("tiny", spec, ["background", "mito", "lyso"], {"method": "zscore"},
                            [0.005, 0.005])
    models.save_model(model, card, models.user_models_dir(create=True) / "tiny")
    return models.load_model("tiny")
