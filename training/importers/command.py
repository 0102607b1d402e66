"""``reid models import``: dispatch on ``--format`` (the parser lives in :mod:`service.commands.models`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from service.contract.manifest import ModelManifest
from training.importers.folder import IMAGENET_MEAN, IMAGENET_STD, ImportOptions

#: The input contract of torchreid's zoo and of most ONNX re-ID files: 256×128, ImageNet statistics.
INPUT_DEFAULTS: dict[str, Any] = {"height": 256, "width": 128, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}


def options(args: argparse.Namespace, defaults: dict[str, Any] | None = None) -> ImportOptions:
    """The format-independent options: command-line values over the format's ``defaults``."""
    values = {**INPUT_DEFAULTS, **(defaults or {})}
    for name in ("height", "width", "mean", "std"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    for name in ("height", "width"):
        if not 8 <= values[name] <= 2048:
            raise ValueError(f"--{name} must be in [8, 2048], got {values[name]}")
    if any(s <= 0 for s in values["std"]):
        raise ValueError(f"--std values must be > 0, got {list(values['std'])}")
    return ImportOptions(
        weights=Path(args.weights),
        output=Path(args.output),
        height=int(values["height"]),
        width=int(values["width"]),
        mean=tuple(values["mean"]),
        std=tuple(values["std"]),
        name=args.name,
        version=args.version,
        force=args.force,
    )


def import_model(args: argparse.Namespace) -> ModelManifest:
    """Run the importer of ``args.format``; returns the written manifest."""
    if not Path(args.weights).is_file():
        raise FileNotFoundError(f"weights file not found: {args.weights}")
    if args.format == "torchreid":
        from training.importers.torchreid import import_torchreid

        if not args.arch:
            raise ValueError("--format torchreid needs --arch (e.g. osnet_x1_0)")
        return import_torchreid(args.arch, options(args))
    if args.format == "fastreid":
        from training.importers.fastreid import import_fastreid, input_defaults, read_config

        if not args.config:
            raise ValueError("--format fastreid needs --config (the checkpoint's config YAML)")
        config = Path(args.config)
        return import_fastreid(config, options(args, input_defaults(read_config(config))))
    from training.importers.onnx_file import import_onnx

    return import_onnx(options(args), output_name=args.output_name)


def run_import(args: argparse.Namespace) -> int:
    """Import, then print one line: what was written and how it was checked (or one error line)."""
    from training.export.onnx_io import ExportError

    try:
        manifest = import_model(args)
    except (ExportError, FileExistsError) as exc:
        print(f"reid models import: error: {exc}", file=sys.stderr)
        return 2
    parity = manifest.parity
    checks = ", ".join(
        [f"{k} max|Δ|/max|ref| {o.max_rel_diff:.2g} cosine {o.min_cosine}" for k, o in parity.outputs.items()]
        + [f"{k} {v:.3g}" for k, v in parity.measured.items()]
    )
    print(
        f"imported {manifest.provenance.source.file if manifest.provenance.source else args.weights} → "
        f"{args.output} ({manifest.model_id}, {manifest.input.height}×{manifest.input.width}, "
        f"dim {manifest.embedding_dim}; {checks}); uncalibrated: run `reid calibrate --model {args.output} "
        "--root YOUR_DATA` to set thresholds"
    )
    return 0
