"""Sparse-label trainer: learns from strokes, deterministic, stoppable, live strokes, bad input."""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch
from skimage.draw import disk

from napari_cardioseg.core.adapt import adapt_norm_stats, random_windows
from napari_cardioseg.core.device import train_threads
from napari_cardioseg.core.errors import CardiosegError
from napari_cardioseg.core.models import ModelCard, load_model
from napari_cardioseg.core.nets import build_model, encoder_modules
from napari_cardioseg.core.normalize import apply_normalization, fit_normalization
from napari_cardioseg.core.predict import predict_probabilities, probabilities_to_labels
from napari_cardioseg.core.progress import Progress, drain
from napari_cardioseg.core.train import (
    LR_FINETUNE,
    LR_SCRATCH,
    TrainConfig,
    TrainSession,
    train,
    train_generator,
)
from napari_cardioseg.core.train_config import BLEND_CONTINUE
from napari_cardioseg.core.train_first_round import NORM_WINDOWS
from napari_cardioseg.core.train_init import decay_factor
from napari_cardioseg.core.train_preview import preview_labels, preview_region

FAST = {"patch_size": 32, "batch": 4}


def disks(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bright disks on a dark noisy background; strokes only in the left half."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((64, 128), bool)
    for cy, cx in [(16, 16), (44, 30), (20, 50), (16, 80), (46, 100), (40, 70)]:
        truth[disk((cy, cx), 8, shape=truth.shape)] = True
    image = (truth * 100.0 + rng.normal(50, 25, truth.shape)).astype(np.float32)
    scribbles = np.zeros(truth.shape, np.uint8)
    for cy, cx in [(16, 16), (44, 30), (20, 50)]:
        scribbles[cy, cx - 4 : cx + 5] = 2
    for y, x in [(5, 30), (30, 10), (58, 20), (30, 44), (50, 50), (8, 56), (28, 28)]:
        scribbles[y, x - 4 : x + 5] = 1
    return image, scribbles, truth


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    return 2.0 * np.sum(pred & truth) / (pred.sum() + truth.sum())


def test_learns_from_strokes_and_predicts_unlabelled_half():
    image, scribbles, truth = disks()
    result = train([image], [scribbles], steps=40, seed=0, **FAST)
    first, last = np.mean(result.losses[:5]), np.mean(result.losses[-5:])
    assert last < 0.5 * first
    prob = predict_probabilities(image, result.model, result.card, device="cpu")
    labels = probabilities_to_labels(prob)
    assert labels.shape == image.shape
    held_out = np.s_[:, 64:]  # no strokes there
    assert dice(labels[held_out] == 1, truth[held_out]) > 0.8
    card = result.card
    assert card.class_names == ["background", "class 1"]
    assert card.training["steps"] == 40
    assert card.training["labelled_pixels"] == {"background": 63, "class 1": 27}
    assert card.training["image_shapes"] == [[64, 128]]
    assert card.training["seed"] == 0 and card.training["init"] is None


def test_same_seed_same_weights_and_other_seed_differs():
    image, scribbles, _ = disks()
    a = train([image], [scribbles], steps=3, seed=1, **FAST).model.state_dict()
    b = train([image], [scribbles], steps=3, seed=1, **FAST).model.state_dict()
    c = train([image], [scribbles], steps=3, seed=2, **FAST).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_stop_midway_gives_a_usable_model(tmp_path):
    image, scribbles, _ = disks()
    session = TrainSession([image], [scribbles], steps=1000, seed=0, **FAST)
    gen = session.run()
    for progress in gen:
        if progress.done == 3:
            break
    gen.close()  # what worker.quit() amounts to
    result = session.best()
    assert result.card.training["steps"] == 3
    with torch.no_grad():
        out = result.model(torch.zeros(1, 1, 32, 32))
    assert out.shape == (1, 2, 32, 32)
    saved = result.save(tmp_path / "stopped")
    assert saved == tmp_path / "stopped.json"
    assert (tmp_path / "stopped.safetensors").is_file()
    model, card = load_model(saved)
    assert card.training["steps"] == 3
    for key, value in model.state_dict().items():
        assert torch.equal(value, result.model.state_dict()[key])


def test_strokes_painted_during_training_are_used():
    image, scribbles, _ = disks()
    session = TrainSession([image], [scribbles], steps=6, seed=0, refresh_every=0.0, **FAST)
    gen = session.run()
    for progress in gen:
        if progress.done == 2:
            scribbles[46, 96:105] = 2  # paint a stroke into the live array
            scribbles[60, 100:104] = 3  # beyond the model's classes: ignored, no crash
    result = session.best()
    assert result.card.training["labelled_pixels"]["class 1"] == 27 + 9
    assert result.card.training["labelled_pixels"]["label 3"] == 4


def test_previews_first_step_and_callable_region():
    image, scribbles, _ = disks()
    requests = [(slice(0, 32), slice(10, 50)), None, None]
    gen = train_generator([image], [scribbles], steps=3, preview=lambda: requests.pop(0),
                          preview_every=0.0, **FAST)
    first, second, third = list(gen)
    assert first.preview.shape == (32, 40) and first.preview_region == (slice(0, 32), slice(10, 50))
    assert first.preview.dtype == np.uint8 and set(np.unique(first.preview)) <= {0, 1}
    assert second.preview is None  # the callable asked for nothing
    assert (first.done, first.total, third.done) == (1, 3, 3)


def test_2d_model_on_3d_stack_trains_slices_and_previews_a_slice():
    image, scribbles, _ = disks()
    stack = np.stack([image, image[::-1]])
    labels = np.zeros(stack.shape, np.uint8)
    labels[1] = scribbles[::-1]
    gen = train_generator([stack], [labels], steps=2, preview=(slice(1, 2), slice(None),
                          slice(0, 64)), **FAST)
    first = next(gen)
    assert first.preview.shape == (1, 64, 64)
    assert next(gen).done == 2
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value.card.training["image_shapes"] == [[2, 64, 128]]


def test_transfer_to_more_classes_and_frozen_encoder():
    image, scribbles, _ = disks()
    scribbles[60, 100:110] = 3
    spec = {"arch": "unet2d", "in_channels": 1, "classes": 2, "depth": 2, "base": 8}
    torch.manual_seed(0)
    model = build_model(spec)
    card = ModelCard("binary", spec, ["background", "object"],
                     {"method": "percentile", "low": 1.0, "high": 99.8}, None)
    grown = TrainSession([image], [scribbles], init=(model, card))  # strokes of a new class
    assert grown.start.spec["classes"] == 3
    assert grown.start.class_names == ["background", "object", "class 2"]  # the model's names kept
    with pytest.raises(CardiosegError, match="beyond the model's 2 classes"):
        TrainSession([image], [scribbles], init=(model, card), classes=2)  # asked for 2
    encoder_before = [p.clone() for m in encoder_modules(model, spec) for p in m.parameters()]
    result = train([image], [scribbles], init=(model, card), classes=3, steps=2,
                   freeze_encoder=True, **FAST)
    assert result.card.spec["classes"] == 3
    assert result.card.class_names == ["background", "class 1", "class 2"]
    assert result.card.training["init"] == "binary"
    assert result.model(torch.zeros(1, 1, 32, 32)).shape == (1, 3, 32, 32)
    encoder_after = [p for m in encoder_modules(result.model, result.card.spec) for p in m.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(encoder_before, encoder_after, strict=True))
    assert model.head.out_channels == 2  # the caller's model is left untouched


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda im, s: (im, np.zeros_like(s)), "scribbles are empty"),
        (lambda im, s: (im, np.where(s == 2, 0, s)), "only one class"),
        (lambda im, s: (im, s[:, :100]), "shape"),
        (lambda im, s: (np.where(s == 1, np.nan, im), s), "NaN"),
        (lambda im, s: (im, s.astype(np.float32)), "integer labels"),
        (lambda im, s: (np.stack([im] * 3, -1)[..., 0], s.astype(np.int8) - 1), "negative"),
    ],
)
def test_bad_input_raises_clear_errors(change, message):
    image, scribbles, _ = disks()
    image, scribbles = change(image, scribbles)
    with pytest.raises(CardiosegError, match=message):
        TrainSession([image], [scribbles])


