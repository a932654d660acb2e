"""Train or fine-tune a segmentation net from sparse scribbles, as a generator yielding progress.

Scribbles: 0 = unlabelled (ignored), 1 = background, 2 = first class, ... The loss only sees
labelled pixels (:mod:`.losses`), windows are drawn around labelled pixels with class balancing
(:mod:`.sampling`) and augmented on the fly (:mod:`.augment`). The scribble arrays are re-read
about once a second, so strokes painted while training runs are used by the next steps.

Options live in :class:`~.train_config.TrainConfig`; where training starts is
:mod:`.train_init`; the card of the result is :mod:`.train_card`; the live preview is
:mod:`.train_preview`; the start model's checks against the strokes before the first step are
:mod:`.train_first_round`. :class:`TrainSession` keeps only the loop and the best state.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import adapt as _adapt
from . import models as _models
from . import nets as _nets
from . import polarity as _polarity
from . import probe_head as _probe
from .augment import augment_pair, context_shape
from .device import choose_device, train_threads
from .errors import CardiosegError
from .gan import Adversary, check_complete
from .losses import sparse_loss
from .normalize import apply_normalization, fit_normalization, inverted
from .progress import Progress, drain
from .sampling import ScribbleIndex, check_pairs, extract, window_centre
from .train_card import training_card
from .train_config import (
    DEFAULT_ARCH,
    LR_FINETUNE,
    LR_SCRATCH,
    InitModel,
    TrainConfig,
)
from .train_first_round import NORM_WINDOWS, FirstRoundSteps
from .train_init import (
    StartModel,
    blend_share,
    blended,
    decay_factor,
    encoder_lr_scale,
    fixed_norm_layers,
    freeze_encoder,
    keeps_norm_stats,
    later_round,
    learning_rate,
    prior_weight,
    probes,
    renews_norm_stats,
    start_model,
)
from .train_preview import Region, preview_prediction, preview_region

PreviewRequest = Region | Callable[[], Region | None] | None


@dataclass(frozen=True)
class TrainProgress(Progress):
    """One training step, with the step's loss and, when one was due, a preview.

    A :class:`Progress` with ``done`` steps of ``total`` (None under a time budget).

    Attributes
    ----------
    loss : float
        Loss of this step's batch.
    elapsed : float
        Seconds since training started.
    preview : numpy.ndarray or None
        Predicted labels (0 background, 1 first class, ...) for ``preview_region`` of the first
        image.
    preview_region : tuple of slice or None
        Where ``preview`` belongs in the first image.
    uncertainty : numpy.ndarray or None
        With ``preview``: float32 per-pixel uncertainty in [0, 1] of the same region
        (:func:`core.predict.probabilities_to_uncertainty`: 0 sure, 1 all classes equally likely).

    Notes
    -----
    When the head was fitted by the linear probe or the contrast inverted, the first item has
    ``done == 0`` and no loss: the preview of that model, before any optimiser step.
    """

    stage: str = "train"
    loss: float = float("nan")
    elapsed: float = 0.0
    preview: np.ndarray | None = None
    preview_region: Region | None = None
    uncertainty: np.ndarray | None = None


@dataclass
class TrainResult:
    """A trained model, its card and the per-step loss curve."""

    model: torch.nn.Module
    card: _models.ModelCard
    losses: list[float] = field(default_factory=list)

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``STEM.safetensors`` + ``STEM.json`` atomically; returns the ``.json`` card path."""
        return _models.save_model(self.model, self.card, path)


