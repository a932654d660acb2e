"""Running the core's progress generators to completion."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, TypeVar

T = TypeVar("T")


def drain(steps: Generator[Any, Any, T]) -> T:
    """Run a progress generator to the end and return the value it returns."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value
