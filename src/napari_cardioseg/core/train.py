"""Train or fine-tune a segmentation net from sparse scribbles, as a generator yielding progress.

Scribbles: 0 = unlabelled (ignored), 1 = background, 2 = first class, ... The loss only sees
labelled pixels (:mod:`.losses`), windows are drawn around labelled pixels with class balancing
(:mod:`.sampling`) and augmented on the fly (:mod:`.augment`). The scribble arrays are re-read
about once a second, so strokes painted while training runs are used by the next steps.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import adapt as _adapt
from . import models as _models
from . import nets as _nets
from .augment import AugmentConfig, augment_pair, context_shape
from .device import choose_device, train_threads
from .errors import CardiosegError
from .losses import sparse_loss
from .normalize import apply_normalization, fit_normalization
from .progress import drain
from .sampling import ScribbleIndex, check_classes, check_pairs, extract, window_centre

Region = tuple[slice, ...]
PreviewRequest = Region | Callable[[], Region | None] | None
InitModel = str | os.PathLike | tuple[torch.nn.Module, _models.ModelCard]

DEFAULT_ARCH = "unet2d"  # small plain U-Net: fast enough to train live on a CPU
#: options used when training an architecture from scratch (light, CPU-friendly widths)
SCRATCH_OPTIONS = {"unet2d": {"depth": 3, "base": 16}, "unet3d": {"depth": 3, "base": 8}}
LR_SCRATCH = 5e-3  # learning rates (AdamW) when none is given: training from scratch,
LR_FINETUNE = 2.5e-4  # and fine-tuning a pretrained or previously trained model
_PREVIEW_MAX = (32, 512, 512)  # largest preview region (Z, Y, X)


@dataclass
class TrainProgress:
    """One training step.

    Attributes
    ----------
    step : int
        Steps done so far.
    total_steps : int or None
        Planned steps (None under a time budget only).
    loss : float
        Loss of this step's batch.
    elapsed : float
        Seconds since training started.
    preview : numpy.ndarray or None
        Predicted labels (0 background, 1 first class, ...) for ``preview_region`` of the
        first image, when a preview was due at this step.
    preview_region : tuple of slice or None
        Where ``preview`` belongs in the first image.
    """

    step: int
    total_steps: int | None
    loss: float
    elapsed: float
    preview: np.ndarray | None = None
    preview_region: Region | None = None

    @property
    def done(self) -> int:
        """Alias of ``step`` (shared progress protocol)."""
        return self.step

    @property
    def total(self) -> int | None:
        """Alias of ``total_steps`` (shared progress protocol)."""
        return self.total_steps


@dataclass
class TrainResult:
    """A trained model, its card and the per-step loss curve."""

    model: torch.nn.Module
    card: _models.ModelCard
    losses: list[float] = field(default_factory=list)

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path`` (``.safetensors`` + ``.json`` card) atomically; returns the weights path."""
        return _models.save_model(self.model, self.card, path)


def _default_patch(ndim: int, multiple: int, shape: Sequence[int]) -> tuple[int, ...]:
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


def _class_names(n_classes: int) -> list[str]:
    return ["background", *[f"class {i}" for i in range(1, n_classes)]]


