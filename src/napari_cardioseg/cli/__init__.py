"""The ``cardioseg`` command: a thin face on the core, one module per subcommand.

Each subcommand module defines ``register(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed arguments and returning an exit code. Only the module
of the subcommand being run is imported (``cardioseg --help`` imports none), so the command
starts fast; the one-line summaries of ``cardioseg --help`` live in :data:`SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence

from ..core.device import limit_torch_threads
from ..core.errors import CardiosegError

#: subcommand -> summary shown by ``cardioseg --help``
SUBCOMMANDS = {
    "enhance": "enhance contrast (AGCWD, extended AGCWD, percentile stretch)",
    "predict": "segment an image with a model (sliding window, CPU or GPU)",
    "train": "train a model from scribbles (0 unlabelled, 1 background, 2.. classes)",
    "measure": "measure Z-disks or 3D shapes; writes STATS.csv and STATS_summary.csv",
    "report": "one-page HTML/PNG report of a label image: overlay, histograms, summary numbers",
    "evaluate": "compare predicted labels with ground truth (per-class metrics)",
    "models": "list pretrained and user models",
    "export": "export a model as a bioimage.io package (.zip) for other tools",
    "demo": "open napari on the sample data (or run the pipeline headless)",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Build the top-level parser; only ``command``'s module is imported to register its options.

    The other subcommands are listed with their summaries but get no options, so parse
    only arguments meant for ``command`` (:func:`main` passes the first argument).
    """
    parser = argparse.ArgumentParser(
        prog="cardioseg",
        description="Segment and measure Z-disks and mitochondria (napari-cardioseg).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, summary in SUBCOMMANDS.items():
        if name == command:
            importlib.import_module(f".{name}", __name__).register(sub)
        else:
            sub.add_parser(name, help=summary)
    return parser


def _warning_line(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  line: str | None = None) -> str:
    """Format a warning as the CLI shows it: ``warning: MESSAGE`` (no file, line or class)."""
    return f"warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; errors print one line to stderr and return a non-zero code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    previous_format, warnings.formatwarning = warnings.formatwarning, _warning_line
    try:
        limit_torch_threads()
        return int(args.func(args) or 0)
    except CardiosegError as exc:
        print(f"cardioseg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cardioseg {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = previous_format


if __name__ == "__main__":
    sys.exit(main())