def test_3d_architecture_on_2d_image_and_bad_budget():
    image, scribbles, _ = disks()
    with pytest.raises(CardiosegError, match="3D model and cannot train on a 2D image"):
        TrainSession([image], [scribbles], arch="unet3d")
    with pytest.raises(CardiosegError, match="unknown architecture"):
        TrainSession([image], [scribbles], arch="nope")
    with pytest.raises(CardiosegError, match="steps"):
        TrainSession([image], [scribbles], steps=0)
    with pytest.raises(CardiosegError, match="threads must be at least 1"):
        TrainSession([image], [scribbles], threads=0)


@pytest.mark.parametrize("threads", [None, 1, 3])
def test_trains_with_the_requested_threads_and_restores_them(threads):
    image, scribbles, _ = disks()
    before = torch.get_num_threads()
    session = TrainSession([image], [scribbles], steps=2, threads=threads, **FAST)
    during = [torch.get_num_threads() for _ in session.run()]
    assert during == [threads or train_threads()] * 2
    assert torch.get_num_threads() == before


def test_finetuning_keeps_batchnorm_statistics_and_takes_small_steps():
    image, scribbles, _ = disks()
    spec = {"arch": "unet2d", "in_channels": 1, "classes": 2, "depth": 2, "base": 8}
    torch.manual_seed(0)
    model = build_model(spec)
    card = ModelCard("pre", spec, ["background", "object"],
                     {"method": "percentile", "low": 1.0, "high": 99.8}, None)
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    session = TrainSession([image], [scribbles], init=(model, card), steps=3,
                           renew_norm_stats=False, **FAST)  # renewal: tests/test_adapt.py
    assert session.lr == LR_FINETUNE < LR_SCRATCH
    result = drain(session.run())
    after = result.model.state_dict()
    assert stats and all(torch.equal(v, after[k]) for k, v in stats.items())
    scratch = TrainSession([image], [scribbles], steps=3, **FAST)
    assert scratch.lr == LR_SCRATCH
    result = drain(scratch.run())
    assert any(not torch.equal(v, torch.zeros_like(v)) for k, v in result.model.state_dict().items()
               if "running_mean" in k)
    # from scratch, the statistics the model keeps are those of its final weights on the image
    # (the running averages trail weights that move fast), re-estimated on random windows
    trailing = {k: v for k, v in scratch.model.state_dict().items() if "running_mean" in k}
    renewed = copy.deepcopy(scratch.model).cpu()
    windows = random_windows(scratch.normalized, scratch.patch, NORM_WINDOWS,
                             np.random.default_rng(scratch.config.seed + 3))
    adapt_norm_stats(renewed, torch.from_numpy(windows[:, None]), scratch.batch)
    kept = result.model.state_dict()
    for key, value in renewed.state_dict().items():
        if "running" in key:
            torch.testing.assert_close(kept[key], value)
    assert any(not torch.allclose(kept[k], v.cpu()) for k, v in trailing.items())