class TrainSession:
    """One training run: validated inputs, the model being trained and the best state so far.

    Create it (inputs are checked here, errors raise :class:`CardiosegError`), drain
    :meth:`run` (a generator yielding :class:`TrainProgress` and returning a
    :class:`TrainResult`), and call :meth:`best` at any time, e.g. after the consumer stopped
    iterating. Parameters are those of :func:`train_generator`.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        scribbles: Sequence[np.ndarray],
        *,
        init: InitModel | None = None,
        arch: str | None = None,
        classes: int | Sequence[str] | None = None,
        steps: int | None = None,
        time_budget: float | None = None,
        freeze_encoder: bool = False,
        preview: PreviewRequest = None,
        preview_every: float = 2.0,
        device: str = "auto",
        seed: int = 0,
        patch_size: int | Sequence[int] | None = None,
        batch: int | None = None,
        lr: float | None = None,
        keep_norm_stats: bool | None = None,
        augment: AugmentConfig = AugmentConfig(),  # noqa: B008 (frozen dataclass)
        refresh_every: float = 1.0,
        pixel_size: Sequence[float] | None = None,
        threads: int | None = None,
        prior_weight: float = 0.0,  # adapt hook: distillation toward the init model
        encoder_lr_scale: float = 1.0,  # adapt hook: encoder learning rate = lr * this
        prior_model: torch.nn.Module | None = None,  # adapt hook: teacher (default: init)
    ) -> None:
        self.images, self.scribbles = check_pairs(images, scribbles)
        if steps is not None and steps < 1:
            raise CardiosegError(f"steps must be at least 1, got {steps}")
        if threads is not None and threads < 1:
            raise CardiosegError(f"threads must be at least 1, got {threads}")
        self.threads = threads or train_threads()
        if time_budget is not None and time_budget <= 0:
            raise CardiosegError(f"the time budget must be positive, got {time_budget}")
        if steps is None and time_budget is None:
            steps = 200
        self.steps, self.time_budget = steps, time_budget
        self.preview, self.preview_every = preview, preview_every
        self.seed, self.augment = seed, augment
        self.pixel_size = [float(v) for v in pixel_size] if pixel_size is not None else None
        self.device = torch.device(choose_device(device))
        self.index = ScribbleIndex(self.scribbles, refresh_every=refresh_every)
        torch.manual_seed(seed)
        self.model, self.spec, self.class_names, self.init_name, base_card = self._initial_model(
            init, arch, classes
        )
        self.ndim = _nets.spec_ndim(self.spec)
        if self.ndim == 3 and any(image.ndim == 2 for image in self.images):
            raise CardiosegError(
                f"{self.spec['arch']} is a 3D model and cannot train on a 2D image; "
                "pick a 2D architecture"
            )
        self.normalization = (
            base_card.normalization if base_card is not None
            else {"method": "percentile", "low": 1.0, "high": 99.8}
        )
        self.base_card = base_card
        # fine-tuning: a small step and the pretrained batch-norm statistics, so that a few strokes
        # correct the model instead of overwriting what it learned from dense labels
        self.lr = lr if lr is not None else (LR_SCRATCH if base_card is None else LR_FINETUNE)
        keep = base_card is not None if keep_norm_stats is None else keep_norm_stats
        self.norm_layers = [
            m for m in self.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        ] if keep else []
        multiple = _nets.size_multiple(self.spec)
        if patch_size is None:
            self.patch = _default_patch(self.ndim, multiple, self.images[0].shape)
        else:
            sizes = (patch_size,) * self.ndim if isinstance(patch_size, int) else patch_size
            self.patch = tuple(_round_up(int(s), multiple) for s in sizes)
        self.batch = batch or (4 if self.ndim == 2 else 2)
        self.freeze_encoder = freeze_encoder
        self.model.to(self.device)
        self.frozen = _nets.encoder_modules(self.model) if freeze_encoder else []
        for module in self.frozen:
            module.requires_grad_(False)
        # adapt hooks (core/adapt.py): encoder learning-rate scale and a frozen teacher
        params = _adapt.param_groups(self.model, self.lr, encoder_lr_scale)
        self.optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=1e-4)
        if prior_weight > 0 and base_card is None and prior_model is None:
            raise CardiosegError("a prior needs a pretrained model to start from (init)")
        self.prior = (_adapt.Prior(prior_model or self.model, prior_weight)
                      if prior_weight > 0 else None)
        if self.prior is not None:
            self.prior.teacher.to(self.device)
        self.losses: list[float] = []
        self.elapsed = 0.0
        self._best_loss = float("inf")
        self._best_state: dict[str, torch.Tensor] | None = None

    def _initial_model(
        self, init: InitModel | None, arch: str | None, classes: int | Sequence[str] | None
    ) -> tuple[torch.nn.Module, dict, list[str], str | None, _models.ModelCard | None]:
        """Model, spec, class names, init name and init card (``None`` from scratch)."""
        counts = self.index.counts()
        wanted = classes if classes is None or isinstance(classes, int) else len(classes)
        names = None if classes is None or isinstance(classes, int) else list(classes)
        if init is None:
            n = wanted or max(max(counts, default=2), 2)
            name = arch or DEFAULT_ARCH
            spec = {"arch": name, "in_channels": 1, "classes": n, **SCRATCH_OPTIONS.get(name, {})}
            check_classes(counts, n, transfer_hint=False)
            return _nets.build_model(spec), spec, names or _class_names(n), None, None
        if arch is not None:
            raise CardiosegError("give either an init model or an architecture, not both")
        if isinstance(init, tuple):
            model, card = copy.deepcopy(init[0]), init[1]
            init_name = card.name
        else:
            model, card = _models.load_model(init, "cpu")
            init_name = str(init)
        spec = dict(card.spec)
        if spec.get("in_channels", 1) != 1:
            raise CardiosegError(f"{init_name} expects {spec['in_channels']} input channels; "
                                 "training needs a single-channel model")
        current = int(spec["classes"])
        n = wanted or current
        check_classes(counts, n, transfer_hint=wanted is None)
        if n != current:
            model, spec = _nets.replace_head(model, spec, n)
        if names is None:
            names = list(card.class_names) if n == current else _class_names(n)
        return model, spec, names, init_name, card

    def _batch(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Augmented windows around labelled pixels (2D slices for a 2D model on 3D data)."""
        context = context_shape(self.patch, self.augment)
        n_classes = int(self.spec["classes"])
        images, labels = [], []
        for _ in range(self.batch):
            i, point = self.index.sample(rng)
            image, scribble = self.normalized[i], self.scribbles[i]
            if self.ndim == 2 and image.ndim == 3:
                image, scribble, point = image[point[0]], scribble[point[0]], point[1:]
            centre = window_centre(point, self.patch, rng)
            img = extract(image, centre, context)
            lab = extract(scribble, centre, context, fill=0)
            img, lab = augment_pair(img, lab, self.patch, rng, self.augment)
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
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        _nets.zero_mean_constraint(self.model)
        return float(loss.detach())

    def _region(self) -> Region | None:
        """The preview region requested now, clipped to the first image and a maximum size."""
        request = self.preview() if callable(self.preview) else self.preview
        if request is None:
            return None
        shape = self.images[0].shape
        limits = _PREVIEW_MAX[-len(shape):]
        if self.ndim == 2 and len(shape) == 3:
            limits = (1, *limits[1:])
        region = []
        for sl, n, limit in zip(request, shape, limits, strict=True):
            start, stop, _ = sl.indices(n)
            if stop - start > limit:
                start = (start + stop - limit) // 2
                stop = start + limit
            if stop <= start:
                return None
            region.append(slice(start, stop))
        return tuple(region)

    @torch.no_grad()
    def _predict(self, region: Region) -> np.ndarray:
        """Predicted labels (0 background, 1 first class, ...) for ``region`` of image 1."""
        self.model.eval()
        crop = self.normalized[0][region]
        planes = crop if self.ndim == 2 and crop.ndim == 3 else crop[None]
        multiple = _nets.size_multiple(self.spec)
        pad = [(0, _round_up(n, multiple) - n) for n in planes.shape[1:]]
        padded = np.pad(planes, [(0, 0), *pad], mode="symmetric")
        x = torch.from_numpy(np.ascontiguousarray(padded)).to(self.device)
        out = []
        for plane in x:
            logits = self.model(plane[None, None])[0]
            out.append(logits.argmax(0).to(torch.uint8).cpu().numpy())
        labels = np.stack(out)[(slice(None), *(slice(0, n) for n in planes.shape[1:]))]
        return labels if self.ndim == 2 and crop.ndim == 3 else labels[0]

    def _done(self, step: int) -> bool:
        return (self.steps is not None and step >= self.steps) or (
            self.time_budget is not None and self.elapsed >= self.time_budget
        )

    def run(self) -> Generator[TrainProgress, None, TrainResult]:
        """Train until the step or time budget is spent, yielding after every step."""
        threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            yield from self._loop()
        finally:
            torch.set_num_threads(threads)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        return self.best()

    def _loop(self) -> Generator[TrainProgress, None, None]:
        start = time.perf_counter()
        rng = np.random.default_rng(self.seed)
        self.normalized = [
            apply_normalization(image, fit_normalization(image, self.normalization))
            for image in self.images
        ]
        last_preview = None
        step = 0
        smoothed = 0.0
        while not self._done(step):
            self.index.maybe_refresh()
            loss = self._step(rng)
            step += 1
            self.losses.append(loss)
            smoothed = loss if step == 1 else 0.9 * smoothed + 0.1 * loss
            if smoothed <= self._best_loss:
                self._best_loss = smoothed
                self._best_state = {k: v.detach().clone() for k, v in
                                    self.model.state_dict().items()}
            preview = region = None
            now = time.perf_counter()
            if last_preview is None or now - last_preview >= self.preview_every:
                region = self._region()
                if region is not None:
                    preview = self._predict(region)
                    last_preview = time.perf_counter()
            self.elapsed = time.perf_counter() - start
            yield TrainProgress(step, self.steps, loss, self.elapsed, preview, region)

    def best(self) -> TrainResult:
        """The model with the lowest smoothed loss so far (a copy) and its card."""
        model = copy.deepcopy(self.model).cpu().eval()
        if self._best_state is not None:
            model.load_state_dict(self._best_state)
        return TrainResult(model, self._card(), list(self.losses))

    def _card(self) -> _models.ModelCard:
        counts = self.index.counts()
        curve = self.losses
        summary = {}
        if curve:
            picks = np.linspace(0, len(curve) - 1, min(len(curve), 20)).round().astype(int)
            summary = {"first": curve[0], "last": curve[-1], "min": min(curve),
                       "best_smoothed": self._best_loss, "curve": [curve[i] for i in picks]}
        training = {
            "method": "sparse scribbles (masked cross-entropy + masked Dice)",
            "image_shapes": [list(image.shape) for image in self.images],
            "labelled_pixels": {
                self.class_names[v - 1] if v <= len(self.class_names) else f"label {v}": n
                for v, n in counts.items()
            },
            "steps": len(curve),
            "seconds": round(self.elapsed, 2),
            "init": self.init_name,
            "seed": self.seed,
            "patch_size": list(self.patch),
            "batch": self.batch,
            "freeze_encoder": self.freeze_encoder,
            "loss": summary,
        }
        base = self.base_card
        return _models.ModelCard(
            name=base.name if base is not None else f"scribbles-{self.spec['arch']}",
            spec=dict(self.spec),
            class_names=list(self.class_names),
            normalization=dict(self.normalization),
            pixel_size=self.pixel_size or (base.pixel_size if base is not None else None),
            description="Trained from scribbles in napari-cardioseg"
            + (f", starting from {self.init_name}" if self.init_name else ""),
            training=training,
            license=base.license if base is not None else "",
        )


