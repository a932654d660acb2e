"""Adaptation helpers: distillation prior, trust gating, parameter groups, stroke dilation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_cardioseg.core import adapt
from napari_cardioseg.core.nets import build_model, encoder_modules
from napari_cardioseg.core.train import TrainSession


def _logits(values) -> torch.Tensor:
    """(1, C, 1, N) logits from a list of per-pixel logit vectors."""
    return torch.tensor(values, dtype=torch.float32).T[None, :, None, :]


def test_prior_loss_is_zero_when_student_equals_teacher():
    logits = torch.randn(2, 3, 5, 7)
    weight = torch.ones(2, 5, 7)
    assert float(adapt.prior_loss(logits, logits.clone(), weight)) == pytest.approx(0.0, abs=1e-6)


def test_prior_loss_exact_kl_value():
    # teacher (0.5, 0.5); student softmax(0, ln 3) = (0.25, 0.75):
    # KL = 0.5 ln(0.5 / 0.25) + 0.5 ln(0.5 / 0.75) = 0.5 ln(4 / 3)
    student = _logits([[0.0, math.log(3.0)]])
    teacher = _logits([[0.0, 0.0]])
    loss = adapt.prior_loss(student, teacher, torch.ones(1, 1, 1))
    assert float(loss) == pytest.approx(0.5 * math.log(4 / 3), rel=1e-5)


def test_prior_loss_ignores_pixels_without_weight():
    teacher = _logits([[0.0, 0.0], [2.0, -1.0]])
    student = _logits([[0.0, 0.0], [-5.0, 5.0]])  # differs only on pixel 2
    masked = torch.tensor([[[1.0, 0.0]]])
    assert float(adapt.prior_loss(student, teacher, masked)) == pytest.approx(0.0, abs=1e-6)
    # the mean runs over weighted pixels only: pixel 2 alone gives its full KL
    only2 = adapt.prior_loss(student, teacher, torch.tensor([[[0.0, 1.0]]]))
    both = adapt.prior_loss(student, teacher, torch.ones(1, 1, 2))
    assert float(both) == pytest.approx(float(only2) / 2, rel=1e-5)
    assert float(adapt.prior_loss(student, teacher, torch.zeros(1, 1, 2))) == 0.0


def test_prior_loss_gradient_reaches_student_only():
    student = torch.zeros(1, 2, 1, 1, requires_grad=True)
    teacher = torch.tensor([[[[3.0]], [[0.0]]]], requires_grad=True)
    adapt.prior_loss(student, teacher, torch.ones(1, 1, 1)).backward()
    assert student.grad is not None and float(student.grad[0, 0]) < 0  # pulled towards class 0
    assert teacher.grad is None


def test_stroke_agreement_is_balanced_accuracy():
    # teacher says class 0 everywhere; painted: three pixels of class 0, one of class 1
    teacher = _logits([[1.0, 0.0]] * 5)
    target = torch.tensor([[[0, 0, 0, 1, 0]]])
    weight = torch.tensor([[[1.0, 1.0, 1.0, 1.0, 0.0]]])
    assert adapt.stroke_agreement(teacher, target, weight) == pytest.approx(0.5)
    assert adapt.stroke_agreement(teacher, target, torch.zeros(1, 1, 5)) is None


def test_prior_trust_drops_for_a_teacher_that_disagrees():
    torch.manual_seed(0)
    teacher = torch.nn.Conv2d(1, 2, 1)
    with torch.no_grad():
        teacher.weight.zero_()
        teacher.bias.copy_(torch.tensor([5.0, 0.0]))  # always background
    prior = adapt.Prior(teacher, weight=2.0)
    assert prior.trust == 1.0
    x = torch.zeros(1, 1, 2, 2)
    scribbles = torch.tensor([[[1, 2], [0, 0]]])  # one background, one object pixel painted
    logits = torch.zeros(1, 2, 2, 2)
    assert float(prior.loss(logits, x, scribbles)) == 0.0  # balanced accuracy 0.5: no trust
    assert prior.agreement == pytest.approx(0.5)
    agreeing = adapt.Prior(teacher, weight=2.0)
    bg_only = torch.tensor([[[1, 1], [0, 0]]])
    expected = 2.0 * float(adapt.prior_loss(logits, teacher(x), torch.tensor([[[0.0, 0.0],
                                                                                [1.0, 1.0]]])))
    assert float(agreeing.loss(logits, x, bg_only)) == pytest.approx(expected, rel=1e-5)


def test_param_groups_scale_the_encoder():
    spec = {"arch": "unet2d", "in_channels": 1, "classes": 2, "depth": 2, "base": 4}
    model = build_model(spec)
    groups = adapt.param_groups(model, spec, 1e-3, 0.1)
    encoder = {id(p) for m in encoder_modules(model, spec) for p in m.parameters()}
    assert [g["lr"] for g in groups] == pytest.approx([1e-3, 1e-4])
    assert {id(p) for p in groups[1]["params"]} == encoder
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    for p in model.parameters():
        p.requires_grad_(False)
    assert adapt.param_groups(model, spec, 1e-3, 0.1) == []


def test_dilate_strokes_grows_into_unpainted_pixels_only():
    s = np.zeros((9, 9), np.uint8)
    s[4, 1] = 1
    s[4, 7] = 2
    s[0, 0] = 2
    out = adapt.dilate_strokes(s, 1)
    assert out[4, 0] == 1 and out[3, 1] == 1 and out[4, 2] == 1 and out[3, 2] == 0  # a disk
    assert out[4, 6] == 2 and out[5, 7] == 2
    assert np.count_nonzero(out == 1) == 5 and np.count_nonzero(out == 2) == 5 + 3
    np.testing.assert_array_equal(out[s > 0], s[s > 0])
    assert np.array_equal(adapt.dilate_strokes(s, 0), s)


def test_dilate_strokes_leaves_contested_pixels_unpainted():
    s = np.zeros((1, 5, 5), np.uint8)  # 3D: dilation per slice
    s[0, 2, 1] = 1
    s[0, 2, 3] = 2
    out = adapt.dilate_strokes(s, 1)
    assert out[0, 2, 2] == 0  # reached by both classes
    assert out[0, 2, 0] == 1 and out[0, 2, 4] == 2


def test_session_with_prior_keeps_the_teacher_frozen():
    from napari_cardioseg.core.models import ModelCard

    spec = {"arch": "unet2d", "in_channels": 1, "classes": 2, "depth": 2, "base": 4}
    model = build_model(spec)
    card = ModelCard(name="t", spec=spec, class_names=["background", "object"],
                     normalization={"method": "percentile", "low": 1.0, "high": 99.8}, pixel_size=None)
    rng = np.random.default_rng(0)
    image = rng.random((32, 32)).astype(np.float32)
    scribbles = np.zeros((32, 32), np.uint8)
    scribbles[4, 4:12] = 1
    scribbles[20, 4:12] = 2
    before = {k: v.clone() for k, v in model.state_dict().items()}
    session = TrainSession([image], [scribbles], init=(model, card), steps=3, device="cpu",
                           prior_weight=1.0, encoder_lr_scale=0.1, threads=1, probe_head=False)
    for _ in session.run():
        pass
    result = session.best()
    teacher_state = session.prior.teacher.state_dict()
    assert all(torch.equal(teacher_state[k], before[k]) for k in before)
    assert session.prior.agreement is not None
    assert [g["lr"] for g in session.optimizer.param_groups] == pytest.approx(
        [session.lr, session.lr * 0.1])
    assert len(result.losses) == 3


def test_prior_needs_a_pretrained_model():
    from napari_cardioseg.core.errors import CardiosegError

    image = np.zeros((32, 32), np.float32)
    scribbles = np.zeros((32, 32), np.uint8)
    scribbles[0, :4], scribbles[1, :4] = 1, 2
    with pytest.raises(CardiosegError, match="prior needs a pretrained model"):
        TrainSession([image], [scribbles], steps=1, prior_weight=1.0)


def _lines(shape, rows, value, length=8):
    s = np.zeros(shape, np.uint8)
    for r in rows:
        s[..., r, 2:2 + length] = value
    return s


def test_split_strokes_holds_whole_strokes_per_class():
    s = _lines((40, 40), [2, 8, 14, 20, 26], 1) + _lines((40, 40), [32, 36], 2)
    held = adapt.split_strokes(s, 0.2, np.random.default_rng(0))
    # background: round(0.2 * 5) = 1 stroke; object: round(0.4) = 0, raised to 1 (2 strokes)
    assert int(held[s == 1].sum()) == 8 and int(held[s == 2].sum()) == 8
    for r in [2, 8, 14, 20, 26, 32, 36]:
        assert held[r, 2:10].all() or not held[r, 2:10].any()  # never part of a stroke
    assert not held[s == 0].any()
    assert not adapt.split_strokes(s, 0.0, np.random.default_rng(0)).any()
    single = _lines((40, 40), [2, 8], 1) + _lines((40, 40), [20], 2)
    held = adapt.split_strokes(single, 0.5, np.random.default_rng(0))
    assert int(held[single == 1].sum()) == 8 and not held[single == 2].any()  # one stroke kept


def test_split_strokes_counts_slices_apart_on_a_stack():
    s = np.zeros((2, 20, 20), np.uint8)
    s[:, 5, 2:10] = 1  # same place in both slices: two strokes slice-wise, one in 3D
    assert int(adapt.split_strokes(s, 0.5, np.random.default_rng(0)).sum()) == 8
    assert int(adapt.split_strokes(s, 0.5, np.random.default_rng(0), slice_wise=False).sum()) == 0


class _Sign(torch.nn.Module):
    """Class 1 where the input is positive: logits (-x, x)."""

    def forward(self, x):
        return torch.cat([-x, x], dim=1)


def test_held_out_score_is_balanced_accuracy():
    image = -np.ones((30, 30), np.float32)
    image[:, 15:] = 1.0
    s = np.zeros((30, 30), np.uint8)
    s[5, 2:10] = 1  # background stroke on negative pixels: recall 1
    s[20, 11:19] = 2  # object stroke, half on positive pixels: recall 0.5
    held = adapt.HeldOut([image], [s], [s > 0], net_ndim=2, multiple=4, n_classes=2, margin=2)
    assert len(held) == 2
    assert all(img.shape[0] % 4 == 0 and img.shape[1] % 4 == 0 for img, _ in held.windows)
    assert held.score(_Sign()) == pytest.approx(0.75)
    assert adapt.balanced_accuracy(np.zeros(2), np.zeros(2)) is None


def test_held_out_strokes_are_not_trained_on():
    image = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    s = _lines((32, 32), [4, 10], 1) + _lines((32, 32), [20, 26], 2)
    session = TrainSession([image], [s], steps=1, device="cpu", holdout=0.5, threads=1)
    assert int(session.held[0].sum()) == 16  # one stroke of each class
    session.normalized = [image]
    session.held = [np.ones_like(s, bool)]
    _, y = session._batch(np.random.default_rng(0))
    assert int(y.sum()) == 0


def test_holdout_returns_the_best_scored_state():
    from napari_cardioseg.core.models import ModelCard

    spec = {"arch": "unet2d", "in_channels": 1, "classes": 2, "depth": 2, "base": 4}
    card = ModelCard(name="t", spec=spec, class_names=["background", "object"],
                     normalization={"method": "percentile", "low": 1.0, "high": 99.8}, pixel_size=None)
    image = np.random.default_rng(1).random((48, 48)).astype(np.float32)
    s = _lines((48, 48), [4, 12, 20], 1) + _lines((48, 48), [30, 38, 44], 2)
    session = TrainSession([image], [s], init=(build_model(spec), card), steps=25, device="cpu",
                           holdout=0.34, threads=1, lr=0.05)
    for _ in session.run():
        pass
    assert [step for step, _ in session.holdout_scores] == [0, 10, 20, 25]
    best = max(score for _, score in session.holdout_scores)
    assert best >= session.holdout_scores[0][1]
    assert session.holdout.score(session.best().model) == pytest.approx(best)


def test_holdout_share_is_checked():
    from napari_cardioseg.core.errors import CardiosegError
    from napari_cardioseg.core.train_config import TrainConfig

    for bad in (-0.1, 0.6, float("nan")):
        with pytest.raises(CardiosegError, match="holdout"):
            TrainConfig(holdout=bad)


def _card(spec):
    from napari_cardioseg.core.models import ModelCard

    names = ["background", *[f"c{i}" for i in range(1, spec["classes"])]]
    return ModelCard(name="t", spec=spec, class_names=names,
                     normalization={"method": "percentile", "low": 1.0, "high": 99.8},
                     pixel_size=None)


def test_fine_tuning_defaults_to_the_prior_and_a_slow_encoder():
    spec = {"arch": "unet2d", "in_channels": 1, "classes": 2, "depth": 2, "base": 4}
    image = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    s = _lines((32, 32), [4], 1) + _lines((32, 32), [20], 2)
    tuned = TrainSession([image], [s], init=(build_model(spec), _card(spec)), steps=1,
                         device="cpu")
    assert tuned.prior is not None and tuned.prior.weight == 1.0
    assert [g["lr"] for g in tuned.optimizer.param_groups] == pytest.approx(
        [tuned.lr, 0.1 * tuned.lr])
    scratch = TrainSession([image], [s], steps=1, device="cpu")
    assert scratch.prior is None
    assert {g["lr"] for g in scratch.optimizer.param_groups} == {scratch.lr}
    three = dict(spec, classes=3)  # a new head: nothing to keep, one learning rate
    s3 = s.copy()
    s3[28, 2:10] = 3
    new_head = TrainSession([image], [s3], init=(build_model(spec), _card(spec)), classes=3,
                            steps=1, device="cpu")
    assert new_head.prior is None and int(new_head.spec["classes"]) == three["classes"]
    assert {g["lr"] for g in new_head.optimizer.param_groups} == {new_head.lr}
    off = TrainSession([image], [s], init=(build_model(spec), _card(spec)), steps=1,
                       device="cpu", prior_weight=0, encoder_lr_scale=1)
    assert off.prior is None and {g["lr"] for g in off.optimizer.param_groups} == {off.lr}


def test_dense_training_from_a_model_keeps_the_plain_defaults():
    spec = {"arch": "unet2d", "in_channels": 1, "classes": 2, "depth": 2, "base": 4}
    image = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    s = _lines((32, 32), [4], 1) + _lines((32, 32), [20], 2)
    dense = TrainSession([image], [s], init=(build_model(spec), _card(spec)), steps=1,
                         device="cpu", keep_norm_stats=False)  # as the recipes train
    assert dense.prior is None and {g["lr"] for g in dense.optimizer.param_groups} == {dense.lr}


def test_adapt_norm_stats_averages_the_batches_and_keeps_the_weights():
    layer = torch.nn.BatchNorm2d(1)
    layer.weight.data.fill_(2.0)
    model = torch.nn.Sequential(layer).eval()
    windows = torch.cat([torch.full((2, 1, 4, 4), 1.0), torch.full((2, 1, 4, 4), 5.0)])
    windows[0, 0, 0, 0] = 3.0  # some variance in the first batch
    assert adapt.adapt_norm_stats(model, windows, batch=2) == 1
    first, second = windows[:2], windows[2:]
    assert float(layer.running_mean) == pytest.approx(float(first.mean() + second.mean()) / 2)
    assert float(layer.running_var) == pytest.approx(float(first.var() + second.var()) / 2, rel=1e-5)
    assert layer.momentum == 0.1 and not model.training and float(layer.weight.detach()) == 2.0
    assert adapt.adapt_norm_stats(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1)), windows, 2) == 0


def test_renew_norm_stats_meets_the_images_and_the_teacher_follows():
    spec = {"arch": "unet2d", "in_channels": 1, "classes": 2, "depth": 2, "base": 4}
    model = build_model(spec)
    image = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    s = _lines((64, 64), [4], 1) + _lines((64, 64), [40], 2)
    renewed = TrainSession([image], [s], init=(model, _card(spec)), steps=1, device="cpu",
                           renew_norm_stats=True, lr=1e-12, threads=1, probe_head=False)
    for _ in renewed.run():
        pass
    first_norm = next(m for m in renewed.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert float(first_norm.running_mean.abs().max()) > 0  # fresh layers start at 0
    teacher_norm = next(m for m in renewed.prior.teacher.modules()
                        if isinstance(m, torch.nn.BatchNorm2d))
    assert torch.equal(teacher_norm.running_mean, first_norm.running_mean)
    plain = TrainSession([image], [s], init=(build_model(spec), _card(spec)), steps=1, device="cpu")
    assert plain.renew_norm  # considered by default when adapting; kept only if it helps
    assert not TrainSession([image], [s], init=(build_model(spec), _card(spec)), steps=1,
                            device="cpu", renew_norm_stats=False).renew_norm


@pytest.mark.parametrize(("scores", "renewed"), [((0.6, 0.8), True), ((0.6, 0.55), False),
                                                  ((0.97,), False)])
def test_renewed_statistics_are_kept_only_when_they_answer_the_strokes_better(
        monkeypatch, scores, renewed):
    from napari_cardioseg.core import probe_head

    asked = iter(scores)
    monkeypatch.setattr(probe_head, "head_accuracy", lambda *a, **k: next(asked))
    spec = {"arch": "unet2d", "in_channels": 1, "classes": 2, "depth": 2, "base": 4}
    image = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    s = _lines((64, 64), [4], 1) + _lines((64, 64), [40], 2)
    session = TrainSession([image], [s], init=(build_model(spec), _card(spec)), steps=1,
                           device="cpu", threads=1, probe_head=False, polarity="keep", lr=1e-12)
    progress = list(session.run())
    norm = next(m for m in session.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert (float(norm.running_mean.abs().max()) > 0) == renewed  # fresh layers start at 0
    notes = progress[0].message if progress[0].done == 0 else ""
    assert ("renewed" in notes) == renewed
    if renewed:
        assert "0.60 -> 0.80" in notes and session._stroke_accuracy() == 0.8
        assert "0.60 -> 0.80" in session.best().card.training["norm_stats"]
    else:
        assert "norm_stats" not in session.best().card.training
    assert next(asked, None) is None  # scored before, and after only when renewed


def test_random_windows_come_from_the_images_in_turn():
    rng = np.random.default_rng(0)
    stack = np.arange(4 * 16 * 16, dtype=np.float32).reshape(4, 16, 16)
    plane = -np.arange(32 * 32, dtype=np.float32).reshape(32, 32) - 1
    windows = adapt.random_windows([stack, plane], (8, 8), 6, rng)
    assert windows.shape == (6, 8, 8)
    assert (windows[0::2] >= 0).all() and (windows[1::2] < 0).all()  # taken in turn
    for w in windows[0::2]:  # 2D windows of one slice: values of a single slice (mirrored edges)
        assert len(set((w // 256).ravel().tolist())) == 1
    volume = adapt.random_windows([stack], (2, 8, 8), 3, rng)
    assert volume.shape == (3, 2, 8, 8)
