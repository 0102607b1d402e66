"""``reid models import``: dispatch on ``--format`` (the parser lives in :mod:`service.commands.models`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from service.contract.manifest import ModelManifest
from training.importers.folder import IMAGENET_MEAN, IMAGENET_STD, ImportOptions


def options(args: argparse.Namespace) -> ImportOptions:
    """The format-independent options of the command line."""
    for name in ("height", "width"):
        value = getattr(args, name)
        if not 8 <= value <= 2048:
            raise ValueError(f"--{name} must be in [8, 2048], got {value}")
    std = tuple(args.std) if args.std else IMAGENET_STD
    if any(s <= 0 for s in std):
        raise ValueError(f"--std values must be > 0, got {list(std)}")
    return ImportOptions(
        weights=Path(args.weights),
        output=Path(args.output),
        height=args.height,
        width=args.width,
        mean=tuple(args.mean) if args.mean else IMAGENET_MEAN,  # type: ignore[arg-type]
        std=std,  # type: ignore[arg-type]
        name=args.name,
        version=args.version,
        force=args.force,
    )


def import_model(args: argparse.Namespace) -> ModelManifest:
    """Run the importer of ``args.format``; returns the written manifest."""
    opts = options(args)
    if not opts.weights.is_file():
        raise FileNotFoundError(f"weights file not found: {opts.weights}")
    if args.format == "torchreid":
        from training.importers.torchreid import import_torchreid

        if not args.arch:
            raise ValueError("--format torchreid needs --arch (e.g. osnet_x1_0)")
        return import_torchreid(args.arch, opts)
    if args.format == "fastreid":
        from training.importers.fastreid import import_fastreid

        if not args.config:
            raise ValueError("--format fastreid needs --config (the checkpoint's config YAML)")
        return import_fastreid(Path(args.config), opts)
    from training.importers.onnx_file import import_onnx

    return import_onnx(opts, output_name=args.output_name)


def run_import(args: argparse.Namespace) -> int:
    """Import, then print one line: what was written and how it was checked (or one error line)."""
    from training.export.onnx_io import ExportError

    try:
        manifest = import_model(args)
    except (ExportError, FileExistsError) as exc:
        print(f"reid models import: error: {exc}", file=sys.stderr)
        return 2
    checks = ", ".join(f"{k} {v:.3g}" for k, v in manifest.parity.items() if k != "fp16")
    print(
        f"imported {manifest.provenance.source.file if manifest.provenance.source else args.weights} → "
        f"{args.output} ({manifest.model_id}, {manifest.input.height}×{manifest.input.width}, "
        f"dim {manifest.embedding_dim}; {checks}); uncalibrated: run `reid calibrate --model {args.output} "
        "--root YOUR_DATA` to set thresholds"
    )
    return 0
