"""Inverted contrast: the normalisation's ``invert`` flag and the start model's polarity check."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from skimage.draw import disk
from torch import nn

from napari_cardioseg.core import nets, probe_head
from napari_cardioseg.core.blocks import fixed_normalization_card
from napari_cardioseg.core.errors import CardiosegError
from napari_cardioseg.core.models import ModelCard
from napari_cardioseg.core.normalize import (
    apply_normalization,
    check_normalization,
    fit_normalization,
)
from napari_cardioseg.core.polarity import POLARITY_MARGIN, check_polarity, flipped
from napari_cardioseg.core.train import TrainSession
from napari_cardioseg.core.train_config import METHOD

NORM = {"method": "percentile", "low": 1.0, "high": 99.8}


@pytest.mark.parametrize("recipe", [NORM, {"method": "minmax"}, {"method": "zscore"},
                                    {"method": "fixed", "min": -300.0, "max": -20.0}])
def test_inverting_recipe_is_the_recipe_on_the_negated_image(recipe):
    image = np.random.default_rng(0).gamma(2.0, 50.0, (60, 70))
    image[3, 4] = np.nan
    fitted = fit_normalization(image, flipped(recipe))
    assert fitted["invert"] is True and "invert" not in fit_normalization(image, recipe)
    expected = apply_normalization(-image, fit_normalization(-image, recipe))
    np.testing.assert_allclose(apply_normalization(image, fitted), expected, atol=1e-6)
    assert apply_normalization(image, fitted)[3, 4] == 0.0  # NaN stays 0
    assert flipped(flipped(recipe)) == recipe  # the flag is dropped, not set to False


def test_inverted_percentiles_mirror_the_normal_ones():
    image = np.random.default_rng(1).gamma(2.0, 50.0, (50, 50))
    normal = apply_normalization(image, fit_normalization(image, {**NORM, "low": 0.2}))
    inverse = apply_normalization(image, fit_normalization(image, {**NORM, "invert": True}))
    # percentiles (1, 99.8) of -x are -(99, 0.2) of x: the map is 1 - t once (0.2, 99)
    mirrored = apply_normalization(image, fit_normalization(image, {**NORM, "low": 0.2,
                                                                    "high": 99.0}))
    np.testing.assert_allclose(inverse, 1.0 - mirrored, atol=1e-5)
    assert np.corrcoef(normal.ravel(), inverse.ravel())[0, 1] == pytest.approx(-1.0)


def test_invert_flag_must_be_a_bool():
    assert check_normalization({**NORM, "invert": False}) == "percentile"
    with pytest.raises(CardiosegError, match="'invert' must be true or false"):
        check_normalization({**NORM, "invert": "yes"})


@pytest.mark.parametrize("recipe", [{"method": "zscore", "invert": True}, {**NORM, "invert": True}])
def test_blockwise_fixed_card_keeps_the_inversion(recipe):
    volume = np.random.default_rng(2).normal(3, 2, (40, 50)).astype(np.float32)
    spec = {"arch": "unet2d", "in_channels": 1, "classes": 2, "depth": 1, "base": 2}
    card = ModelCard("inv", spec, ["background", "thing"], recipe, None)
    fixed = fixed_normalization_card(card, volume)
    assert fixed.normalization["invert"] is True
    np.testing.assert_allclose(
        apply_normalization(volume, fit_normalization(volume, fixed.normalization)),
        apply_normalization(volume, fit_normalization(volume, recipe)), atol=1e-5)


class _Toy(nn.Module):
    """Per-pixel features (the intensity, its negative, a constant) and a 3x3 head."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.body = nn.Conv2d(1, 3, 1)
        with torch.no_grad():
            self.body.weight.copy_(torch.tensor([1.0, -1.0, 0.0]).reshape(3, 1, 1, 1))
            self.body.bias.copy_(torch.tensor([0.0, 0.0, 1.0]))
        self.head = nn.Conv2d(3, classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def encoder(model: _Toy) -> list[nn.Module]:
    """The toy's "encoder" (the registry row's module hook)."""
    return [model.body]


def replace_head(model: _Toy, classes: int) -> None:
    """A fresh head (the registry row's module hook)."""
    model.head = nn.Conv2d(3, classes, 3, padding=1)


@pytest.fixture
def bright_disk_model(monkeypatch):
    """A toy "pretrained" model and card: its head fitted to find bright disks."""
    row = nets.Architecture(lambda spec: _Toy(int(spec["classes"])), 2, lambda spec: 1, "toy",
                            scratch=None, head="head")
    monkeypatch.setitem(nets.ARCHITECTURES, "toy", row)
    spec = {"arch": "toy", "in_channels": 1, "classes": 2}
    image, scribbles, _ = disks(seed=5)
    torch.manual_seed(0)
    model = nets.build_model(spec)
    normalized = apply_normalization(image, fit_normalization(image, NORM))
    assert probe_head.probe_head(model, spec, [normalized], [scribbles], anchor=False) is not None
    return model, ModelCard("bright", spec, ["background", "disk"], dict(NORM), None)


def disks(seed: int = 0, dark: bool = False):
    """Bright (or dark) noisy disks on a 120-grey background, strokes in both classes, truth."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((64, 128), bool)
    for cy, cx in [(16, 16), (44, 30), (20, 50), (16, 80), (46, 100), (40, 70)]:
        truth[disk((cy, cx), 8, shape=truth.shape)] = True
    image = 120.0 + (-60.0 if dark else 60.0) * truth + rng.normal(0.0, 10.0, truth.shape)
    scribbles = np.zeros(truth.shape, np.uint8)
    for cy, cx in [(16, 16), (44, 30), (20, 50)]:
        scribbles[cy, cx - 3 : cx + 4] = 2
    for y, x in [(5, 30), (30, 10), (58, 20), (30, 44), (50, 50)]:
        scribbles[y, x - 4 : x + 5] = 1
    return image.astype(np.float32), scribbles, truth


def test_check_inverts_only_when_the_model_is_clearly_better_inverted(bright_disk_model):
    model, card = bright_disk_model
    spec = card.spec
    image, scribbles, _ = disks(dark=True)
    check = check_polarity(model, spec, [image], [scribbles], NORM)
    assert check is not None and check.invert
    assert check.kept < 0.1 and check.flipped > 0.95
    same = check_polarity(model, spec, [disks()[0]], [scribbles], NORM)
    assert same is not None and not same.invert and same.kept > 0.95
    # a model already inverting sees dark disks right: keep its recipe
    kept = check_polarity(model, spec, [image], [scribbles], flipped(NORM))
    assert kept is not None and not kept.invert
    one_class = np.where(scribbles == 1, 1, 0).astype(np.uint8)
    assert check_polarity(model, spec, [image], [one_class], NORM) is None
    assert POLARITY_MARGIN > 0


def test_session_inverts_the_contrast_and_saves_it_in_the_card(bright_disk_model):
    model, card = bright_disk_model
    image, scribbles, truth = disks(seed=1, dark=True)
    full = (slice(None), slice(None))
    session = TrainSession([image], [scribbles], init=(model, card), steps=1, patch_size=32,
                           threads=1, preview=full)
    steps = session.run()
    first = next(steps)
    assert first.done == 0 and first.message.startswith("contrast inverted")
    assert next(steps).message.endswith("(contrast inverted)")  # the note stays in view
    assert session.normalization == {**NORM, "invert": True}
    dice = 2 * np.sum((first.preview == 1) & truth) / (np.sum(first.preview == 1) + truth.sum())
    assert dice > 0.9
    result = session.best()
    assert result.card.normalization == {**NORM, "invert": True}
    polarity = result.card.training["polarity"]
    assert polarity["inverted"] is True and polarity["flipped"] > polarity["kept"]
    # keep: the start model's contrast, and no check
    kept = TrainSession([image], [scribbles], init=(model, card), steps=1, patch_size=32,
                        threads=1, polarity="keep")
    list(kept.run())
    assert kept.normalization == NORM and kept.polarity is None
    assert "polarity" not in kept.best().card.training
    # a new head (other classes) is no longer the start model's answer: nothing to check
    three = np.where(scribbles == 2, 3, scribbles).astype(np.uint8)
    three[60, 60:64] = 2
    other = TrainSession([image], [three], init=(model, card), classes=3, steps=1,
                         patch_size=32, threads=1)
    list(other.run())
    assert other.polarity is None and other.normalization == NORM
    with pytest.raises(CardiosegError, match="polarity must be one of auto, keep, invert"):
        TrainSession([image], [scribbles], init=(model, card), steps=1, polarity="flip")


def test_mito_em_learns_inverted_em_from_strokes():
    """The shipped mito-em sees nothing on the EM sample with its contrast inverted; one Train
    click with a few strokes on three slices finds the polarity and segments the other slices."""
    from napari_cardioseg._sample_data import EM_SEED, EM_SHAPE, EM_VOXEL
    from napari_cardioseg.core.predict import predict_labels
    from napari_cardioseg.core.strokes import first_strokes
    from napari_cardioseg.core.synth import organelle_stack

    stack = organelle_stack(EM_SHAPE, EM_VOXEL, seed=EM_SEED)
    image = (255 - stack.image.astype(np.int16)).astype(np.uint8)
    truth = stack.labels > 0
    rng = np.random.default_rng(0)
    scribbles = np.zeros(image.shape, np.uint8)
    for z in (4, 16, 28):
        scribbles[z] = first_strokes(truth[z], rng)
    session = TrainSession([image], [scribbles], init="mito-em", steps=1, threads=2, device="cpu")
    list(session.run())
    assert session.polarity is not None and session.polarity.invert
    result = session.best()
    assert result.card.normalization["invert"] is True
    test = [0, 10, 20, 24]

    def dice(card) -> float:
        pred = predict_labels(image[test], result.model, card, device="cpu") == 1
        return 2 * np.sum(pred & truth[test]) / (pred.sum() + truth[test].sum())

    assert dice(result.card) > 0.9
    as_before = ModelCard(result.card.name, result.card.spec, result.card.class_names,
                          flipped(result.card.normalization), None)
    assert dice(as_before) < 0.1  # the same weights without the inversion


def test_probe_only_refits_a_head_that_misses_the_strokes(bright_disk_model):
    model, card = bright_disk_model
    image, scribbles, _ = disks(seed=2)  # bright disks: the start model already gets them right
    session = TrainSession([image], [scribbles], init=(model, card), steps=1, patch_size=32,
                           threads=1)
    assert [p.done for p in session.run()] == [1]  # no step 0: nothing probed, nothing inverted
    assert session.probe_fit is None and session.polarity is not None
    assert session.polarity.chosen > 0.95 and "probe_head" not in session.best().card.training
    asked = TrainSession([image], [scribbles], init=(model, card), steps=1, patch_size=32,
                         threads=1, probe_head=True)
    assert [p.done for p in asked.run()] == [0, 1] and asked.probe_fit is not None


def test_another_round_on_the_same_images_is_not_probed_again(bright_disk_model):
    model, card = bright_disk_model
    image, scribbles, _ = disks(seed=2, dark=True)  # dark disks: the head misses the strokes
    runs = {}
    shape = [list(image.shape)]
    for name, training in (("pretrained", {}), ("other images", {"method": METHOD,
                                                                "image_shapes": [[64, 64]]}),
                           ("last round", {"method": METHOD, "image_shapes": shape})):
        start = dataclasses.replace(card, training=training)
        session = TrainSession([image], [scribbles], init=(model, start), steps=1, patch_size=32,
                               threads=1, polarity="keep")
        runs[name] = ([p.done for p in session.run()], session.probe_fit)
    for name in ("pretrained", "other images"):  # a saved stroke model on new data: probed
        assert runs[name][0] == [0, 1] and runs[name][1] is not None
    assert runs["last round"] == ([1], None)  # another Train click: fine-tuned as it is


def test_another_round_keeps_the_first_rounds_contrast(bright_disk_model):
    model, card = bright_disk_model
    image, scribbles, _ = disks(seed=2, dark=True)  # dark disks: inverted would look better
    last = dataclasses.replace(card, training={"method": METHOD,
                                               "image_shapes": [list(image.shape)]})
    session = TrainSession([image], [scribbles], init=(model, last), steps=1, patch_size=32,
                           threads=1)
    list(session.run())
    assert session.polarity is None and session.normalization == NORM  # not checked again
    first = TrainSession([image], [scribbles], init=(model, card), steps=1, patch_size=32,
                         threads=1)
    list(first.run())
    assert first.polarity is not None and first.normalization == {**NORM, "invert": True}
