"""The ``reid`` command.

Every subcommand lives in its own module and is imported only when that subcommand runs (or its ``--help`` is
asked for). The torch-free ones (``serve``, ``models``) live in :mod:`service.commands`, so a serving-only
install (``pip install ".[cpu]"``, no torch) owns the command; the rest live in :mod:`training.commands`
and need the ``train`` extra. ``reid --help`` imports no command module.

A command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

#: subcommand -> module that implements it. Order is the order shown in ``reid --help``.
COMMANDS: dict[str, str] = {
    "synth": "training.commands.synth",
    "datasets": "training.commands.datasets",
    "baseline": "training.commands.baseline",
    "recipes": "training.commands.recipes",
    "train": "training.commands.train",
    "explore-filters": "training.commands.explore_filters",
    "eval": "training.commands.evaluate",
    "calibrate": "training.commands.calibrate",
    "export": "training.commands.export",
    "models": "service.commands.models",
    "serve": "service.commands.serve",
    "gallery": "service.commands.gallery",
    "bench": "training.commands.bench",
}

#: one-line summaries, kept here so that ``reid --help`` imports no command module.
SUMMARIES: dict[str, str] = {
    "explore-filters": "select the discriminative smoothed filters of a multidepth model (paper 001)",
    "synth": "write a synthetic pedestrian dataset in the Market-1501 layout",
    "datasets": "list the supported datasets, or show the counts of one on disk",
    "baseline": "evaluate the colour-histogram baseline (the floor every trained model is compared with)",
    "recipes": "list the training recipes",
    "train": "train a model from a recipe",
    "eval": "evaluate a checkpoint or a served model folder on a dataset (CMC, mAP, mINP, plots)",
    "calibrate": "re-derive a model folder's thresholds on your own labelled images (new manifest version)",
    "export": "export a checkpoint to ONNX with a parity-checked manifest",
    "models": "list model folders, check their manifests and checksums, or import one (torchreid, ONNX …)",
    "serve": "run the REST service",
    "gallery": "copy a gallery between stores (embedded data dir <-> milvus)",
    "bench": "run a benchmark and print JSON",
}


def _load(name: str) -> ModuleType:
    return importlib.import_module(COMMANDS[name])


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Build the top-level parser; only ``command``'s module is imported (if given)."""
    parser = argparse.ArgumentParser(
        prog="reid",
        description="ReID Service: person re-identification — train, evaluate, export and serve.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        help_line = SUMMARIES[name]
        if name == command:
            module = _load(name)
            sp = sub.add_parser(name, help=help_line, description=getattr(module, "DESCRIPTION", help_line))
            module.add_arguments(sp)
            sp.set_defaults(_run=module.run)
        else:
            sub.add_parser(name, help=help_line, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``reid`` console script."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in args_list if not a.startswith("-")), None)
    if command not in COMMANDS:
        command = None
    parser = build_parser(command)
    args = parser.parse_args(args_list)
    if command is None or not hasattr(args, "_run"):
        parser.print_help()
        return 0 if not args_list or args_list[0] in ("-h", "--help") else 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (ValueError, FileNotFoundError) as exc:
        # User errors (bad root, unknown name, bad manifest): one clear line, no traceback.
        print(f"reid {command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
