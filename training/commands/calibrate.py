"""``reid calibrate``: set a served model's thresholds on your own labelled images.

Example::

    reid calibrate --model models/osnet --root data/my-cameras --dataset folder --target-fmr 1e-3

Every scoring mode of the folder is re-calibrated through the service's runtime on the dataset's test split
(query + gallery); the manifest becomes a new version recording the old thresholds and the data's counts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "re-derive a model folder's thresholds on your own labelled images (new manifest version)"
DESCRIPTION = (
    "Embed the labelled query + gallery images of a dataset (any loader, e.g. the 'folder' layout "
    "<root>/<person>/<camera>_<name>.jpg) with the model folder's ONNX sessions as the service runs them, "
    "place every scoring mode's thresholds (at --target-fmr and the EER) on same-person pairs across cameras "
    "and different-person pairs, and write them into the manifest as a new version that records the old "
    "thresholds and the data's counts. Warns when there are too few different-person pairs for the FMR."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``calibrate`` arguments to ``parser``."""
    parser.add_argument("--model", type=Path, required=True, metavar="DIR", help="the model folder")
    parser.add_argument("--root", type=Path, required=True, help="the labelled images")
    parser.add_argument("--dataset", default="folder", help="dataset loader (default: folder)")
    parser.add_argument(
        "--option", "-o", action="append", default=[], metavar="KEY=VALUE",
        help="dataset loader option, e.g. seed=1 (repeatable)",
    )
    parser.add_argument("--target-fmr", type=float, default=1e-3, help="default threshold's FMR (1e-3)")
    parser.add_argument("--max-negatives", type=int, default=200_000, help="different-person pairs sampled")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pair sampling")
    parser.add_argument("--batch-size", type=int, default=64)


def run(args: argparse.Namespace) -> int:
    """Calibrate and print what changed as JSON; warnings go to stderr."""
    from training.commands.evaluate import parse_options
    from training.data.datasets import build_dataset
    from training.evaluation.recalibrate import recalibrate_folder

    if not 0.0 < args.target_fmr < 1.0:
        raise ValueError(f"--target-fmr must be in (0, 1), got {args.target_fmr}")
    options = parse_options(args.option)
    split = build_dataset(args.dataset, args.root, **options)
    result = recalibrate_folder(
        args.model, split, dataset_label=f"{args.dataset} ({args.root})", target_fmr=args.target_fmr,
        max_negatives=args.max_negatives, seed=args.seed, batch_size=args.batch_size,
    )
    for warning in result.warnings:
        print(f"reid calibrate: warning: {warning}", file=sys.stderr)
    manifest = result.manifest
    record = manifest.calibrations[-1]
    summary = {
        "model": manifest.model_id,
        "previous_version": record.previous_version,
        "images": record.images,
        "identities": record.identities,
        "pairs": result.counts,
        "thresholds": {
            name: {"old": record.previous[name].default_value(), "new": mode.default_value()}
            for name, mode in manifest.scoring.items()
        },
    }
    print(json.dumps(summary, indent=2))
    return 0
