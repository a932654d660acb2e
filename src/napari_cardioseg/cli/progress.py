"""A dependency-free terminal progress bar shared by the subcommands."""

from __future__ import annotations

import sys
import time
from collections.abc import Generator
from typing import Any, TypeVar

T = TypeVar("T")


class ProgressBar:
    """Draw ``label [#####.....] done/total extra`` on stderr, redrawn in place.

    Parameters
    ----------
    total : int
        Number of steps.
    label : str
        Text before the bar.
    """

    def __init__(self, total: int, label: str = "") -> None:
        self.total = max(int(total), 1)
        self.label = label
        self.start = time.perf_counter()
        self._tty = sys.stderr.isatty()
        self._last = -1.0

    def update(self, done: int, extra: str = "") -> None:
        """Show ``done`` of ``total`` steps (throttled to ~10 redraws a second)."""
        now = time.perf_counter()
        if done < self.total and now - self._last < 0.1:
            return
        self._last = now
        frac = min(max(done / self.total, 0.0), 1.0)
        bar = "#" * int(30 * frac) + "." * (30 - int(30 * frac))
        line = f"{self.label} [{bar}] {done}/{self.total} {now - self.start:5.1f}s {extra}"
        if self._tty:
            sys.stderr.write("\r" + line)
        elif done >= self.total or int(frac * 10) != int(getattr(self, "_decile", -1)):
            sys.stderr.write(line + "\n")
            self._decile = int(frac * 10)
        sys.stderr.flush()

    def close(self) -> None:
        """End the line."""
        if self._tty:
            sys.stderr.write("\n")
            sys.stderr.flush()


def drain_with_bar(steps: Generator[Any, Any, T], label: str, extra: str = "") -> T:
    """Run a core progress generator (items with ``done``/``total``) with a bar; return its result."""
    bar = None
    try:
        while True:
            progress = next(steps)
            bar = bar or ProgressBar(progress.total, label)
            bar.update(progress.done, extra)
    except StopIteration as stop:
        return stop.value
    finally:
        if bar is not None:
            bar.close()