def train_generator(
    images: Sequence[np.ndarray], scribbles: Sequence[np.ndarray], **options
) -> Generator[TrainProgress, None, TrainResult]:
    """Train a model from scribbles, yielding :class:`TrainProgress` after each step.

    Parameters
    ----------
    images : sequence of numpy.ndarray
        2D (``YX``) or 3D (``ZYX``) greyscale images.
    scribbles : sequence of numpy.ndarray
        Integer arrays of the images' shapes: 0 unlabelled, 1 background, 2.. classes. They may
        be painted into during training (re-read about every second).
    **options
        ``init`` (pretrained name, model path or an in-memory ``(model, card)``), ``arch``
        (registry name when training from scratch; default ``unet2d``), ``classes`` (count or
        names including background; a different count than ``init`` replaces its head),
        ``steps`` / ``time_budget`` (seconds), ``freeze_encoder``, ``preview`` (region of
        image 1 as a tuple of slices, or a callable returning one), ``preview_every``
        (seconds; a preview also follows the first step), ``device``, ``seed``,
        ``patch_size``, ``batch``, ``lr`` (default ``LR_SCRATCH``, or ``LR_FINETUNE`` with ``init``),
        ``keep_norm_stats`` (freeze batch-norm statistics; default: only when fine-tuning from
        ``init``; dense full-image training wants ``False``), ``augment`` (:class:`AugmentConfig`),
        ``refresh_every`` (seconds between re-reads of the scribbles), ``pixel_size`` (µm per
        axis, recorded in the card), ``threads`` (CPU threads for torch while training; default
        :func:`train_threads`).

    Returns
    -------
    TrainResult
        As the generator's return value; use :class:`TrainSession` directly to get the best
        model after stopping early.
    """
    return TrainSession(images, scribbles, **options).run()


def train(images: Sequence[np.ndarray], scribbles: Sequence[np.ndarray], **options) -> TrainResult:
    """Drain :func:`train_generator` and return its :class:`TrainResult`."""
    return drain(train_generator(images, scribbles, **options))
