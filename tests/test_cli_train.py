"""``cardioseg train`` then ``cardioseg predict`` on the trained model."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from napari_cardioseg.cli import main
from napari_cardioseg.core.io import read_single
from napari_cardioseg.core.models import read_card
from napari_cardioseg.core.writes import write_tiff
from test_train import dice, disks


@pytest.fixture
def files(tmp_path):
    image, scribbles, truth = disks()
    write_tiff(tmp_path / "img.tif", np.clip(image, 0, 255).astype(np.uint8), scale=(0.01, 0.01))
    write_tiff(tmp_path / "scr.tif", scribbles)
    return tmp_path, truth


def test_train_then_predict_round_trip(files, capsys):
    tmp, truth = files
    code = main(["train", "--image", str(tmp / "img.tif"), "--labels", str(tmp / "scr.tif"),
                 "--steps", "25", "--seed", "0", "-o", str(tmp / "mine")])
    assert code == 0
    assert "saved" in capsys.readouterr().out
    card = read_card(tmp / "mine.json")
    assert card.name == "mine"
    assert card.pixel_size == [0.01, 0.01]
    assert card.training["steps"] == 25
    code = main(["predict", str(tmp / "img.tif"), "--model", str(tmp / "mine.json"),
                 "-o", str(tmp / "labels.tif")])
    assert code == 0
    labels = read_single(tmp / "labels.tif")
    assert labels.data.shape == truth.shape and labels.scale == (0.01, 0.01)
    assert dice(labels.data[:, 64:] == 1, truth[:, 64:]) > 0.8


def test_bad_input_is_one_line_and_exit_2(files, capsys):
    tmp, _ = files
    write_tiff(tmp / "empty.tif", np.zeros((64, 128), np.uint8))
    code = main(["train", "--image", str(tmp / "img.tif"), "--labels", str(tmp / "empty.tif"),
                 "--steps", "2", "-o", str(tmp / "m")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "scribbles are empty" in err
    assert not (tmp / "m.json").exists()
    code = main(["train", "--image", str(tmp / "img.tif"), "--labels", str(tmp / "scr.tif"),
                 "--time-budget", "1", "-o", str(tmp / "nofolder" / "m")])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_time_budget_reports_steps_without_a_total(files, capsys):
    tmp, _ = files
    code = main(["train", "--image", str(tmp / "img.tif"), "--labels", str(tmp / "scr.tif"),
                 "--time-budget", "1.5", "-o", str(tmp / "timed")])
    assert code == 0
    err = capsys.readouterr().err
    assert "train step 1  loss" in err
    card = read_card(tmp / "timed.json")
    assert card.training["seconds"] >= 1.5 and card.training["steps"] >= 1
    assert card.receptive_field == [92, 92]  # unet2d from scratch (depth 3)


def test_module_imports_neither_torch_nor_the_trainer():
    code = ("import sys, napari_cardioseg.cli.train\n"
            "print(sorted(m for m in ('torch', 'napari_cardioseg.core.train') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_probe_head_flag_reaches_the_card(files, capsys):
    tmp, _ = files
    base = ["train", "--image", str(tmp / "img.tif"), "--labels", str(tmp / "scr.tif"),
            "--steps", "2", "--seed", "0", "--arch", "unet2d"]
    assert main([*base, "--probe-head", "-o", str(tmp / "probed")]) == 0
    probed = read_card(tmp / "probed.json").training["probe_head"]
    assert probed["pixels"] == 90 and probed["classes"] == [0, 1]
    assert main([*base, "-o", str(tmp / "plain")]) == 0  # from scratch: off by default
    assert "probe_head" not in read_card(tmp / "plain.json").training


def test_polarity_flag_reaches_the_card(files, capsys):
    tmp, _ = files
    base = ["train", "--image", str(tmp / "img.tif"), "--labels", str(tmp / "scr.tif"),
            "--steps", "1", "--seed", "0", "--arch", "unet2d"]
    assert main([*base, "--polarity", "invert", "--lr-decay", "--renew-norm-stats", "-o",
                 str(tmp / "inv")]) == 0
    assert read_card(tmp / "inv.json").training["norm_stats"].startswith("model recalibrated")
    assert read_card(tmp / "inv.json").normalization["invert"] is True
    assert read_card(tmp / "inv.json").training["lr_decay"] == "cosine to 0"
    assert main([*base, "-o", str(tmp / "plain")]) == 0  # from scratch: nothing to check
    assert "invert" not in read_card(tmp / "plain.json").normalization
    assert "lr_decay" not in read_card(tmp / "plain.json").training
    assert main([*base[:-2], "--init", str(tmp / "plain.json"), "-o", str(tmp / "again")]) == 0
    assert read_card(tmp / "again.json").training["blend"] == 0.25  # another round: a quarter step
    assert main([*base[:-2], "--init", str(tmp / "plain.json"), "--blend", "1", "-o",
                 str(tmp / "whole")]) == 0
    assert "blend" not in read_card(tmp / "whole.json").training
    assert main([*base, "--blend", "0", "-o", str(tmp / "bad")]) == 2
    assert "blend must be a share in (0, 1]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--polarity", "flip", "-o", str(tmp / "bad")])
    assert "invalid choice: 'flip'" in capsys.readouterr().err


def test_ctrl_c_keeps_the_best_model_so_far(files, capsys, monkeypatch):
    from napari_cardioseg.cli import progress

    tmp, _ = files
    calls = []

    def interrupt_at_the_fifth(self, done, message=""):
        calls.append(done)
        if len(calls) == 5:
            raise KeyboardInterrupt

    monkeypatch.setattr(progress.ProgressBar, "update", interrupt_at_the_fifth)
    code = main(["train", "--image", str(tmp / "img.tif"), "--labels", str(tmp / "scr.tif"),
                 "--steps", "50", "-o", str(tmp / "kept")])
    assert code == 130 and "interrupted after" in capsys.readouterr().err
    card = read_card(tmp / "kept.json")
    assert card.training["interrupted_at_step"] == card.training["steps"] >= 3


def test_a_model_is_never_saved_over_its_start_model_or_under_a_pretrained_name(files, capsys,
                                                                                 monkeypatch):
    tmp, _ = files
    monkeypatch.setenv("CARDIOSEG_HOME", str(tmp / "home"))
    base = ["train", "--image", str(tmp / "img.tif"), "--labels", str(tmp / "scr.tif"),
            "--steps", "2"]
    models = tmp / "home" / "models"
    models.mkdir(parents=True)
    assert main([*base, "-o", str(models / "u1")]) == 0
    before = (models / "u1.safetensors").read_bytes()
    assert main([*base, "--init", "u1", "-o", str(models / "u1")]) == 2  # by name, not by path
    assert "input" in capsys.readouterr().err
    assert (models / "u1.safetensors").read_bytes() == before
    assert main([*base, "-o", str(tmp / "zdisk-fluo.json.json")]) == 2
    assert "one suffix" in capsys.readouterr().err
