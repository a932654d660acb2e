"""What a training session does before its first step when it adapts a pretrained model.

Four checks of the start model against the strokes, each kept only when it helps: the contrast
polarity (:mod:`.polarity`), the batch-norm statistics renewed on the new images
(:func:`adapt.adapt_norm_stats`), and the head fitted to the painted pixels with the features
fixed (:mod:`.probe_head`); the prior's teacher follows the model through each. They are methods
of :class:`FirstRoundSteps`, a mixin of :class:`train.TrainSession` that reads the session's
state (the model, its normalised images and strokes, the options).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from . import adapt as _adapt
from . import polarity as _polarity
from . import probe_head as _probe
from .train_config import PROBE_BELOW, TrainConfig
from .train_init import StartModel, adapts

if TYPE_CHECKING:
    from collections.abc import Sequence

NORM_WINDOWS = 32  # random windows that renew_norm_stats re-estimates the statistics on


class FirstRoundSteps:
    """The start model's checks against the strokes (mixed into :class:`train.TrainSession`)."""

    config: TrainConfig
    start: StartModel
    model: torch.nn.Module
    spec: dict
    device: torch.device
    images: Sequence[np.ndarray]
    scribbles: Sequence[np.ndarray]
    normalized: list[np.ndarray]
    held: list[np.ndarray] | None
    prior: _adapt.Prior | None
    _own_teacher: bool
    later_round: bool
    probe: bool
    patch: tuple[int, ...]
    batch: int
    polarity: _polarity.PolarityCheck | None
    probe_fit: _probe.ProbeFit | None
    _accuracy: float | None

    def _fit_scribbles(self) -> list[np.ndarray]:
        """Return the scribbles with held-out strokes left out."""
        if self.held is None:
            return list(self.scribbles)
        return [np.where(held, 0, s) for s, held in zip(self.scribbles, self.held, strict=True)]

    def _choose_normalization(self) -> dict:
        """Return the start model's recipe, inverted when ``polarity`` says so."""
        norm = self.start.normalization
        if self.config.polarity == "invert":
            return _polarity.flipped(norm)
        if (self.config.polarity == "auto" and adapts(self.config, self.start)
                and not self.later_round):  # the first round chose; corrections would mislead
            self.polarity = _polarity.check_polarity(
                self.model, self.spec, self.images, self._fit_scribbles(), norm,
                device=self.device, seed=self.config.seed)
            if self.polarity is not None and self.polarity.invert:
                return _polarity.flipped(norm)
        return norm

    def _wants_probe(self) -> bool:
        """Tell whether to probe the head now.

        When asked (``probe_head=True``) always; by default only when the start model's own
        answer on the strokes (balanced accuracy) is below :data:`PROBE_BELOW`, or the run
        does not adapt a model (a new head).
        """
        if not self.probe:
            return False
        if self.config.probe_head or not adapts(self.config, self.start):
            return True
        score = self._stroke_accuracy()
        return score is None or score < PROBE_BELOW

    def _probe_head(self) -> _probe.ProbeFit | None:
        """Fit the head to the painted pixels (held-out strokes left out), the features fixed."""
        scribbles = self._fit_scribbles()
        base = self.start.base_card  # a head trained for these classes anchors the fit
        anchor = base is not None and int(base.spec["classes"]) == int(self.spec["classes"])
        self.probe_fit = _probe.probe_head(self.model, self.spec, self.normalized, scribbles,
                                           device=self.device, anchor=anchor,
                                           seed=self.config.seed)
        if self.probe_fit is not None:
            self._follow_teacher()
        return self.probe_fit

    def _follow_teacher(self) -> None:
        """Make the model as it is now the prior's teacher (unless the caller gave a teacher)."""
        if self.prior is not None and self._own_teacher:
            self.prior = _adapt.Prior(self.model, self.prior.weight)
            self.prior.teacher.to(self.device)

    def _stroke_accuracy(self) -> float | None:
        """Balanced accuracy of the model's own answer on the strokes (computed once, then kept)."""
        if self._accuracy is None:
            self._accuracy = (self.polarity.chosen if self.polarity is not None
                              else self._head_accuracy())
        return self._accuracy

    def _head_accuracy(self) -> float | None:
        """Balanced accuracy of the model as it is now on the strokes (held-out ones left out)."""
        return _probe.head_accuracy(self.model, self.spec, self.normalized, self._fit_scribbles(),
                                    device=self.device, seed=self.config.seed)

    def _renew_norm_stats(self) -> str | None:
        """Re-estimate the batch-norm statistics on random windows of the images; returns a note.

        Asked for (``renew_norm_stats=True``), always. By default only when the start model
        misses the strokes (balanced accuracy below :data:`PROBE_BELOW`), and the new statistics
        are kept only when they answer the strokes better.
        """
        if not _adapt.norm_layers(self.model):
            return None
        before = None if self.config.renew_norm_stats else self._stroke_accuracy()
        if before is not None and before >= PROBE_BELOW:
            return None
        saved = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        windows = _adapt.random_windows(self.normalized, self.patch, NORM_WINDOWS,
                                        np.random.default_rng(self.config.seed + 2))
        _adapt.adapt_norm_stats(self.model, torch.from_numpy(windows[:, None]).to(self.device),
                                self.batch)
        note = "model recalibrated to these images (batch-norm statistics renewed)"
        if before is not None:
            after = self._head_accuracy()
            if after is None or after <= before:
                self.model.load_state_dict(saved)
                return None
            self._accuracy = after
            note += f" (stroke accuracy {before:.2f} -> {after:.2f})"
        self._follow_teacher()
        return note

    def _polarity_note(self) -> str:
        """``contrast inverted (...)`` when the polarity check inverted it, else empty."""
        check = self.polarity
        if check is None or not check.invert:
            return ""
        return (f"contrast inverted (the start model's accuracy on the strokes "
                f"{check.kept:.2f} -> {check.flipped:.2f})")

