"""One colour table for scribbles and predictions; saved models never take a pretrained name."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from napari_cardioseg.cli import main
from napari_cardioseg.core import colors, models
from napari_cardioseg.core.errors import CardiosegError


def test_scribble_value_k_plus_1_is_drawn_like_prediction_k():
    scribble, prediction = colors.scribble_colors(), colors.prediction_colors()
    assert scribble[0] == scribble[None] == prediction[0] == colors.TRANSPARENT
    assert scribble[1] == colors.BACKGROUND and colors.BACKGROUND[3] == 1.0  # grey strokes
    for k in range(1, colors.TABLE_SIZE):
        assert scribble[k + 1] == prediction[k] == colors.class_color(k)
    first = [colors.class_color(k) for k in range(1, len(colors.CLASSES) + 1)]
    assert len(set(first)) == len(first) and colors.BACKGROUND not in first  # all distinct
    assert colors.class_color(1 + len(colors.CLASSES)) == colors.class_color(1)  # repeats
    assert np.all((np.array(first) >= 0) & (np.array(first) <= 1))
    with pytest.raises(ValueError):
        colors.class_color(-1)


def test_a_pretrained_name_is_refused_for_saving(tmp_path):
    for name in ("mito-em", "mito-em.json", tmp_path / "zdisk-fluo.safetensors"):
        with pytest.raises(CardiosegError, match="name of a pretrained model"):
            models.check_save_name(name)
    models.check_save_name(tmp_path / "mito-em-finetuned-20261202.json")  # no error


def test_cli_train_refuses_a_pretrained_output_name(tmp_path, capsys):
    code = main(["train", "--image", str(tmp_path / "image.tif"), "--labels",
                 str(tmp_path / "scribbles.tif"),
                 "-o", str(tmp_path / "mito-em")])
    assert code == 2 and "name of a pretrained model" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_models_folder_setting_lists_and_loads_models_saved_anywhere(tmp_path, monkeypatch):
    monkeypatch.setenv("CARDIOSEG_HOME", str(tmp_path / "home"))
    folder = tmp_path / "lab models"
    folder.mkdir()
    for suffix in (".json", ".safetensors"):
        shutil.copy(models.PRETRAINED_DIR / f"mito-em{suffix}", folder / f"cells{suffix}")
    assert "cells" not in [e.name for e in models.list_models()]
    monkeypatch.setenv("CARDIOSEG_MODELS_DIR", str(folder))
    assert models.user_models_dir() == folder
    entry = next(e for e in models.list_models() if e.name == "cells")
    assert entry.source == "user" and entry.path == folder / "cells.json"
    _, card = models.load_model("cells")  # by name, as the CLI's --model does
    assert card.class_names == ["background", "mitochondrion"]
