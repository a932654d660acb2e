"""Linear probe of the head (LP-FT), the preview uncertainty map, and their use in TrainSession."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.draw import disk
from torch import nn

from napari_cardioseg.core import nets, probe_head
from napari_cardioseg.core.errors import CardiosegError
from napari_cardioseg.core.models import ModelCard
from napari_cardioseg.core.normalize import apply_normalization, fit_normalization
from napari_cardioseg.core.predict import probabilities_to_uncertainty
from napari_cardioseg.core.train import TrainSession
from napari_cardioseg.core.train_preview import preview_labels

NORM = {"method": "percentile", "low": 1.0, "high": 99.8}


def test_uncertainty_is_bounded_zero_when_sure_and_one_when_uniform():
    rng = np.random.default_rng(0)
    for classes in (2, 3, 5):
        prob = rng.dirichlet(np.ones(classes), size=(7, 9)).transpose(2, 0, 1)
        u = probabilities_to_uncertainty(prob)
        assert u.dtype == np.float32 and u.shape == (7, 9)
        assert u.min() >= 0.0 and u.max() <= 1.0
        one_hot = np.eye(classes)[rng.integers(0, classes, (4, 6))].transpose(2, 0, 1)
        assert np.array_equal(probabilities_to_uncertainty(one_hot), np.zeros((4, 6), np.float32))
        uniform = np.full((classes, 3, 4), 1.0 / classes)
        assert probabilities_to_uncertainty(uniform) == pytest.approx(np.ones((3, 4)), abs=1e-6)
        assert u.max() < 1.0  # random probabilities are never exactly uniform
    # two classes: 1 - max(p) scaled by 2, e.g. p = (0.7, 0.3) -> 0.6
    assert probabilities_to_uncertainty(np.array([[0.7], [0.3]]))[0] == pytest.approx(0.6)
    with pytest.raises(CardiosegError, match="C>=2"):
        probabilities_to_uncertainty(np.ones((1, 3)))


@pytest.mark.parametrize(("ndim", "kernel"), [(2, 3), (2, 1), (3, 1), (3, 3)])
def test_patch_features_times_the_weights_is_the_convolution(ndim, kernel):
    torch.manual_seed(0)
    conv = (nn.Conv2d if ndim == 2 else nn.Conv3d)(4, 3, kernel, padding=kernel // 2)
    shape = (9, 11) if ndim == 2 else (5, 6, 7)
    features = torch.randn(4, *shape)
    points = torch.stack([torch.randint(0, n, (20,)) for n in shape], dim=1)
    points[0] = 0  # a corner: the patch reaches into the zero padding
    x = probe_head.patch_features(features, points, conv)
    assert x.shape == (20, 4 * kernel**ndim)
    out = conv(features[None])[0]
    expected = out[(slice(None), *points.T)].T
    mapped = x @ conv.weight.reshape(3, -1).T + conv.bias
    assert torch.allclose(mapped, expected, atol=1e-5)


class _Toy(nn.Module):
    """Fixed features (the intensity, its negative, a constant, noise) and a 3×3 head."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.body = nn.Conv2d(1, 4, 1)
        with torch.no_grad():
            self.body.weight.copy_(torch.tensor([1.0, -1.0, 0.0, 0.3]).reshape(4, 1, 1, 1))
            self.body.bias.copy_(torch.tensor([0.0, 0.0, 1.0, -0.2]))
        self.head = nn.Conv2d(4, classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@pytest.fixture
def toy_arch(monkeypatch):
    row = nets.Architecture(lambda spec: _Toy(int(spec["classes"])), 2, lambda spec: 1, "toy",
                            scratch=None, head="head")
    monkeypatch.setitem(nets.ARCHITECTURES, "toy", row)
    return {"arch": "toy", "in_channels": 1, "classes": 2}


def _disks(seed: int = 0):
    rng = np.random.default_rng(seed)
    truth = np.zeros((64, 128), bool)
    for cy, cx in [(16, 16), (44, 30), (20, 50), (16, 80), (46, 100), (40, 70)]:
        truth[disk((cy, cx), 8, shape=truth.shape)] = True
    image = (truth * 1.0 + rng.normal(0.0, 0.15, truth.shape)).astype(np.float32)
    scribbles = np.zeros(truth.shape, np.uint8)
    for cy, cx in [(16, 16), (44, 30), (20, 50)]:
        scribbles[cy, cx - 3 : cx + 4] = 2
    for y, x in [(5, 30), (30, 10), (58, 20), (30, 44), (50, 50)]:
        scribbles[y, x - 4 : x + 5] = 1
    return image, scribbles, truth


def _predict(model: nn.Module, image: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(image)[None, None])[0].argmax(0).numpy() == 1


def test_fitted_head_separates_the_unpainted_pixels(toy_arch):
    image, scribbles, truth = _disks()
    torch.manual_seed(3)
    model = nets.build_model(toy_arch)
    with torch.no_grad():
        model.head.weight.mul_(-1.0)  # make sure the untrained head is wrong
    body = model.body.weight.clone()
    head = model.head.weight.clone()
    only_background = np.where(scribbles == 1, 1, 0).astype(np.uint8)
    assert probe_head.probe_head(model, toy_arch, [image], [only_background]) is None
    assert torch.equal(model.head.weight, head)  # one painted class: nothing fitted
    unpainted = scribbles == 0
    before = np.mean(_predict(model, image)[unpainted] == truth[unpainted])
    fit = probe_head.probe_head(model, toy_arch, [image], [scribbles], anchor=False)
    after = np.mean(_predict(model, image)[unpainted] == truth[unpainted])
    assert fit is not None and fit.pixels == int((scribbles > 0).sum()) and fit.classes == (0, 1)
    assert fit.accuracy == 1.0
    assert after >= 0.97 > before
    assert torch.equal(model.body.weight, body)  # only the head changed


def test_probe_weights_classes_equally():
    # one feature, class 1 on x > 0; 1000 background pixels at x = -1, 10 class pixels at x = 1
    x = torch.cat([torch.full((1000, 1), -1.0), torch.full((10, 1), 1.0)])
    y = torch.cat([torch.zeros(1000, dtype=torch.int64), torch.ones(10, dtype=torch.int64)])
    w, b = probe_head.fit_linear(x, y, 2, l2=1.0)
    logit = lambda v: float((w[1] - w[0]) * v + (b[1] - b[0]))  # noqa: E731
    assert logit(1.0) > 0 > logit(-1.0)
    assert logit(0.0) == pytest.approx(0.0, abs=1e-3)  # balanced: the boundary half-way


def test_probe_needs_a_convolution_head():
    spec = {"arch": "pix2pix", "in_channels": 1, "classes": 2, "depth": 2, "base": 4}
    assert probe_head.head_layer(nets.build_model(spec), spec) is None
    unet = {"arch": "unet2d", "in_channels": 1, "classes": 2, "depth": 2, "base": 4}
    model = nets.build_model(unet)
    assert probe_head.head_layer(model, unet) is model.head
    image = np.zeros((32, 32), np.float32)
    scribbles = np.zeros((32, 32), np.uint8)
    scribbles[0, :4], scribbles[1, :4] = 1, 2
    card = ModelCard("p", spec, ["background", "object"], NORM, None)
    with pytest.raises(CardiosegError, match="probe_head cannot fit it"):
        TrainSession([image], [scribbles], init=(nets.build_model(spec), card), steps=1,
                     probe_head=True)
    off = TrainSession([image], [scribbles], init=(nets.build_model(spec), card), steps=1)
    assert not off.probe  # the default skips a net it cannot probe


def test_session_previews_the_probed_head_before_any_step():
    image, scribbles, truth = _disks()
    image = (image * 100 + 50).astype(np.float32)
    spec = {"arch": "unet2d", "in_channels": 1, "classes": 2, "depth": 2, "base": 8}
    torch.manual_seed(0)
    model = nets.build_model(spec)
    card = ModelCard("pre", spec, ["background", "object"], NORM, None)
    normalized = apply_normalization(image, fit_normalization(image, NORM))
    before = preview_labels(model, spec, normalized, torch.device("cpu"))
    full = (slice(None), slice(None))
    session = TrainSession([image], [scribbles], init=(model, card), steps=2, preview=full,
                           patch_size=32, threads=1)
    assert session.probe  # on by default when fine-tuning a model
    gen = session.run()
    first = next(gen)
    assert first.done == 0 and not session.losses and not session.optimizer.state
    assert first.preview is not None and first.preview_region == (slice(0, 64), slice(0, 128))
    assert first.uncertainty is not None and first.uncertainty.shape == (64, 128)
    assert first.uncertainty.dtype == np.float32
    assert 0.0 <= first.uncertainty.min() and first.uncertainty.max() <= 1.0

    def dice(pred):
        return 2.0 * np.sum(pred & truth) / (pred.sum() + truth.sum())

    assert dice(first.preview == 1) > dice(before == 1) + 0.2
    assert dice(first.preview == 1) > 0.6
    # the prior's teacher is the probed model, not the one before the probe
    teacher_head = session.prior.teacher.head.weight
    assert torch.equal(teacher_head, session.model.head.weight)
    assert not torch.equal(teacher_head, model.head.weight)
    assert [p.done for p in gen] == [1, 2]
    assert session.best().card.training["probe_head"]["pixels"] == int((scribbles > 0).sum())
