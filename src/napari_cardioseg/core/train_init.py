"""Where a training run starts.

A fresh net, a model file or an in-memory model, with its head, frozen encoder and batch-norm
statistics set up for the run.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from . import models as _models
from . import nets as _nets
from .errors import CardiosegError
from .sampling import check_classes
from .train_config import (
    BLEND_CONTINUE,
    DEFAULT_ARCH,
    ENCODER_LR_SCALE_FINETUNE,
    LR_FINETUNE,
    LR_SCRATCH,
    METHOD,
    PRIOR_FINETUNE,
    PROBE_FINETUNE,
    RENEW_NORM_FINETUNE,
    TrainConfig,
)

DEFAULT_NORMALIZATION = {"method": "percentile", "low": 1.0, "high": 99.8}


@dataclass
class StartModel:
    """The model a run starts from and what its card needs to know about that start.

    Attributes
    ----------
    model : torch.nn.Module
        A copy of the start model (or a fresh one), with the run's class count.
    spec : dict
        Its architecture spec.
    class_names : list of str
        Background first.
    init_name : str or None
        Name or path of the start model; None from scratch.
    base_card : ModelCard or None
        The start model's card; None from scratch.
    """

    model: torch.nn.Module
    spec: dict
    class_names: list[str]
    init_name: str | None
    base_card: _models.ModelCard | None

    @property
    def normalization(self) -> dict:
        """The start model's normalisation recipe, or the default one from scratch."""
        return dict(self.base_card.normalization if self.base_card else DEFAULT_NORMALIZATION)


def default_class_names(n_classes: int) -> list[str]:
    """``background, class 1, class 2, ...``."""
    return ["background", *[f"class {i}" for i in range(1, n_classes)]]


def start_model(config: TrainConfig, counts: dict[int, int]) -> StartModel:
    """Build or load the start model and fit its head to the classes asked for.

    Parameters
    ----------
    config : TrainConfig
        ``init``/``arch`` and ``classes`` are used.
    counts : dict
        Painted pixels per scribble value (1 background, 2 first class, ...); the classes must
        be covered by the model.
    """
    classes = config.classes
    wanted = classes if classes is None or isinstance(classes, int) else len(classes)
    names = None if classes is None or isinstance(classes, int) else list(classes)
    init = config.init
    if init is None:
        n = wanted or max(max(counts, default=2), 2)
        spec = _nets.scratch_spec(config.arch or DEFAULT_ARCH, n)
        check_classes(counts, n, transfer_hint=False)
        return StartModel(_nets.build_model(spec), spec, names or default_class_names(n),
                          None, None)
    if isinstance(init, tuple):
        model, card = copy.deepcopy(init[0]), init[1]
        init_name = card.name
    elif _models.is_bioimageio_package(init):
        raise CardiosegError(f"{init}: a bioimage.io package predicts but cannot be trained "
                             "further here; start from the model it was exported from "
                             "(NAME.json) or from scratch (--arch)")
    else:
        model, card = _models.load_model(init, "cpu")
        init_name = str(init)
    spec = dict(card.spec)
    if spec.get("in_channels", 1) != 1:
        raise CardiosegError(f"{init_name} expects {spec['in_channels']} input channels; "
                             "training needs a single-channel model")
    current = int(spec["classes"])
    n = wanted or max(current, max(counts, default=0))  # strokes of a new class: a new head
    check_classes(counts, n, transfer_hint=wanted is None)
    if n != current:
        model, spec = _nets.replace_head(model, spec, n)
    if names is None:
        names = list(card.class_names) if n == current else default_class_names(n)
        if wanted is None and n > current:  # the model's classes, then "class k" for new ones
            names = [*card.class_names, *names[current:]]
    return StartModel(model, spec, names, init_name, card)


def learning_rate(config: TrainConfig, start: StartModel) -> float:
    """Return the configured rate, or a large step from scratch and a small one when fine-tuning."""
    if config.lr is not None:
        return float(config.lr)
    return LR_SCRATCH if start.base_card is None else LR_FINETUNE


def decay_factor(config: TrainConfig, step: int, elapsed: float) -> float:
    """Return the share (1 .. 0) of the base learning rates to use at ``step`` after ``elapsed`` s.

    1 unless ``config.lr_decay``; then half a cosine over the run, by the budget spent first.
    """
    if not config.lr_decay:
        return 1.0
    total = config.total_steps
    spent = max(step / total if total else 0.0,
                elapsed / config.time_budget if config.time_budget else 0.0)
    return 0.5 * (1.0 + math.cos(math.pi * min(spent, 1.0)))


