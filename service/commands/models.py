"""``reid models``: list model folders, check one (manifest fields and every checksum), or import one.

``list`` and ``check`` are torch-free. ``import`` converts a torchreid / fast-reid checkpoint or an ONNX file
into a model folder; it imports the training package (torch, the ``train`` extra) only when it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "list model folders, check their manifests and checksums, or import one (torchreid, ONNX …)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    lst = sub.add_parser("list", help="list the model folders under DIR (default models/)")
    lst.add_argument("dir", nargs="?", type=Path, default=Path("models"))
    chk = sub.add_parser("check", help="validate a model folder: manifest fields and file checksums")
    chk.add_argument("folder", type=Path, nargs="+")
    _add_import_arguments(sub)


IMPORT_DESCRIPTION = """Convert a model people already have into a model folder: a torchreid checkpoint
(--arch), a fast-reid BoT / SBS checkpoint (--config), or an embedding ONNX file. The graph is checked on
rendered pedestrian images at batch 1 and 7 (parity with the source model; shape and finiteness for ONNX)
and the manifest records the source file's sha256. The model is served uncalibrated: run `reid calibrate
--model DIR --root YOUR_DATA` to set its thresholds on your own labelled crops."""


def _add_import_arguments(sub: argparse._SubParsersAction) -> None:
    imp = sub.add_parser(
        "import",
        help="import a torchreid / fast-reid checkpoint or an ONNX file",
        description=IMPORT_DESCRIPTION,
    )
    imp.add_argument("--format", required=True, choices=("torchreid", "fastreid", "onnx"))
    imp.add_argument("--weights", type=Path, required=True, help="the .pth / .pth.tar / .onnx file")
    imp.add_argument("--output", type=Path, required=True, help="the model folder to write (models/NAME)")
    imp.add_argument("--arch", help="torchreid arch, e.g. osnet_x1_0, osnet_ain_x1_0, resnet50_fc512")
    imp.add_argument("--config", type=Path, help="fast-reid config YAML (backbone, IBN, pooling)")
    imp.add_argument("--height", type=int, help="input height (default 256; fastreid: INPUT.SIZE_TEST)")
    imp.add_argument("--width", type=int, help="input width (default 128; fastreid: INPUT.SIZE_TEST)")
    imp.add_argument(
        "--mean", type=float, nargs=3, metavar="M",
        help="RGB mean of 0…1 pixels (default ImageNet; fastreid: MODEL.PIXEL_MEAN / 255)",
    )
    imp.add_argument(
        "--std", type=float, nargs=3, metavar="S",
        help="RGB std of 0…1 pixels (default ImageNet; fastreid: MODEL.PIXEL_STD / 255)",
    )
    imp.add_argument(
        "--output-name", help="ONNX: the embedding output (default: the only 2-D one, else the first)"
    )
    imp.add_argument("--name", help="model name (default: the folder name)")
    imp.add_argument("--version", default="1", help="model version (default 1)")
    imp.add_argument("--force", action="store_true", help="replace an existing output folder")


def run(args: argparse.Namespace) -> int:
    from service.contract.manifest import ManifestError, discover, load

    if args.action == "import":
        from training.importers.command import run_import  # torch: only for this action

        return run_import(args)
    if args.action in (None, "list"):
        models_dir = getattr(args, "dir", Path("models"))
        folders = discover(models_dir)
        if not folders:
            print(f"no model folders (with manifest.json) under {models_dir}")
            return 0
        status = 0
        for folder in folders:
            try:
                m = load(folder)
                metric = m.default_metric
                thr = m.scoring[metric].default_value()
                print(
                    f"{m.model_id:<28} {m.kind:<9} {m.input.height}×{m.input.width} dim={m.embedding_dim:<5} "
                    f"default={metric}"
                    + (f"@{thr:.4g}" if thr is not None else " (uncalibrated)")
                    + f"  {folder}"
                )
            except ManifestError as exc:
                print(f"INVALID  {exc}")
                status = 1
        return status
    status = 0
    for folder in args.folder:
        try:
            m = load(folder)
        except ManifestError as exc:
            print(f"FAIL {exc}")
            status = 1
            continue
        print(f"OK   {folder}: {m.model_id} ({m.kind}), {len(m.files)} files, checksums verified")
    return status