def test_lr_decay_follows_half_a_cosine_to_zero_and_off_keeps_the_rate():
    image, scribbles, _ = disks()
    seen = {}
    for decay in (False, True):
        session = TrainSession([image], [scribbles], steps=4, lr=0.01, lr_decay=decay, **FAST)
        seen[decay] = [session.optimizer.param_groups[0]["lr"] for _ in session.run()]
    assert seen[False] == pytest.approx([0.01] * 4)
    # the rate of step k (0-based) is lr * (1 + cos(pi k / 4)) / 2
    assert seen[True] == pytest.approx([0.01, 0.0085355, 0.005, 0.0014645], rel=1e-4)
    timed = TrainConfig(time_budget=10.0, steps=100, lr_decay=True)
    assert decay_factor(timed, 10, 5.0) == pytest.approx(0.5)  # the time budget, half spent
    assert decay_factor(timed, 100, 1.0) == 0.0  # the step budget, all spent
    assert decay_factor(TrainConfig(time_budget=10.0), 3, 9.0) == 1.0


def test_blend_keeps_that_share_of_the_change_and_later_rounds_blend_by_default():
    image, scribbles, _ = disks()
    first = train([image], [scribbles], steps=3, **FAST)  # a model trained from strokes
    start = {k: v.clone() for k, v in first.model.state_dict().items()}
    runs = {share: train([image], [scribbles], init=(first.model, first.card), steps=3, seed=1,
                         blend=share, **FAST) for share in (1.0, 0.25)}
    full, part = (runs[s].model.state_dict() for s in (1.0, 0.25))
    moved = [k for k, v in start.items() if v.is_floating_point() and not torch.equal(v, full[k])]
    assert moved  # the second round changed weights ...
    for k in moved:  # ... and the blended one kept a quarter of each change
        torch.testing.assert_close(part[k], start[k] + 0.25 * (full[k] - start[k]))
    assert runs[0.25].card.training["blend"] == 0.25 and "blend" not in runs[1.0].card.training
    again = train([image], [scribbles], init=(first.model, first.card), steps=3, seed=1, **FAST)
    assert again.card.training["blend"] == BLEND_CONTINUE < 1  # another Train click
    assert "blend" not in first.card.training  # the first round keeps what it learnt
    other = train([image[:, :64]], [scribbles[:, :64]], init=(first.model, first.card), steps=1,
                  **FAST)
    assert "blend" not in other.card.training  # the saved model on other images: a first round


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lr_decay": "yes"}, "lr_decay must be True or False"),
        ({"blend": 0.0}, "blend must be a share in"),
        ({"blend": 1.5}, "blend must be a share in"),
        ({"steps": 0}, "steps must be an integer of at least 1"),
        ({"steps": 2.5}, "steps must be an integer"),
        ({"time_budget": float("inf")}, "time budget must be a finite positive"),
        ({"time_budget": -1.0}, "time budget must be a finite positive"),
        ({"lr": float("nan")}, "learning rate must be finite and positive"),
        ({"lr": 0.0}, "learning rate must be finite and positive"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"batch": 0}, "batch must be an integer of at least 1"),
        ({"patch_size": 0}, "patch_size must be a positive integer"),
        ({"patch_size": (32, -1)}, "patch_size must be a positive integer"),
        ({"threads": 0}, "threads must be at least 1"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
        ({"classes": 1}, "classes must be at least 2"),
        ({"classes": ["background"]}, "class names must be at least 2"),
        ({"pixel_size": (0.1, 0.0)}, "pixel_size must be 2-3 finite positive"),
        ({"refresh_every": -1.0}, "refresh_every must be a finite number of seconds"),
        ({"arch": "nope"}, "unknown architecture 'nope'"),
        ({"arch": "unet2d", "init": "mito-em"}, "either an init model or an architecture"),
    ],
)
def test_config_rejects_bad_options_by_name(options, message):
    with pytest.raises(CardiosegError, match=message):
        TrainConfig(**options)


