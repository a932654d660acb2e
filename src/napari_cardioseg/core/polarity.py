"""Which way round a start model should see the image: as it is, or with its contrast inverted.

A model trained on EM where mitochondria are dark finds nothing on data of the opposite contrast
(back-scattered instead of transmitted electrons, or an inverted export), and a minute of
strokes cannot teach it that. Its own answer on the painted pixels shows which way round it
works: :func:`check_polarity` scores the start model on the strokes both ways and inverts
(``"invert": true`` in the normalisation recipe, :mod:`core.normalize`) only when that is
clearly better.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from . import nets as _nets
from .normalize import apply_normalization, fit_normalization, inverted, with_invert
from .probe_head import head_accuracy

#: how much better (balanced accuracy on the strokes) the inverted contrast must be to be chosen
POLARITY_MARGIN = 0.1


@dataclass(frozen=True)
class PolarityCheck:
    """The start model's balanced accuracy on the strokes both ways, and the choice.

    Attributes
    ----------
    kept, flipped : float
        Balanced accuracy with the start model's own recipe, and with its contrast inverted;
        :attr:`invert` says whether the second won by :data:`POLARITY_MARGIN`.
    """

    kept: float
    flipped: float

    @property
    def chosen(self) -> float:
        """Return the balanced accuracy with the contrast chosen."""
        return self.flipped if self.invert else self.kept

    @property
    def invert(self) -> bool:
        """Tell whether the inverted contrast won."""
        return self.flipped >= self.kept + POLARITY_MARGIN


def flipped(norm: dict) -> dict:
    """Return ``norm`` with the contrast the other way round."""
    return with_invert(norm, not inverted(norm))


def _stroked(image: np.ndarray, scribble: np.ndarray, net_ndim: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """Return the slices holding strokes (a 2D net on a stack), else the whole image."""
    if net_ndim == 2 and image.ndim == 3:
        keep = np.flatnonzero(np.asarray(scribble).reshape(len(scribble), -1).any(axis=1))
        return image[keep], np.asarray(scribble)[keep]
    return image, np.asarray(scribble)


def check_polarity(model: nn.Module, spec: dict, images: Sequence[np.ndarray],
                   scribbles: Sequence[np.ndarray], norm: dict, *,
                   device: torch.device | str = "cpu", seed: int = 0) -> PolarityCheck | None:
    """Score ``model`` on the painted pixels with ``norm`` and with its contrast inverted.

    Parameters
    ----------
    model, spec
        The start model (unchanged) and its architecture spec.
    images, scribbles : sequence of numpy.ndarray
        Raw images and their scribbles (0 unpainted, 1 background, 2.. classes).
    norm : dict
        The start model's normalisation recipe.
    device : torch.device or str
        Where the net runs.
    seed : int
        Seed of the pixel subset.

    Returns
    -------
    PolarityCheck or None
        None when the model's head cannot be scored this way or fewer than two classes are
        painted.
    """
    net_ndim = _nets.spec_ndim(spec)
    pairs = [_stroked(image, scribble, net_ndim)
             for image, scribble in zip(images, scribbles, strict=True)]
    scores = []
    for recipe in (norm, flipped(norm)):
        # fitted on the whole image, applied to the stroked slices only
        normalized = [apply_normalization(part, fit_normalization(image, recipe))
                      for image, (part, _) in zip(images, pairs, strict=True)]
        score = head_accuracy(model, spec, normalized, [s for _, s in pairs], device=device,
                              seed=seed)
        if score is None:
            return None
        scores.append(score)
    return PolarityCheck(*scores)
