"""The README's main job headless: samples → enhance → predict → evaluate → measure via the CLI."""

from __future__ import annotations

import numpy as np

from napari_cardioseg.cli import main
from napari_cardioseg.core.io import read_image
from napari_cardioseg.core.table import read_csv


def test_headless_demo_writes_calibrated_results(tmp_path, capsys):
    assert main(["demo", "--headless", "--out", str(tmp_path)]) == 0
    (em,) = read_image(tmp_path / "em.tif")
    for name in ("em_enhanced.tif", "em_mito.tif"):
        (out,) = read_image(tmp_path / name)
        assert out.data.shape == em.data.shape
        np.testing.assert_allclose(out.scale, em.scale, rtol=1e-6)
    for name in ("em_evaluation.csv", "zdisk_evaluation.csv"):
        table = read_csv(tmp_path / name)
        dice = dict(zip(table["class"], table["dice"], strict=True))
        assert dice[1] > 0.6, (name, dice)
    shapes = read_csv(tmp_path / "em_shapes.csv")
    assert len(shapes["label"]) >= 3
    zdisk = read_csv(tmp_path / "zdisk_stats.csv")
    assert len(zdisk["label"]) > 50
    assert "demo results written" in capsys.readouterr().out
