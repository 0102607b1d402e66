"""``reid models``: list model folders, or check one (manifest fields and every checksum). Torch-free."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "list model folders and check their manifests and checksums"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    lst = sub.add_parser("list", help="list the model folders under DIR (default models/)")
    lst.add_argument("dir", nargs="?", type=Path, default=Path("models"))
    chk = sub.add_parser("check", help="validate a model folder: manifest fields and file checksums")
    chk.add_argument("folder", type=Path, nargs="+")


def run(args: argparse.Namespace) -> int:
    from service.contract.manifest import ManifestError, discover, load

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
                    f"default={metric}" + (f"@{thr:.4g}" if thr is not None else "") + f"  {folder}"
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
