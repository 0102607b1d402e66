"""``reid synth``: write a synthetic pedestrian dataset in the Market-1501 layout.

Examples::

    reid synth --out data/synth                        # the default benchmark (about 8,200 images)
    reid synth --out /tmp/tiny --identities 6 --cameras 2 --images-per-camera 2 --seed 3

Torch-free: numpy and Pillow only. The output is read with ``build_dataset("market1501", out)``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from training.commands.common import from_args
from training.data.synthetic import SynthConfig, generate_market_dataset
from training.engine import progress

HELP = "write a synthetic pedestrian dataset in the Market-1501 layout"
DESCRIPTION = (
    "Draw synthetic pedestrians (body proportions, hair, garments with patterns, shoes, bags; seen from the "
    "front, back or side) through cameras with their own scene, colour cast, illumination, blur, noise, "
    "JPEG quality and occluders, and write them as OUT/bounding_box_train, OUT/query and "
    "OUT/bounding_box_test with Market-1501 names (PPPP_cCs1_FFFFFF_01.jpg). Persons 1..T are the training "
    "identities; every test identity gives one query image per camera, its other images go to the gallery, "
    "with about 5% distractors (person 0000, one-off people) and 2% junk crops (person -1). "
    "Default benchmark: 500 identities (300 train + 200 test), 4 cameras, 4 images per camera, 128x64: "
    "4,800 train, 800 query, 2,568 gallery images. The same seed gives byte-identical files whatever "
    "--workers."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``synth`` arguments to ``parser``."""
    defaults = SynthConfig()
    parser.add_argument("--out", type=Path, required=True, help="output dataset root")
    parser.add_argument("--identities", type=int, default=defaults.identities, help="persons, train + test")
    parser.add_argument(
        "--train-identities", type=int, default=None, help="persons 1..T used for training (default: 60%%)"
    )
    parser.add_argument("--cameras", type=int, default=defaults.cameras, help="cameras, 2..9")
    parser.add_argument(
        "--images-per-camera",
        type=int,
        default=defaults.images_per_camera,
        help="images per person per camera",
    )
    parser.add_argument("--height", type=int, default=defaults.height, help="image height in pixels")
    parser.add_argument("--width", type=int, default=defaults.width, help="image width in pixels")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of everything")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: min(2, CPUs))")
    parser.add_argument(
        "--overwrite", action="store_true", help="delete the images already in OUT's three subset folders"
    )
    progress.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Generate the dataset and print the summary as JSON."""
    progress.configure_from_args(args)
    config = from_args(SynthConfig, args)
    summary = generate_market_dataset(args.out, config=config, workers=args.workers, overwrite=args.overwrite)
    print(json.dumps({"root": str(args.out), **summary}, indent=2))
    return 0
