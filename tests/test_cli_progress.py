"""The CLI bar draws exactly what the core yields: a new total replaces the old, None spins."""

from __future__ import annotations

from napari_cardioseg.cli.progress import drain_with_bar
from napari_cardioseg.core.progress import Progress


def steps(yielded):
    yield from yielded
    return "result"


def test_bar_follows_a_changing_total(capsys):
    yielded = [Progress(0, 4, "predict"), Progress(2, 4, "predict"),
               Progress(0, 10, "predict", "out of cuda memory: retrying with tiles of 256×256 px"),
               Progress(5, 10, "predict"), Progress(5, 10, "predict", "same tenth: held back"),
               Progress(10, 10, "predict")]
    assert drain_with_bar(steps(yielded), "predict (m)") == "result"
    lines = capsys.readouterr().err.splitlines()  # not a terminal: a line per tenth or new total
    assert [line.split()[3] for line in lines] == ["0/4", "2/4", "0/10", "5/10", "10/10"]
    assert lines[-1].startswith("predict (m) [" + "#" * 30 + "] 10/10")
    assert "retrying with tiles of 256×256 px" in lines[2]
    assert "eta" in lines[3] and "eta" not in lines[-1]


def test_unknown_total_counts_without_eta(capsys):
    yielded = [Progress(0, None, "train"), Progress(3, None, "train", "loss 0.9"),
               Progress(7, None, "train", "loss 0.5")]
    drain_with_bar(steps(yielded), "train")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2  # the first, then (within 5 s) only the last state at the end
    assert "[" not in lines[-1] and " 7 " in lines[-1] and lines[-1].endswith("loss 0.5")
    assert all("eta" not in line for line in lines)