def test_config_defaults_normalisation_and_sharing():
    config = TrainConfig()
    assert (config.steps, config.time_budget, config.total_steps) == (None, None, 200)
    timed = TrainConfig(time_budget=5, pixel_size=[0.5, 0.25], patch_size=[32, 48],
                        classes=["background", "cell"])
    assert timed.steps is None and timed.total_steps is None and timed.time_budget == 5.0
    assert timed.pixel_size == (0.5, 0.25) and timed.patch_size == (32, 48)
    assert timed.classes == ("background", "cell")
    with pytest.raises(AttributeError):
        config.steps = 3  # frozen
    image, scribbles, _ = disks()
    session = TrainSession([image], [scribbles], TrainConfig(steps=2, seed=3, **FAST), batch=2)
    assert (session.config.steps, session.config.seed, session.batch) == (2, 3, 2)
    timed = TrainSession([image], [scribbles], TrainConfig(steps=2), time_budget=9.0)
    assert timed.config.total_steps == 2 and timed.config.time_budget == 9.0
    with pytest.raises(CardiosegError, match="unknown training option"):
        TrainSession([image], [scribbles], stpes=2)


def test_time_budget_progress_has_no_total_and_a_message():
    image, scribbles, _ = disks()
    session = TrainSession([image], [scribbles], time_budget=0.5, **FAST)
    items = list(session.run())
    assert items and all(isinstance(p, Progress) and p.total is None for p in items)
    assert [p.done for p in items] == list(range(1, len(items) + 1))
    assert items[-1].elapsed >= 0.5 and items[0].stage == "train"
    assert items[-1].message.startswith(f"step {len(items)}  loss ")


def test_preview_is_the_sliding_window_prediction_of_the_crop():
    image, scribbles, _ = disks()
    result = train([image], [scribbles], steps=5, **FAST)
    model, card = result.model, result.card
    region = preview_region((slice(3, 40), slice(5, 66)), image.shape, 2)
    fitted = fit_normalization(image, card.normalization)
    crop = apply_normalization(image, fitted)[region]
    labels = preview_labels(model, card.spec, crop, torch.device("cpu"))
    fixed = ModelCard("crop", card.spec, card.class_names, {"method": "fixed", "min": 0.0,
                                                            "max": 1.0}, None)
    expected = probabilities_to_labels(predict_probabilities(crop, model, fixed, device="cpu"))
    assert labels.shape == (37, 61) and np.array_equal(labels, expected)
    assert result.card.receptive_field == [92, 92]
    assert preview_region((slice(None), slice(0, 2000), slice(0, 2000)), (3, 1000, 900), 2) == (
        slice(1, 2), slice(244, 756), slice(194, 706))  # one slice, 512 px around the centre


