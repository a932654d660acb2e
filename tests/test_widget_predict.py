"""The Predict widget in a real viewer: labels on top of the input, model list, stop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_cardioseg.core import models, nets
from napari_cardioseg.core.predict import predict_probabilities, probabilities_to_labels
from napari_cardioseg.widgets.predict import LOAD_FILE, PredictWidget

SPEC = {"arch": "unet2d", "in_channels": 1, "classes": 2, "depth": 2, "base": 4}


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CARDIOSEG_HOME", str(tmp_path / "home"))
    return tmp_path


def save_tiny(path, name="tiny") -> tuple[torch.nn.Module, models.ModelCard]:
    torch.manual_seed(0)
    model = nets.build_model(SPEC).eval()
    card = models.ModelCard(name, SPEC, ["background", "zdisk"], {"method": "zscore"}, None)
    models.save_model(model, card, path)
    return model, card


def run_and_wait(widget, qtbot):
    with qtbot.waitSignal(widget._run.changed, timeout=1000):
        widget._run.native.click()
    assert widget.worker is not None
    qtbot.waitUntil(lambda: widget._run.enabled, timeout=20000)


def test_run_adds_labels_with_scale_and_translate(viewer, qtbot, home, rng):
    widget = PredictWidget(viewer)
    pretrained = [f"{e.name} (pretrained)" for e in models.list_models()]
    assert [label for label, _ in widget._model_choices()] == [*pretrained, LOAD_FILE]  # no user models
    model, card = save_tiny(models.user_models_dir(create=True) / "tiny")
    widget.refresh_models()  # what the Train widget calls after saving
    choices = dict(widget._model_choices())
    assert choices["tiny (user)"] == str(models.user_models_dir() / "tiny.json")
    widget._model.value = choices["tiny (user)"]

    stack = rng.normal(0, 1, (2, 40, 60)).astype(np.float32)
    source = viewer.add_image(stack, name="em", scale=(0.05, 0.01, 0.02), translate=(1, 2, 3))
    widget._image.value = source
    widget._tile.value, widget._batch.value, widget._device.value = 32, 2, "cpu"
    widget._prob.value = True
    run_and_wait(widget, qtbot)

    labels = viewer.layers["em labels"]
    expected = predict_probabilities(stack, model, card, tile=32, overlap=0.25, device="cpu")
    np.testing.assert_array_equal(labels.data, probabilities_to_labels(expected))
    np.testing.assert_allclose(labels.scale, (0.05, 0.01, 0.02))
    np.testing.assert_allclose(labels.translate, (1, 2, 3))
    prob = viewer.layers["em probabilities"]
    np.testing.assert_allclose(prob.data, expected[1], atol=2e-5)
    np.testing.assert_allclose(prob.scale, (0.05, 0.01, 0.02))

    widget._flips.value = True  # test-time flips reach the core call
    run_and_wait(widget, qtbot)
    flipped = predict_probabilities(stack, model, card, tile=32, overlap=0.25, device="cpu", flips=True)
    newest = viewer.layers[-1]  # a new run adds new layers ("em probabilities [1]")
    assert newest.name.startswith("em probabilities") and newest is not prob
    np.testing.assert_allclose(newest.data, flipped[1], atol=2e-5)
    assert not np.allclose(flipped[1], expected[1], atol=1e-3)


def test_model_file_and_stop(viewer, qtbot, home, rng):
    (home / "elsewhere").mkdir()
    save_tiny(home / "elsewhere" / "file_model", name="from file")
    widget = PredictWidget(viewer)
    widget.load_model_file(home / "elsewhere" / "file_model.safetensors")
    assert widget._model.value == str(home / "elsewhere" / "file_model.json")
    source = viewer.add_image(rng.normal(0, 1, (30, 64, 64)).astype(np.float32), name="big")
    widget._image.value = source
    widget._tile.value, widget._batch.value, widget._device.value = 16, 1, "cpu"
    widget._run.native.click()
    worker = widget.worker
    with qtbot.waitSignal(worker.finished, timeout=20000):
        widget._stop.native.click()
    assert "big labels" not in viewer.layers  # stopped before the end: no result layer
    assert widget._run.enabled and not widget._stop.enabled
