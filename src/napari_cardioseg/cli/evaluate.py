"""``cardioseg evaluate``: Dice, Jaccard, precision, recall, specificity per class."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` subcommand."""
    p = subparsers.add_parser(
        "evaluate", description="Print Dice, Jaccard, precision, recall and specificity per class.",
    )
    p.add_argument("prediction", type=Path, help="predicted labels (TIFF)")
    p.add_argument("ground_truth", type=Path, help="ground-truth labels (TIFF, same shape)")
    p.add_argument("--ignore", type=Path, help="mask of pixels to leave out (nonzero = ignored)")
    p.add_argument("--binary", action="store_true",
                   help="foreground vs background instead of class by class")
    p.add_argument("-o", "--output", type=Path, help="also write the table as CSV")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Read the images, print the metrics table, optionally write it."""
    from ..core.io import read_single
    from ..core.metrics import evaluate, format_table
    from ..core.writes import check_outputs

    check_outputs([args.output], [args.prediction, args.ground_truth, args.ignore])
    pred = read_single(args.prediction, "prediction").data
    gt = read_single(args.ground_truth, "ground truth").data
    ignore = read_single(args.ignore, "ignore mask").data if args.ignore else None
    table = evaluate(pred, gt, ignore=ignore, binary=args.binary)
    print(format_table(table))
    if args.output:
        table.write_csv(args.output)
    return 0
