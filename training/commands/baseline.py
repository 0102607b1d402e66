"""``reid baseline``: the colour-histogram baseline, the floor every trained model is compared with.

Example::

    reid synth --out data/synth && reid baseline --root data/synth

Prints one JSON object: rank-1/5/10/20, mAP and mINP (fractions in 0..1), query / gallery counts and the
histogram settings. Torch-free: numpy and Pillow only.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from training.data.datasets import build_dataset
from training.evaluation.histogram import DEFAULT_BINS, DEFAULT_STRIPES, evaluate_histogram_baseline

HELP = "evaluate the colour-histogram baseline (the floor every trained model is compared with)"
DESCRIPTION = (
    "Describe every query and gallery image by per-stripe HSV histograms (square-rooted, L1-normalised, on "
    "the raw image), rank the gallery by cosine distance and score the ranking with the standard protocol "
    "(same-person same-camera gallery images removed; junk ignored). Prints JSON."
)


def _bins(text: str) -> tuple[int, int, int]:
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(
            f"bins must look like 16x4x4 (hue x saturation x value), got {text!r}"
        )
    return int(parts[0]), int(parts[1]), int(parts[2])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``baseline`` arguments to ``parser``."""
    parser.add_argument(
        "--dataset", default="market1501", help="registered dataset name (default: market1501)"
    )
    parser.add_argument("--root", type=Path, required=True, help="dataset root folder")
    default_bins = "x".join(str(b) for b in DEFAULT_BINS)
    parser.add_argument(
        "--bins", type=_bins, default=DEFAULT_BINS, help=f"HSV bins, HxSxV (default: {default_bins})"
    )
    parser.add_argument(
        "--stripes",
        type=int,
        default=DEFAULT_STRIPES,
        help=f"horizontal stripes (default: {DEFAULT_STRIPES})",
    )


def run(args: argparse.Namespace) -> int:
    """Evaluate the baseline and print the JSON result."""
    start = time.perf_counter()
    split = build_dataset(args.dataset, args.root)
    result = evaluate_histogram_baseline(split, bins=args.bins, stripes=args.stripes)
    metrics = result.as_dict()
    report = {
        "dataset": args.dataset,
        "root": str(args.root),
        "method": "hsv_histogram",
        "bins": list(args.bins),
        "stripes": args.stripes,
        **{k: round(v, 4) for k, v in metrics.items() if not k.startswith("num_")},
        "num_query": len(split.query),
        "num_gallery": len(split.gallery),
        "num_valid_queries": result.num_valid_queries,
        "num_skipped_queries": result.num_skipped_queries,
        "seconds": round(time.perf_counter() - start, 2),
    }
    print(json.dumps(report, indent=2))
    return 0
