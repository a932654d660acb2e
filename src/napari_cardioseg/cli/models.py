"""``cardioseg models``: list pretrained and user models."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``models`` subcommand."""
    p = subparsers.add_parser("models", description="List pretrained models (shipped) and user models "
                              "($CARDIOSEG_HOME/models or ~/.cardioseg/models).")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print one row per model: name, source, architecture, classes, pixel size, path."""
    from ..core.models import broken_models, list_models, user_models_dir

    entries = list_models()
    rows = [("NAME", "SOURCE", "ARCH", "CLASSES", "PIXEL SIZE (µm)", "PATH")]
    for e in entries:
        size = "x".join(f"{v:g}" for v in e.card.pixel_size) if e.card.pixel_size else "-"
        rows.append((e.name, e.source, e.card.spec["arch"], ",".join(e.card.class_names[1:]),
                     size, str(e.path)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1])
    for path, reason in broken_models():
        print(f"broken: {path}: {reason}")
    if not entries:
        print(f"no models yet; trained models are saved in {user_models_dir()}")
    return 0