def default_patch(ndim: int, multiple: int, shape: Sequence[int]) -> tuple[int, ...]:
    """Small CPU-friendly windows, at most half the image per axis (rounded to ``multiple``).

    Windows as large as the image let the net learn absolute position from the borders and
    label unpainted areas arbitrarily; smaller windows keep it translation-invariant.
    """
    wanted = (128, 128) if ndim == 2 else (16, 64, 64)
    return tuple(
        min(w, _round_up(n // 2, multiple)) for w, n in zip(wanted, shape[-ndim:], strict=True)
    )


def _round_up(size: int, multiple: int) -> int:
    return max(multiple, -(-size // multiple) * multiple)


class TrainSession(FirstRoundSteps):
    """One training run: the loop and the best state so far.

    Create it (inputs and options are checked here, errors raise :class:`CardiosegError`),
    drain :meth:`run` (a generator yielding :class:`TrainProgress` and returning a
    :class:`TrainResult`), and call :meth:`best` at any time, e.g. after the consumer stopped
    iterating.

    Parameters
    ----------
    images : sequence of numpy.ndarray
        2D (``YX``) or 3D (``ZYX``) greyscale images.
    scribbles : sequence of numpy.ndarray
        Integer arrays of the images' shapes: 0 unlabelled, 1 background, 2.. classes. They may
        be painted into during training.
    config : TrainConfig, optional
        The options; keyword ``options`` (TrainConfig fields) replace its fields.
    preview : tuple of slice or callable, optional
        Region of image 1 to preview, or a callable returning one (or None) when asked.
    prior_model : torch.nn.Module, optional
        Teacher of the distillation prior (when its weight is > 0); default: the start
        model as it was before training (after the head's linear probe, with ``probe_head``).
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        scribbles: Sequence[np.ndarray],
        config: TrainConfig | None = None,
        *,
        preview: PreviewRequest = None,
        prior_model: torch.nn.Module | None = None,
        **options: Any,
    ) -> None:
        try:
            config = dataclasses.replace(config or TrainConfig(), **options)
        except TypeError as exc:
            raise CardiosegError(f"unknown training option: {exc}") from exc
        self.config, self.preview = config, preview
        self.images, self.scribbles = check_pairs(images, scribbles)
        self.device = torch.device(choose_device(config.device))
        self.index = ScribbleIndex(self.scribbles, refresh_every=config.refresh_every)
        torch.manual_seed(config.seed)
        self.start: StartModel = start_model(config, self.index.counts())
        self.model, self.spec = self.start.model, self.start.spec
        self.ndim = _nets.spec_ndim(self.spec)
        if self.ndim == 3 and any(image.ndim == 2 for image in self.images):
            raise CardiosegError(
                f"{self.spec['arch']} is a 3D model and cannot train on a 2D image; "
                "pick a 2D architecture"
            )
        self.lr = learning_rate(config, self.start)
        self.norm_layers = fixed_norm_layers(config, self.start)
        multiple = _nets.size_multiple(self.spec)
        if config.patch_size is None:
            self.patch = default_patch(self.ndim, multiple, self.images[0].shape)
        else:
            sizes = config.patch_size
            sizes = (sizes,) * self.ndim if isinstance(sizes, int) else sizes
            if len(sizes) != self.ndim:
                raise CardiosegError(f"patch_size {list(sizes)} needs {self.ndim} sizes for "
                                     f"{self.spec['arch']}")
            self.patch = tuple(_round_up(int(s), multiple) for s in sizes)
        self.batch = config.batch or (4 if self.ndim == 2 else 2)
        self.model.to(self.device)
        self.frozen = freeze_encoder(self.start) if config.freeze_encoder else []
        params = _adapt.param_groups(self.model, self.spec, self.lr,
                                     encoder_lr_scale(config, self.start))
        self.optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=1e-4)
        self._base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        weight = prior_weight(config, self.start)
        if weight > 0 and self.start.base_card is None and prior_model is None:
            raise CardiosegError("a prior needs a pretrained model to start from (init)")
        self.prior = _adapt.Prior(prior_model or self.model, weight) if weight > 0 else None
        self._own_teacher = prior_model is None  # the teacher follows the probed head
        if config.gan_weight > 0:
            check_complete(self.scribbles)
        self.adversary = (Adversary(self.ndim, int(self.spec["classes"]), config.gan_weight,
                                    self.lr, self.device) if config.gan_weight > 0 else None)
        shapes = [image.shape for image in self.images]
        self.later_round = later_round(config, self.start, shapes)
        self.probe = probes(config, self.start, self.later_round)
        self.blend = blend_share(config, self.later_round)
        self.renew_norm = renews_norm_stats(config, self.start, self.later_round)
        self._start_state: dict[str, torch.Tensor] | None = None
        self.normalization: dict = self.start.normalization  # with the polarity chosen in run()
        self.polarity: _polarity.PolarityCheck | None = None
        self.probe_fit: _probe.ProbeFit | None = None
        self._accuracy: float | None = None  # the start model's on the strokes, when measured
        self.norm_note: str | None = None  # how the batch-norm statistics were renewed, if they were
        if self.prior is not None:
            self.prior.teacher.to(self.device)
        slice_wise = self.ndim == 2
        split = np.random.default_rng(config.seed + 1)  # its own stream: windows stay as without
        self.held = ([_adapt.split_strokes(s, config.holdout, split, slice_wise)
                      for s in self.scribbles] if config.holdout > 0 else None)
        self.holdout: _adapt.HeldOut | None = None
        self.holdout_scores: list[tuple[int, float]] = []  # (step, held-out balanced accuracy)
        self.losses: list[float] = []
        self.elapsed = 0.0
        self._best_loss = float("inf")
        self._best_score = -1.0
        self._best_state: dict[str, torch.Tensor] | None = None

    @property
    def contrast_inverted(self) -> bool:
        """Tell whether the run sees the image with the contrast inverted from the start model's."""
        return inverted(self.normalization) != inverted(self.start.normalization)

    @property
    def init_name(self) -> str | None:
        """Name or path of the start model (None from scratch)."""
        return self.start.init_name

    def _batch(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Augmented windows around labelled pixels (2D slices for a 2D model on 3D data)."""
        context = context_shape(self.patch, self.config.augment)
        n_classes = int(self.spec["classes"])
        images, labels = [], []
        for _ in range(self.batch):
            i, point = self.index.sample(rng)
            image, scribble = self.normalized[i], self.scribbles[i]
            point_slice = None
            if self.ndim == 2 and image.ndim == 3:
                point_slice = point[0]
                image, scribble, point = image[point[0]], scribble[point[0]], point[1:]
            centre = window_centre(point, self.patch, rng)
            img = extract(image, centre, context)
            lab = extract(scribble, centre, context, fill=0)
            if self.held is not None:  # adapt hook: held-out strokes are not trained on
                held = self.held[i][point_slice] if point_slice is not None else self.held[i]
                lab[extract(held, centre, context, fill=0)] = 0
            img, lab = augment_pair(img, lab, self.patch, rng, self.config.augment)
            lab = lab.astype(np.int64)
            lab[lab > n_classes] = 0  # labels painted beyond the model's classes are ignored
            images.append(img)
            labels.append(lab)
        x = torch.from_numpy(np.stack(images)[:, None]).to(self.device)
        return x, torch.from_numpy(np.stack(labels)).to(self.device)

    def _step(self, rng: np.random.Generator) -> float:
        self.model.train()
        for module in [*self.frozen, *self.norm_layers]:
            module.eval()  # frozen encoders and fine-tuned models keep their batch-norm statistics
        x, y = self._batch(rng)
        logits = self.model(x)
        loss = sparse_loss(logits, y)
        if self.prior is not None:  # adapt hook: keep the init model's answer where unpainted
            loss = loss + self.prior.loss(logits, x, y)
        reported = float(loss.detach())  # the adversarial term is left out of the loss curve
        if self.adversary is not None:  # cGAN hook: the generator also tries to pass as real
            loss = loss + self.adversary.generator_loss(x, logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.adversary is not None:
            self.adversary.step(x, logits, y)
        _nets.zero_mean_constraint(self.model)
        return reported

    def _keep_state(self) -> None:
        self._best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def _score_holdout(self, step: int) -> None:
        """Score the held-out strokes; keep the state when it is at least as good as the best."""
        score = None if self.holdout is None else self.holdout.score(self.model, self.device)
        if score is None:
            return
        self.holdout_scores.append((step, score))
        if score >= self._best_score:
            self._best_score = score
            self._keep_state()

    def _preview(self) -> tuple[np.ndarray, np.ndarray, Region] | None:
        """Labels and uncertainty for the region requested now, or None when none is requested."""
        request = self.preview() if callable(self.preview) else self.preview
        region = preview_region(request, self.images[0].shape, self.ndim)
        if region is None:
            return None
        labels, uncertainty = preview_prediction(self.model, self.spec,
                                                 self.normalized[0][region], self.device)
        return labels, uncertainty, region

    def _done(self, step: int) -> bool:
        steps, budget = self.config.total_steps, self.config.time_budget
        return (steps is not None and step >= steps) or (
            budget is not None and self.elapsed >= budget
        )

    def run(self) -> Generator[TrainProgress, None, TrainResult]:
        """Train until the step or time budget is spent, yielding after every step."""
        threads = torch.get_num_threads()
        torch.set_num_threads(self.config.threads or train_threads())
        try:
            self.receptive_field()  # measured here, in the worker, not when the card is made
            yield from self._loop()
        finally:
            torch.set_num_threads(threads)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        return self.best()

    def _loop(self) -> Generator[TrainProgress, None, None]:
        start = time.perf_counter()
        rng = np.random.default_rng(self.config.seed)
        self.normalization = self._choose_normalization()
        self.normalized = [apply_normalization(image, fit_normalization(image, self.normalization))
                           for image in self.images]
        if self.held is not None:
            self.holdout = _adapt.HeldOut(
                self.normalized, self.scribbles, self.held, self.ndim,
                _nets.size_multiple(self.spec), int(self.spec["classes"])) or None
        self.norm_note = self._renew_norm_stats() if self.renew_norm else None
        last_preview = None
        fit = self._probe_head() if self._wants_probe() else None
        note = self._polarity_note()
        notes = [note] if note else []
        if self.norm_note is not None:
            notes.append(self.norm_note)
        if fit is not None:
            notes.append(f"head fitted to {fit.pixels} painted pixels in {fit.seconds:.1f} s")
        if notes:  # step 0: the start model as it will be trained, before any optimiser step
            preview = self._preview()
            if preview is not None:
                last_preview = time.perf_counter()
            labels, uncertainty, region = preview if preview is not None else (None, None, None)
            self.elapsed = time.perf_counter() - start
            yield TrainProgress(0, self.config.total_steps, elapsed=self.elapsed,
                                message="; ".join(notes), preview=labels, preview_region=region,
                                uncertainty=uncertainty)
        if self.holdout is not None:
            self._score_holdout(0)
        if self.blend < 1.0:  # the weights this round starts from, to blend the result with
            self._start_state = {k: v.detach().to("cpu", copy=True)
                                 for k, v in self.model.state_dict().items()}
        step = 0
        smoothed = 0.0
        inverted_note = "  (contrast inverted)" if self.contrast_inverted else ""
        while not self._done(step):
            self.index.maybe_refresh()
            share = decay_factor(self.config, step, self.elapsed)
            for group, base_lr in zip(self.optimizer.param_groups, self._base_lrs, strict=True):
                group["lr"] = base_lr * share
            loss = self._step(rng)
            step += 1
            self.losses.append(loss)
            smoothed = loss if step == 1 else 0.9 * smoothed + 0.1 * loss
            if smoothed <= self._best_loss:
                self._best_loss = smoothed
                if self.holdout is None:
                    self._keep_state()
            self.elapsed = time.perf_counter() - start
            if self.holdout is not None and (step % _adapt.HOLDOUT_EVERY == 0 or self._done(step)):
                self._score_holdout(step)
            preview = None
            now = time.perf_counter()
            if last_preview is None or now - last_preview >= self.config.preview_every:
                preview = self._preview()
                if preview is not None:
                    last_preview = time.perf_counter()
            self.elapsed = time.perf_counter() - start
            labels, uncertainty, region = preview if preview is not None else (None, None, None)
            yield TrainProgress(
                step, self.config.total_steps,
                message=f"step {step}  loss {loss:.4f}  {self.elapsed:.0f} s{inverted_note}",
                loss=loss, elapsed=self.elapsed, preview=labels, preview_region=region,
                uncertainty=uncertainty,
            )

    def receptive_field(self) -> tuple[int, ...]:
        """Return the net's receptive field (from the start model's card when it records one)."""
        base = self.start.base_card
        if base is not None and base.receptive_field is not None:
            return tuple(base.receptive_field)
        return _nets.receptive_field(self.spec)

    def best(self) -> TrainResult:
        """Return a copy of the best model so far, and its card.

        Best is the lowest smoothed loss, or with ``holdout`` the best held-out score; with
        ``blend`` < 1 it is moved only that share of the way from the weights the run started from.
        When the run learnt batch-norm statistics (from scratch), they are re-estimated with the
        final weights on random windows of the images: the running averages trail the weights,
        which move fast in a short run (a 40-step model scored Dice 0.75 with them, 0.92 renewed).
        """
        model = copy.deepcopy(self.model).cpu().eval()
        if self._best_state is not None:
            model.load_state_dict(self._best_state)
        if self._start_state is not None:
            model.load_state_dict(blended(self._start_state, model.state_dict(), self.blend))
        if self.losses and not keeps_norm_stats(self.config, self.start):
            windows = _adapt.random_windows(self.normalized, self.patch, NORM_WINDOWS,
                                            np.random.default_rng(self.config.seed + 3))
            _adapt.adapt_norm_stats(model, torch.from_numpy(windows[:, None]), self.batch)
        card = training_card(
            self.config, self.start, image_shapes=[image.shape for image in self.images],
            counts=self.index.counts(), losses=self.losses, best_smoothed=self._best_loss,
            seconds=self.elapsed, patch=self.patch, batch=self.batch,
            receptive_field=self.receptive_field(),
            probe=None if self.probe_fit is None else dataclasses.asdict(self.probe_fit),
            normalization=self.normalization, blend=self.blend, norm_stats=self.norm_note,
            polarity=None if self.polarity is None else {
                **dataclasses.asdict(self.polarity), "inverted": self.polarity.invert},
        )
        return TrainResult(model, card, list(self.losses))


def train_generator(
    images: Sequence[np.ndarray], scribbles: Sequence[np.ndarray],
    config: TrainConfig | None = None, *, preview: PreviewRequest = None, **options: Any,
) -> Generator[TrainProgress, None, TrainResult]:
    """Train a model from scribbles, yielding :class:`TrainProgress` after each step.

    Parameters are those of :class:`TrainSession`.

    Returns
    -------
    TrainResult
        As the generator's return value; use :class:`TrainSession` directly to get the best
        model after stopping early.
    """
    return TrainSession(images, scribbles, config, preview=preview, **options).run()


def train(images: Sequence[np.ndarray], scribbles: Sequence[np.ndarray],
          config: TrainConfig | None = None, **options: Any) -> TrainResult:
    """Drain :func:`train_generator` and return its :class:`TrainResult`."""
    return drain(train_generator(images, scribbles, config, **options))


__all__ = [
    "DEFAULT_ARCH", "LR_FINETUNE", "LR_SCRATCH", "InitModel", "PreviewRequest", "TrainConfig",
    "TrainProgress", "TrainResult", "TrainSession", "default_patch", "train", "train_generator",
]
