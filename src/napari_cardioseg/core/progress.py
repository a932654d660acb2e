"""The one progress type every long-running core generator yields, and running such generators.

A long operation is a generator: it yields :class:`Progress` (or a subclass that adds a payload,
such as a training step's loss and preview) and returns its result, so the GUI, the CLI and the
tests drive the same code. Faces draw their bars only from what is yielded (``done``, ``total``,
``stage``, ``message``) and never recompute totals themselves.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """How far a long operation has got.

    Attributes
    ----------
    done : int
        Units of work finished so far (tiles, steps, objects, blocks, files...).
    total : int or None
        Units of work in all, or None when unknown (e.g. training to a time budget).
        It may change between yields (after an out-of-memory retry with smaller tiles, say):
        faces use the latest value.
    stage : str
        Short name of the current stage (``"predict"``, ``"train"``, ``"measure"``...).
    message : str
        Optional human-readable detail for a status line.
    """

    done: int
    total: int | None
    stage: str = ""
    message: str = ""

    @property
    def fraction(self) -> float | None:
        """``done / total`` clipped to [0, 1], or None when the total is unknown or zero."""
        if not self.total:
            return None
        return min(1.0, max(0.0, self.done / self.total))


def drain(steps: Generator[Any, Any, T]) -> T:
    """Run a progress generator to the end and return the value it returns."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value
