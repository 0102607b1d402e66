"""``reid export``: write a parity-gated, calibrated model folder from a training checkpoint."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from training.commands.common import from_args
from training.engine import progress

HELP = "export a checkpoint to ONNX with a parity-checked, calibrated manifest"
DESCRIPTION = (
    "Export RUN/checkpoint.pt to a model folder: embedding.onnx (input `images` N×3×H×W float32 → "
    "`embeddings` N×D, dynamic N), plus verification_head.onnx and head_weights.npz for Siamese models, and "
    "manifest.json. The export fails unless onnxruntime matches PyTorch on real images from the run's "
    "dataset at batch 1 and 7 (max |Δ| ≤ 1e-4 for fp32, cosine ≥ 0.999 for fp16). Thresholds for every "
    "scoring mode are calibrated with the exported graph on the dataset's query + gallery identities, "
    "which are disjoint from training (at --target-fmr and at the equal-error rate)."
)


def _kv(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True, help="RUN/checkpoint.pt from `reid train`")
    parser.add_argument("--output", type=Path, required=True, help="model folder to write, e.g. models/NAME")
    parser.add_argument("--fp16", action="store_true", help="store float16 weights (inputs stay float32)")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    parser.add_argument("--name", help="model name (default: the output folder's name)")
    parser.add_argument("--version", default="1", help="model version string (default 1)")
    parser.add_argument(
        "--calibrate-dataset", dest="dataset", help="dataset for parity + calibration (default: the run's)"
    )
    parser.add_argument("--calibrate-root", dest="root", type=Path, help="its root (default: the run's)")
    parser.add_argument(
        "--dataset-option",
        action="append",
        type=_kv,
        default=[],
        metavar="KEY=VALUE",
        help="dataset loader option (repeatable), e.g. split_index=0",
    )
    parser.add_argument(
        "--target-fmr", type=float, default=None,
        help="false-match rate of the default threshold (default: the run's target_fmr, normally 1e-3)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for the calibration pairs")
    progress.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from training.export.exporter import ExportOptions, export_checkpoint

    progress.configure_from_args(args)

    manifest = export_checkpoint(
        from_args(ExportOptions, args, dataset_options=dict(args.dataset_option))
    )
    summary = {
        "model": manifest.model_id,
        "kind": manifest.kind,
        "output": str(args.output),
        "files": {role: entry.file for role, entry in manifest.files.items()},
        "parity": manifest.parity.model_dump(mode="json"),
        "thresholds": {
            metric: {k: t.model_dump() for k, t in mode.thresholds.items()}
            for metric, mode in manifest.scoring.items()
        },
    }
    print(json.dumps(summary, indent=2))
    return 0
