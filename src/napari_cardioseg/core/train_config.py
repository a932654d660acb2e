"""The typed, validated options of one training run, shared by the CLI, the widget and the recipes."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeGuard

from .augment import AugmentConfig
from .device import DEVICES
from .errors import CardiosegError

if TYPE_CHECKING:
    import torch

    from .models import ModelCard

#: where training starts: a pretrained name, a model file, or an in-memory ``(model, card)``
InitModel = str | os.PathLike | tuple["torch.nn.Module", "ModelCard"]

#: ``polarity`` values: decide from the strokes, the start model's contrast, the other way round
POLARITIES = ("auto", "keep", "invert")
DEFAULT_ARCH = "unet2d"  # small plain U-Net: fast enough to train live on a CPU
DEFAULT_STEPS = 200  # when neither a step count nor a time budget is given
LR_SCRATCH = 5e-3  # learning rates (AdamW) when none is given: training from scratch,
LR_FINETUNE = 2.5e-4  # and fine-tuning a pretrained or previously trained model
PRIOR_FINETUNE = 1.0  # distillation prior weight and encoder learning-rate scale when adapting
ENCODER_LR_SCALE_FINETUNE = 0.1  # a model to strokes (train_init.adapts; else 0 and 1)
PROBE_FINETUNE = True  # linear probe of the head before fine-tuning a model (train_init.probes)
PROBE_BELOW = 0.95  # by default only when the start model's stroke accuracy is below this
BLEND_CONTINUE = 0.25  # share of a round's change kept when continuing a stroke-trained model
RENEW_NORM_FINETUNE = True  # renew batch-norm statistics when the start model misses the strokes
METHOD = "sparse scribbles (masked cross-entropy + masked Dice)"  # training["method"] of our cards


def _integer(value: Any) -> TypeGuard[int]:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _positive_number(value: Any) -> TypeGuard[float]:
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value) and float(value) > 0)


@dataclass(frozen=True)
class TrainConfig:
    """How to train: the start model, the budget and the optimisation options.

    Every field is checked on construction; a bad value raises :class:`CardiosegError` naming it.

    Attributes
    ----------
    init : str, path or (torch.nn.Module, ModelCard), optional
        Start from this model (pretrained name, model file, or in memory; the latter is copied,
        never changed). None trains ``arch`` from scratch.
    arch : str, optional
        Registry name to train from scratch (default ``unet2d``); not together with ``init``.
    classes : int or sequence of str, optional
        Class count or names, background included. A count other than ``init``'s replaces its
        head; None: ``init``'s classes, or from scratch the highest painted label.
    steps : int, optional
        Optimiser steps (default 200 when ``time_budget`` is not given either).
    time_budget : float, optional
        Seconds of training; with ``steps`` too, whichever ends first.
    freeze_encoder : bool
        Train only the decoder and head.
    lr : float, optional
        AdamW learning rate; default :data:`LR_SCRATCH`, or :data:`LR_FINETUNE` with ``init``.
    keep_norm_stats : bool, optional
        Keep batch-norm statistics fixed; default: only when fine-tuning from ``init`` (dense
        full-image training wants False).
    seed : int
        Seed of the weights, the windows and the augmentation (>= 0).
    patch_size : int or sequence of int, optional
        Training window per axis (rounded up to the net's stride); default: small windows, at
        most half the image.
    batch : int, optional
        Windows per step (default 4 for 2D nets, 2 for 3D nets).
    augment : AugmentConfig
        On-the-fly augmentation.
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``mps``.
    threads : int, optional
        CPU threads for torch while training (default :func:`device.train_threads`).
    refresh_every : float
        Seconds between re-reads of the scribbles (strokes painted while training are used).
    preview_every : float
        Seconds between live previews (one also follows the first step).
    pixel_size : sequence of float, optional
        µm per axis of the images, recorded in the model card.
    prior_weight : float, optional
        Weight (>= 0) of the distillation prior that keeps the start model's answer on
        unpainted pixels (:class:`core.adapt.Prior`); 0 turns it off. Needs ``init``. Default:
        :data:`PRIOR_FINETUNE` when fine-tuning ``init`` with its own head and batch-norm
        statistics (``train_init.adapts``), else 0.
    encoder_lr_scale : float, optional
        The encoder learns at ``lr * encoder_lr_scale`` (0 < scale <= 1; 1: one learning rate).
        Default: :data:`ENCODER_LR_SCALE_FINETUNE` when ``train_init.adapts``, else 1.
    gan_weight : float
        Weight (>= 0) of the conditional-GAN term (:mod:`core.gan`, pix2pix's PatchGAN); 0 = off.
        Needs complete masks (every pixel labelled), e.g. the recipes.
    holdout : float
        Share of each class's strokes (0 <= share <= 0.5) kept out of training to choose the
        state returned: the best held-out balanced accuracy, scored before the first step and
        every :data:`core.adapt.HOLDOUT_EVERY` steps, never one worse than the start. 0: the
        lowest smoothed loss.
    probe_head : bool, optional
        Before the first step, fit the net's output layer alone to the painted pixels with the
        features fixed (a linear probe, :mod:`core.probe_head`; "LP-FT", Kumar et al. 2022),
        then fine-tune from there; a preview of the fitted head comes before any optimiser
        step. True: every run (each Train click) probes with all strokes. Default (None):
        :data:`PROBE_FINETUNE` when starting from ``init`` with its batch-norm statistics
        kept (``train_init.probes``), and then only when the start model's own answer on the
        strokes (balanced accuracy) is below :data:`PROBE_BELOW` or its head is new, and never
        in another round on the same images (``train_init.later_round``): that head fits the
        strokes already, and a refit pulled towards the new corrections, painted where it is
        wrong, can undo what the last round learnt; else off.
        True on a net whose registry row names no probe-able head raises an error.
    polarity : str
        Which way round the start model sees the image's contrast (:mod:`core.polarity`):
        ``"auto"`` (default) inverts it when the run adapts a model (``train_init.adapts``) and
        that model's own answer on the strokes is clearly better inverted, except in a later
        round on the same images (``train_init.later_round``), which keeps the choice of the
        first: correction strokes sit where the model is wrong; ``"keep"`` uses the
        start model's recipe; ``"invert"`` the opposite of it. The choice is saved in the
        trained model's normalisation.
    blend : float, optional
        Share (0 < share <= 1) of what this run changed that the returned model keeps: its
        weights are ``start + blend * (trained - start)`` (WiSE-FT, Wortsman et al. 2022), so
        a round of strokes moves a model part of the way. Default: :data:`BLEND_CONTINUE` in
        another round of strokes on the same images (``train_init.later_round``: continuing a
        model trained here from strokes on images of these shapes), else 1.
    lr_decay : bool
        Cosine decay of the net's learning rates (encoder and rest; not a GAN discriminator's)
        to 0 over the run (its step or time budget, whichever ends first; Loshchilov & Hutter
        2017). False: constant rates.
    renew_norm_stats : bool, optional
        Before the first step, re-estimate the start model's batch-norm statistics on random
        windows of these images, painted or not (AdaBN, :func:`core.adapt.adapt_norm_stats`),
        then keep them fixed: a net trained on other data meets these images with statistics of
        their own. True: always, in every run. Default (None): when :data:`RENEW_NORM_FINETUNE`
        and the run adapts a model in a first round (``train_init.renews_norm_stats``), and
        then only when the start model misses the strokes (balanced accuracy below
        :data:`PROBE_BELOW`); the new statistics are kept only when the model answers the
        strokes better with them. False: never.

    Notes
    -----
    Domain-adaptation options are fields here, each with its check in ``__post_init__``.
    """

    init: InitModel | None = None
    arch: str | None = None
    classes: int | tuple[str, ...] | None = None
    steps: int | None = None
    time_budget: float | None = None
    freeze_encoder: bool = False
    lr: float | None = None
    keep_norm_stats: bool | None = None
    seed: int = 0
    patch_size: int | tuple[int, ...] | None = None
    batch: int | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    device: str = "auto"
    threads: int | None = None
    refresh_every: float = 1.0
    preview_every: float = 2.0
    pixel_size: tuple[float, ...] | None = None
    prior_weight: float | None = None
    encoder_lr_scale: float | None = None
    holdout: float = 0.0
    probe_head: bool | None = None
    gan_weight: float = 0.0
    polarity: str = "auto"
    blend: float | None = None
    lr_decay: bool = False
    renew_norm_stats: bool | None = None

    def __post_init__(self) -> None:
        """Check every field; raise :class:`CardiosegError` naming the first bad one."""
        self._check_start()
        self._check_budget()
        self._check_optimiser()
        self._check_runtime()

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)  # normalising a frozen field in __post_init__

    def _check_start(self) -> None:
        if self.init is not None and self.arch is not None:
            raise CardiosegError("give either an init model or an architecture, not both")
        if self.arch is not None:
            from .nets import ARCHITECTURES

            if self.arch not in ARCHITECTURES:
                raise CardiosegError(f"unknown architecture {self.arch!r}; choose one of: "
                                     f"{', '.join(ARCHITECTURES)}")
        if self.classes is not None:
            if _integer(self.classes):
                if self.classes < 2:
                    raise CardiosegError(f"classes must be at least 2 (background included), "
                                         f"got {self.classes}")
            elif isinstance(self.classes, Sequence) and not isinstance(self.classes, str):
                names = tuple(self.classes)
                if len(names) < 2 or not all(isinstance(n, str) and n for n in names):
                    raise CardiosegError(f"class names must be at least 2 non-empty strings "
                                         f"(background first), got {list(names)}")
                self._set("classes", names)
            else:
                raise CardiosegError(f"classes must be a count or a list of names, got "
                                     f"{self.classes!r}")

    def _check_budget(self) -> None:
        if self.steps is not None and (not _integer(self.steps) or self.steps < 1):
            raise CardiosegError(f"steps must be an integer of at least 1, got {self.steps!r}")
        if self.time_budget is not None:
            if not _positive_number(self.time_budget):
                raise CardiosegError(f"the time budget must be a finite positive number of "
                                     f"seconds, got {self.time_budget!r}")
            self._set("time_budget", float(self.time_budget))

    def _check_optimiser(self) -> None:
        if self.lr is not None and not _positive_number(self.lr):
            raise CardiosegError(f"the learning rate must be finite and positive, got {self.lr!r}")
        if self.blend is not None and not (_positive_number(self.blend) and self.blend <= 1):
            raise CardiosegError(f"blend must be a share in (0, 1], got {self.blend!r}")
        if not isinstance(self.lr_decay, bool):
            raise CardiosegError(f"lr_decay must be True or False, got {self.lr_decay!r}")
        if not _integer(self.seed) or self.seed < 0:
            raise CardiosegError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.batch is not None and (not _integer(self.batch) or self.batch < 1):
            raise CardiosegError(f"batch must be an integer of at least 1, got {self.batch!r}")
        if self.patch_size is not None:
            given: Any = self.patch_size
            sizes = (given,) if _integer(given) else given
            ok = isinstance(sizes, Sequence) and len(sizes) in (1, 2, 3) and all(
                _integer(s) and s >= 1 for s in sizes)
            if not ok:
                raise CardiosegError(f"patch_size must be a positive integer or 2-3 of them, got "
                                     f"{self.patch_size!r}")
            if not _integer(given):
                self._set("patch_size", tuple(sizes))
        if not isinstance(self.augment, AugmentConfig):
            raise CardiosegError(f"augment must be an AugmentConfig, got {self.augment!r}")

    def _check_runtime(self) -> None:
        if str(self.device).split(":")[0] not in DEVICES:
            raise CardiosegError(f"unknown device {self.device!r}; use {', '.join(DEVICES)}")
        if self.threads is not None and (not _integer(self.threads) or self.threads < 1):
            raise CardiosegError(f"threads must be at least 1, got {self.threads!r}")
        for name in ("refresh_every", "preview_every"):
            value = getattr(self, name)
            if not (_positive_number(value) or value == 0):
                raise CardiosegError(f"{name} must be a finite number of seconds >= 0, got "
                                     f"{value!r}")
        if self.pixel_size is not None:
            sizes = tuple(self.pixel_size)
            if len(sizes) not in (2, 3) or not all(_positive_number(v) for v in sizes):
                raise CardiosegError(f"pixel_size must be 2-3 finite positive numbers (µm per "
                                     f"axis), got {self.pixel_size!r}")
            self._set("pixel_size", tuple(float(v) for v in sizes))
        if self.prior_weight is not None and not (_positive_number(self.prior_weight)
                                                  or self.prior_weight == 0):
            raise CardiosegError(f"prior_weight must be a finite number >= 0, got "
                                 f"{self.prior_weight!r}")
        if self.encoder_lr_scale is not None and not (_positive_number(self.encoder_lr_scale)
                                                      and self.encoder_lr_scale <= 1):
            raise CardiosegError(f"encoder_lr_scale must be in (0, 1], got {self.encoder_lr_scale!r}")
        if not (_positive_number(self.gan_weight) or self.gan_weight == 0):
            raise CardiosegError(f"gan_weight must be a finite number >= 0, got {self.gan_weight!r}")
        if not ((_positive_number(self.holdout) or self.holdout == 0) and self.holdout <= 0.5):
            raise CardiosegError(f"holdout must be a share in [0, 0.5], got {self.holdout!r}")
        if self.probe_head is not None and not isinstance(self.probe_head, bool):
            raise CardiosegError(f"probe_head must be True, False or None, got {self.probe_head!r}")
        if self.polarity not in POLARITIES:
            raise CardiosegError(f"polarity must be one of {', '.join(POLARITIES)}, got "
                                 f"{self.polarity!r}")

    @property
    def total_steps(self) -> int | None:
        """Return the planned number of steps.

        ``steps``, or 200 without any budget; None when only a time budget bounds training.
        """
        if self.steps is None and self.time_budget is None:
            return DEFAULT_STEPS
        return self.steps