def keeps_norm_stats(config: TrainConfig, start: StartModel) -> bool:
    """``keep_norm_stats``, by default True only when fine-tuning from ``init``."""
    return start.base_card is not None if config.keep_norm_stats is None else config.keep_norm_stats


def adapts(config: TrainConfig, start: StartModel) -> bool:
    """Tell whether the run adapts a model to strokes.

    It does when it starts from ``init`` with the classes (and head) that model was trained with
    and keeps its batch-norm statistics (dense-label training, ``keep_norm_stats=False``, learns
    them as from scratch).
    """
    base = start.base_card
    return (base is not None and int(base.spec["classes"]) == int(start.spec["classes"])
            and keeps_norm_stats(config, start))


def prior_weight(config: TrainConfig, start: StartModel) -> float:
    """Return the configured prior weight.

    By default :data:`PRIOR_FINETUNE` when the run :func:`adapts` a model (a new head has nothing
    to keep) and 0 otherwise.
    """
    if config.prior_weight is not None:
        return float(config.prior_weight)
    return PRIOR_FINETUNE if adapts(config, start) else 0.0


def encoder_lr_scale(config: TrainConfig, start: StartModel) -> float:
    """Return the configured encoder learning-rate scale.

    By default :data:`ENCODER_LR_SCALE_FINETUNE` when the run :func:`adapts` a model, else 1.
    """
    if config.encoder_lr_scale is not None:
        return float(config.encoder_lr_scale)
    return ENCODER_LR_SCALE_FINETUNE if adapts(config, start) else 1.0


def later_round(config: TrainConfig, start: StartModel, shapes: Sequence[Sequence[int]]) -> bool:
    """Tell whether the run is another round of strokes on the same images (another Train click).

    It is when it :func:`adapts` a model that was trained from strokes here (the card's
    ``training.method``) on images of exactly these shapes.
    """
    card = start.base_card
    return (card is not None and adapts(config, start)
            and card.training.get("method") == METHOD
            and card.training.get("image_shapes") == [list(shape) for shape in shapes])


def blend_share(config: TrainConfig, later: bool) -> float:
    """Return ``config.blend``, by default :data:`BLEND_CONTINUE` for a :func:`later_round`, else 1."""
    if config.blend is not None:
        return float(config.blend)
    return BLEND_CONTINUE if later else 1.0


def blended(start: dict[str, torch.Tensor], trained: dict[str, torch.Tensor],
            share: float) -> dict[str, torch.Tensor]:
    """Return ``start + share * (trained - start)`` for float tensors; others as trained."""
    return {name: start[name] + share * (value - start[name]) if value.is_floating_point()
            else value for name, value in trained.items()}


def renews_norm_stats(config: TrainConfig, start: StartModel, later: bool) -> bool:
    """Tell whether the run re-estimates batch-norm statistics on its images (``renew_norm_stats``).

    ``later``: the run is a :func:`later_round`.
    """
    if config.renew_norm_stats is not None:
        return config.renew_norm_stats
    return RENEW_NORM_FINETUNE and adapts(config, start) and not later


def probes(config: TrainConfig, start: StartModel, later: bool) -> bool:
    """Tell whether the run starts with a linear probe of the head (``probe_head``).

    By default :data:`PROBE_FINETUNE` when starting from ``init`` with its batch-norm statistics
    kept (the features the probe sees are those fine-tuning starts from), and not in a
    :func:`later_round` (``later``; its head already fits the strokes), else False. Raises
    :class:`CardiosegError` when asked for on a net whose head cannot be probed.
    """
    from .probe_head import head_layer

    supported = head_layer(start.model, start.spec) is not None
    if config.probe_head:
        if not supported:
            raise CardiosegError(f"{start.spec['arch']}: its output layer is not a stride-1 "
                                 "convolution, so probe_head cannot fit it")
        return True
    if config.probe_head is None:
        return (PROBE_FINETUNE and supported and start.base_card is not None
                and keeps_norm_stats(config, start)
                and not later)
    return False


def fixed_norm_layers(config: TrainConfig, start: StartModel) -> list[torch.nn.Module]:
    """Batch-norm layers whose statistics stay fixed (by default only when fine-tuning).

    Fine-tuning with a few strokes keeps the pretrained statistics, so that the strokes correct
    the model instead of overwriting what it learned from dense labels.
    """
    if not keeps_norm_stats(config, start):
        return []
    return [m for m in start.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def freeze_encoder(start: StartModel) -> list[torch.nn.Module]:
    """Stop gradients in the encoder (from the registry row); returns the frozen modules."""
    frozen = _nets.encoder_modules(start.model, start.spec)
    for module in frozen:
        module.requires_grad_(False)
    return frozen
