"""The shipped pretrained models load, declare their classes and segment the sample data."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from napari_cardioseg._sample_data import em_sample, zdisk_sample
from napari_cardioseg.core import nets
from napari_cardioseg.core.errors import CardiosegError
from napari_cardioseg.core.models import PRETRAINED_DIR, list_models, load_model
from napari_cardioseg.core.predict import (
    predict_labels,
    predict_probabilities,
    probabilities_to_labels,
)
from napari_cardioseg.core.tiling import count_tiles
from napari_cardioseg.recipes import common, data
from napari_cardioseg.recipes.__main__ import main

#: Dice measured on the same inputs: 0.916 (zdisk-fluo, central 256x256 crop of the Z-disk sample)
#: and 0.903 (mito-em, every 8th slice of the EM sample)
ZDISK_SAMPLE_DICE = 0.87
MITO_SAMPLE_DICE = 0.88
SHIPPED = {"zdisk-fluo": ["background", "z-disk"], "mito-em": ["background", "mitochondrion"]}
LUCCHI = data.default_data_dir() / "lucchi_pp_train" / "train_crop_image.tif"


def _segment(image: np.ndarray, name: str) -> np.ndarray:
    model, card = load_model(name)
    prob = predict_probabilities(image, model, card, device="cpu")
    return probabilities_to_labels(prob)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_loads_with_its_classes(name):
    for suffix in (".safetensors", ".json"):
        path = PRETRAINED_DIR / f"{name}{suffix}"
        assert path.is_file()
        assert path.stat().st_size <= 15 * 1024 * 1024
    model, card = load_model(name)
    assert card.class_names == SHIPPED[name]
    assert card.spec["classes"] == 2
    assert card.training["seed"] == 0
    assert "recipe" in card.training
    assert card.metrics
    with torch.no_grad():
        out = model(torch.zeros(1, 1, 64, 64))
    assert tuple(out.shape) == (1, 2, 64, 64)


def test_shipped_models_are_listed_as_pretrained():
    entries = {e.name: e for e in list_models()}
    for name in SHIPPED:
        assert entries[name].source == "pretrained"


def test_zdisk_model_segments_the_sample_image():
    (image, _meta, _), (mask, _, _) = zdisk_sample()[:2]
    crop = (slice(128, 384), slice(128, 384))
    pred = _segment(image[crop], "zdisk-fluo")
    assert pred.shape == mask[crop].shape
    assert common.dice(pred, mask[crop]) >= ZDISK_SAMPLE_DICE


def test_mito_model_segments_the_sample_stack():
    (image, _meta, _), (labels, _, _) = em_sample()[:2]
    slab = image[::8]
    pred = _segment(slab, "mito-em")
    assert pred.shape == slab.shape
    assert common.dice(pred, labels[::8] > 0) >= MITO_SAMPLE_DICE


def test_degrade_keeps_image_and_mask_aligned(rng):
    image = np.zeros((100, 120), np.uint8)
    image[40:60, 30:90] = 200
    mask = (image > 0).astype(np.uint8)
    img, m = data.degrade(image, mask, rng, zoom=(0.5, 0.5))
    assert img.shape == m.shape == (50, 60)
    assert img.dtype == np.float32
    assert img[m > 0].mean() > img[m == 0].mean() + 0.5
    assert m.sum() == pytest.approx(mask.sum() / 4, rel=0.1)


def test_recipe_reports_missing_data(tmp_path, capsys):
    assert main(["mito", "--data", str(tmp_path), "--out", str(tmp_path), "--minutes", "0.01"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "training data not found" in err
    assert len(err.splitlines()) == 1


def test_recipe_refuses_an_unknown_architecture_before_making_data(tmp_path, capsys):
    assert main(["zdisk", "--arch", "nope", "--out", str(tmp_path), "--minutes", "0.01"]) == 2
    assert "unknown architecture 'nope'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_data_splits_hold_out_the_documented_parts():
    folder = data.default_data_dir()
    if not (folder / "lucchi_pp_train").is_dir() or not (folder / "emnet_cardiac_sbfsem").is_dir():
        pytest.skip("third-party data not available")
    train, val = data.lucchi_split(folder)
    assert (len(train.images), len(val.images)) == (140, 25)
    train, val = data.emnet_split(folder)
    assert (len(train.images), len(val.images)) == (16, 4)
    assert all(set(np.unique(m)) <= {0, 1} for m in val.masks)


def test_missing_data_file_is_a_clear_error(tmp_path):
    with pytest.raises(CardiosegError, match="training data not found"):
        data.emnet_split(tmp_path)


def test_shipped_cards_store_the_measured_receptive_field():
    fields = {load_model(name)[1].receptive_field_px() for name in SHIPPED}
    assert fields == {(315, 315)}  # both are unet-mobilenet_v2 with encoder depth 4
    assert nets.receptive_field(common.SPEC) == (315, 315)


def _tile_agreement(image: np.ndarray, name: str) -> float:
    """Fraction of pixels labelled alike with 128 px and 1024 px tiles (default overlap)."""
    model, card = load_model(name)
    small = predict_labels(image, model, card, tile=128, device="cpu")
    large = predict_labels(image, model, card, tile=1024, device="cpu")
    return float((small == large).mean())


def test_tile_size_does_not_change_the_sample_segmentation():
    image = em_sample()[0][0]
    strip = np.concatenate(list(image[::8]), axis=1)  # 256 x 1024: four slices side by side
    assert count_tiles(strip.shape, common.SPEC, 128, receptive_field=(315, 315)) == 3  # cut
    assert _tile_agreement(strip, "mito-em") >= 0.999
    zdisk = zdisk_sample()[0][0]
    assert _tile_agreement(np.concatenate([zdisk, zdisk[:, ::-1]], axis=1), "zdisk-fluo") >= 0.999


def test_tile_size_does_not_change_a_real_em_segmentation():
    if not LUCCHI.is_file():
        pytest.skip("third-party data not available")
    stack = tifffile.imread(LUCCHI)
    assert _tile_agreement(stack[80], "mito-em") >= 0.999  # 384 x 512: one slice
    strip = np.concatenate([stack[20], stack[80], stack[140]], axis=1)  # 384 x 1536
    assert count_tiles(strip.shape, common.SPEC, 128, receptive_field=(315, 315)) == 4
    assert _tile_agreement(strip, "mito-em") >= 0.999
