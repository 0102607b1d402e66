"""``reid gallery copy --from SRC --to DST``: move a gallery between the embedded store and Milvus.

SRC and DST are each ``milvus`` (the ``REID_MILVUS_*`` settings) or an embedded gallery's data dir. The active
model (``REID_MODELS_DIR`` / ``REID_MODEL`` or the flags) decides the vectors copied; run it with the service
stopped (the embedded data dir is locked by a running ``reid serve``). Prints the counts and the sample check
as JSON and exits 1 when they disagree.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "copy a gallery between stores (embedded data dir <-> milvus)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``reid gallery``."""
    sub = parser.add_subparsers(dest="action", required=True)
    copy = sub.add_parser(
        "copy", help="copy every entry (ids, labels, metadata, embeddings) into an empty store"
    )
    copy.add_argument(
        "--from", dest="source", required=True, help="'milvus' or an embedded gallery's data dir"
    )
    copy.add_argument("--to", dest="dest", required=True, help="'milvus' or an embedded gallery's data dir")
    copy.add_argument("--models-dir", type=Path, default=None, help="model repository (REID_MODELS_DIR)")
    copy.add_argument("--model", default=None, help="active model folder name (REID_MODEL)")
    copy.add_argument(
        "--sample", type=int, default=20, help="entries whose searches are compared (default 20)"
    )


def run(args: argparse.Namespace) -> int:
    """Copy; returns 0 when counts and sampled searches agree."""
    from service.config import Settings
    from service.gallery.copy import copy_gallery
    from service.gallery.factory import STORES, create_gallery
    from service.gallery.protocol import GalleryStore
    from service.inference.sessions import ModelRuntime
    from service.state import ServiceState, gallery_spec

    overrides: dict[str, object] = {"device": "cpu", "store_images": False, "warmup": False}
    if args.models_dir is not None:
        overrides["models_dir"] = args.models_dir
    if args.model is not None:
        overrides["model"] = args.model
    settings = Settings().model_copy(update=overrides)
    folder = ServiceState(settings=settings, metrics=None)._active_folder()  # type: ignore[arg-type]
    spec = gallery_spec(ModelRuntime.load(settings.models_dir / folder, device="cpu"))

    def store(where: str) -> GalleryStore:
        if where in STORES:  # a store by name, configured by the REID_* settings
            return create_gallery(settings.model_copy(update={"gallery": where}), spec)
        local = next(kind.name for kind in STORES.values() if kind.in_data_dir)  # a data dir: the store there
        return create_gallery(settings.model_copy(update={"gallery": local, "data_dir": Path(where)}), spec)

    source, dest = store(args.source), store(args.dest)
    source.open()
    try:
        dest.open()
        try:
            report = copy_gallery(source, dest, sample=args.sample)
        finally:
            dest.close()
    finally:
        source.close()
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1