@pytest.mark.parametrize(("cores", "gui", "cli"), [(8, 4, 8), (16, 4, 16), (2, 1, 2), (1, 1, 1)])
def test_gui_keeps_half_the_cores_and_the_cli_uses_all(monkeypatch, cores, gui, cli):
    from napari_cardioseg.core import device

    monkeypatch.setattr(device, "cpu_cores", lambda: cores)
    monkeypatch.delenv(device.THREADS_ENV, raising=False)
    assert (device.train_threads(), device.train_threads(gui=False)) == (gui, cli)
    monkeypatch.setenv(device.THREADS_ENV, "3")
    assert (device.train_threads(), device.train_threads(gui=False)) == (3, 3)


def test_cores_follow_the_affinity_and_the_threads_setting_is_checked(monkeypatch):
    from napari_cardioseg.core import device

    if hasattr(os, "sched_getaffinity"):
        monkeypatch.setattr(device.os, "sched_getaffinity", lambda pid: {0, 5, 7})
        monkeypatch.setattr(device.os, "cpu_count", lambda: 64)
        assert device.cpu_cores() == 3  # a taskset / SLURM share, not the whole node
    for bad in ("0", "-2", "two", "1.5"):
        monkeypatch.setenv(device.THREADS_ENV, bad)
        with pytest.raises(CardiosegError, match="CARDIOSEG_THREADS must be a whole number"):
            device.threads_setting()
    monkeypatch.setenv(device.THREADS_ENV, " 2 ")
    assert device.threads_setting() == 2


def test_cli_applies_the_threads_setting(monkeypatch, capsys):
    from napari_cardioseg.cli import main
    from napari_cardioseg.core import device

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv(device.THREADS_ENV, "1")
        assert main(["models"]) == 0
        assert torch.get_num_threads() == 1
        monkeypatch.setenv(device.THREADS_ENV, "many")
        assert main(["models"]) == 2
        assert "CARDIOSEG_THREADS must be a whole number" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)


def test_cli_train_uses_every_core(monkeypatch, tmp_path):
    from napari_cardioseg.cli import main
    from napari_cardioseg.core import device
    from napari_cardioseg.core import train as train_module
    from napari_cardioseg.core.writes import write_tiff

    image, scribbles, _ = disks()
    write_tiff(tmp_path / "img.tif", np.clip(image, 0, 255).astype(np.uint8))
    write_tiff(tmp_path / "scr.tif", scribbles)
    monkeypatch.setattr(device, "cpu_cores", lambda: 3)
    monkeypatch.delenv(device.THREADS_ENV, raising=False)
    seen = []
    original = train_module.TrainSession.__init__

    def spy(self, images, scribbles, config=None, **options):
        seen.append(config.threads)
        original(self, images, scribbles, config, **options)

    monkeypatch.setattr(train_module.TrainSession, "__init__", spy)
    assert main(["train", "--image", str(tmp_path / "img.tif"), "--labels",
                 str(tmp_path / "scr.tif"), "--steps", "1", "-o", str(tmp_path / "m")]) == 0
    assert seen == [3]


def test_lr_decay_with_the_default_budget_reaches_zero():
    from napari_cardioseg.core.train_config import DEFAULT_STEPS, TrainConfig

    config = TrainConfig(lr_decay=True)  # neither steps nor a time budget: DEFAULT_STEPS
    assert decay_factor(config, 0, 0.0) == 1.0
    assert decay_factor(config, DEFAULT_STEPS // 2, 0.0) == pytest.approx(0.5)
    assert decay_factor(config, DEFAULT_STEPS, 0.0) == pytest.approx(0.0)


def test_a_bioimageio_package_is_refused_as_a_start_model(tmp_path):
    image, scribbles, _ = disks()
    package = tmp_path / "model.zip"
    package.write_bytes(b"PK\x05\x06" + bytes(18))  # an (empty) zip: a package by its name
    with pytest.raises(CardiosegError, match=r"bioimage\.io package predicts but cannot be trained"):
        TrainSession([image], [scribbles], init=str(package))
