"""The one terminal progress bar of the subcommands, drawn only from what the core yields.

Every long core operation is a generator of :class:`~napari_cardioseg.core.progress.Progress`;
:func:`drain_with_bar` runs one and draws ``done``, ``total``, ``stage`` and ``message`` as they
come, so a total that changes mid-run (an out-of-memory retry with smaller tiles) is shown as it
is. An unknown total (``None``) gives a spinner and a count instead of a bar, and no ETA.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ..core.progress import Progress

T = TypeVar("T")
WIDTH = 30
SPINNER = "|/-\\"


class ProgressBar:
    """``label [#####.....] done/total 12.3s eta 4.5s message`` on stderr, redrawn in place.

    On a terminal the line is redrawn at most ten times a second; otherwise (a log file) a line
    is written at each tenth of the work and when the total changes (every 5 s when the total
    is unknown), and the last state at the end.

    Parameters
    ----------
    total : int or None
        Units of work, or None when unknown.
    label : str
        Text before the bar.
    """

    def __init__(self, total: int | None = None, label: str = "") -> None:
        self.label = label
        self.total = total
        self.start = self._since = time.perf_counter()
        self._done = self._done_since = 0
        self._tty = sys.stderr.isatty()
        self._drawn = -1.0
        self._written: tuple = ()
        self._pending = ""
        self._spins = 0

    def show(self, progress: Progress) -> None:
        """Draw one yielded :class:`Progress`; a new total replaces the old one."""
        total = progress.total
        if total != self.total or progress.done < self._done:  # a new total or a restart
            self.total = None if total is None else int(total)
            self._since, self._done_since = time.perf_counter(), progress.done
        self.update(progress.done, getattr(progress, "message", ""))

    def update(self, done: int, extra: str = "") -> None:
        """Show ``done`` units of the current total and a message after it."""
        now = time.perf_counter()
        self._done = done
        finished = self.total is not None and done >= self.total
        if self._tty and not finished and now - self._drawn < 0.1:
            return
        self._drawn = now
        line = self._line(done, extra, now)
        if self._tty:
            sys.stderr.write("\r\033[K" + line)
        else:
            key = self._log_key(done, now)
            if key == self._written:
                self._pending = line
                return
            self._written, self._pending = key, ""
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def _log_key(self, done: int, now: float) -> tuple:
        """Log lines are written when this changes: each tenth and new total, or every 5 s."""
        if not self.total:
            return (None, int((now - self.start) // 5))
        return (self.total, int(10 * done / self.total))

    def _line(self, done: int, extra: str, now: float) -> str:
        elapsed = f"{now - self.start:5.1f}s"
        if not self.total:
            self._spins += 1
            spin = SPINNER[self._spins % len(SPINNER)]
            return " ".join(t for t in (self.label, spin, str(done), elapsed, extra) if t)
        frac = min(max(done / self.total, 0.0), 1.0)
        bar = "#" * int(WIDTH * frac) + "." * (WIDTH - int(WIDTH * frac))
        eta = ""
        if self._done_since < done < self.total:
            rate = (done - self._done_since) / max(now - self._since, 1e-9)
            eta = f"eta {(self.total - done) / rate:.1f}s"
        parts = (self.label, f"[{bar}]", f"{done}/{self.total}", elapsed, eta, extra)
        return " ".join(t for t in parts if t)

    def close(self) -> None:
        """End the line (in a log, write the last state if it was held back)."""
        if self._tty:
            sys.stderr.write("\n")
        elif self._pending:
            sys.stderr.write(self._pending + "\n")
        sys.stderr.flush()


def drain_with_bar(steps: Generator[Progress, Any, T], label: str) -> T:
    """Run a core progress generator with a bar on stderr; return its result."""
    bar = ProgressBar(label=label)
    try:
        while True:
            bar.show(next(steps))
    except StopIteration as stop:
        return stop.value
    finally:
        bar.close()
