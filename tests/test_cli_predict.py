"""``cardioseg predict`` and ``cardioseg models`` round trips through files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_cardioseg.cli import main
from napari_cardioseg.core import models, nets
from napari_cardioseg.core.io import read_single, write_tiff
from napari_cardioseg.core.predict import predict_probabilities, probabilities_to_labels


@pytest.fixture
def user_model(tmp_path, monkeypatch):
    monkeypatch.setenv("CARDIOSEG_HOME", str(tmp_path / "home"))
    spec = {"arch": "unet2d", "in_channels": 1, "classes": 3, "depth": 2, "base": 4}
    torch.manual_seed(0)
    model = nets.build_model(spec).eval()
    card = models.ModelCard("tiny", spec, ["background", "mito", "lyso"], {"method": "zscore"},
                            [0.005, 0.005])
    models.save_model(model, card, models.user_models_dir(create=True) / "tiny")
    return model, card


def test_predict_round_trip(tmp_path, rng, user_model, capsys):
    model, card = user_model
    stack = rng.integers(0, 255, (2, 40, 52)).astype(np.uint8)
    write_tiff(tmp_path / "in.tif", stack, (0.03, 0.005, 0.004))
    code = main(["predict", str(tmp_path / "in.tif"), "--model", "tiny", "-o",
                 str(tmp_path / "labels.tif"), "--prob", str(tmp_path / "prob.tif"),
                 "--tile", "32", "--overlap", "0.5", "--batch", "3", "--device", "cpu"])
    assert code == 0
    labels = read_single(tmp_path / "labels.tif")
    assert labels.data.dtype == np.uint8 and labels.scale == pytest.approx((0.03, 0.005, 0.004))
    prob = predict_probabilities(stack, model, card, device="cpu")
    np.testing.assert_array_equal(labels.data, probabilities_to_labels(prob))
    for c, name in ((1, "mito"), (2, "lyso")):
        p = read_single(tmp_path / f"prob-{name}.tif")
        assert p.scale == pytest.approx((0.03, 0.005, 0.004))
        np.testing.assert_allclose(p.data, prob[c], atol=2e-5)
    assert "wrote" in capsys.readouterr().out


def test_predict_with_flips(tmp_path, rng, user_model):
    model, card = user_model
    image = rng.integers(0, 255, (40, 52)).astype(np.uint8)
    write_tiff(tmp_path / "in.tif", image, (0.005, 0.005))
    assert main(["predict", str(tmp_path / "in.tif"), "--model", "tiny", "-o", str(tmp_path / "l.tif"),
                 "--prob", str(tmp_path / "p.tif"), "--flips", "--device", "cpu"]) == 0
    prob = predict_probabilities(image, model, card, device="cpu", flips=True)
    np.testing.assert_allclose(read_single(tmp_path / "p-mito.tif").data, prob[1], atol=2e-5)
    assert not np.allclose(prob, predict_probabilities(image, model, card, device="cpu"), atol=1e-3)


def test_models_lists_user_models(user_model, capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("tiny"))
    assert row.split()[:5] == ["tiny", "user", "unet2d", "mito,lyso", "0.005x0.005"]
    assert row.endswith("tiny.json")


def test_unknown_model_is_one_line_error(tmp_path, user_model, capsys):
    write_tiff(tmp_path / "in.tif", np.zeros((8, 8), np.uint8))
    code = main(["predict", str(tmp_path / "in.tif"), "--model", "nope", "-o",
                 str(tmp_path / "out.tif")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "no model 'nope'" in err and "tiny" in err
