"""Your own images, in a plain folder layout.

Two layouts are accepted::

    <root>/<person>/<camera>_<anything>.jpg                 one pool, split at random (seeded)
    <root>/{train,query,gallery}/<person>/<camera>_<anything>.jpg    the split is given (train/ optional)

Images may be jpg / jpeg / png / bmp / webp; other files are ignored. ``<camera>`` is the integer before the
first underscore (a camera id is needed to evaluate: the gallery images of the query's person taken by the
query's camera are not counted as matches). ``<person>`` folder names need not be numbers: if every name is
a distinct integer the integers are the person ids, otherwise the sorted names are numbered 0..N-1 (over
all subsets together, so the same name is the same person in query and gallery).

Random split (one pool):
    - identities are shuffled with ``seed``; the first ``round(train_fraction * N)`` are for training (all
      their images), the others for testing.
    - for each test identity, up to ``query_per_id`` images become queries, each from a different camera
      and only while every query keeps a gallery image of its person from another camera; all other images
      are the gallery. Identities seen by a single camera therefore stay entirely in the gallery.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from training.checks import at_least
from training.data.datasets._layout import is_image, split_rng
from training.data.datasets.base import DatasetError, ImageRecord, ReidSplit, register_dataset, relabel

SUBSETS = ("train", "query", "gallery")


def parse_camera_id(path: Path) -> int:
    """The integer before the first underscore of the file name."""
    prefix, sep, _ = path.name.partition("_")
    try:
        if not sep:
            raise ValueError(prefix)
        return int(prefix)
    except ValueError:
        raise DatasetError(
            f"{path}: file name must start with '<camera id>_' (an integer, e.g. 1_0001.jpg)"
        ) from None


def _scan(directory: Path) -> list[tuple[str, Path, int]]:
    """(person folder name, image path, camera id) for every image one level below ``directory``."""
    found = []
    for entry in sorted(directory.iterdir()):
        if entry.is_file():
            if is_image(entry):
                raise DatasetError(f"{entry}: image outside a person folder (expected <person>/<camera>_...)")
            continue
        for path in sorted(entry.iterdir()):
            if path.is_file() and is_image(path):
                found.append((entry.name, path, parse_camera_id(path)))
    if not found:
        raise DatasetError(f"{directory}: no images found (expected <person>/<camera>_<name>.jpg)")
    return found


def person_id_map(names: set[str]) -> dict[str, int]:
    """Folder name -> person id: the integers themselves if all names are distinct integers, else 0..N-1."""
    if all(n.isdecimal() for n in names) and len({int(n) for n in names}) == len(names):
        return {n: int(n) for n in names}
    return {n: i for i, n in enumerate(sorted(names))}


def pick_queries(images: list[ImageRecord], query_per_id: int, rng: random.Random) -> list[ImageRecord]:
    """Up to ``query_per_id`` query images of one person, each from a different camera, each matchable."""
    by_camera: dict[int, list[ImageRecord]] = {}
    for record in images:
        by_camera.setdefault(record.camera_id, []).append(record)
    cameras = sorted(by_camera)
    rng.shuffle(cameras)
    queries: list[ImageRecord] = []
    for camera in cameras:
        if len(queries) == query_per_id:
            break
        candidate = rng.choice(by_camera[camera])
        chosen = {*queries, candidate}
        gallery_cameras = [r.camera_id for r in images if r not in chosen]
        if all(any(c != q.camera_id for c in gallery_cameras) for q in chosen):
            queries.append(candidate)
    return queries


@register_dataset(
    "folder", "your own images: <root>/<person>/<camera>_<name>.jpg (seeded split) or train/query/gallery"
)
def load_folder(
    root: Path, *, train_fraction: float = 0.5, query_per_id: int = 1, seed: int = 0
) -> ReidSplit:
    """Load a plain folder of person images (see the module docstring for both layouts).

    Args:
        root: The folder.
        train_fraction: Random split only: fraction of identities used for training, in [0, 1].
        query_per_id: Random split only: most query images per test identity (one per camera), >= 1.
        seed: Random split only: fixes the identity split and the query draws.

    Raises:
        ValueError: ``train_fraction`` or ``query_per_id`` out of range.
        DatasetError: No images, an image outside a person folder, or a name without a camera prefix.
    """
    if not 0.0 <= train_fraction <= 1.0:
        raise ValueError(f"train_fraction must be in [0, 1], got {train_fraction}")
    at_least("query_per_id", query_per_id, 1)
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: missing directory (folder of <person>/<camera>_<name> images)")
    info: dict[str, Any]
    present = [s for s in SUBSETS if (root / s).is_dir()]
    if present and not {"query", "gallery"} <= set(present):
        missing = "query" if "query" not in present else "gallery"
        raise DatasetError(
            f"{root / missing}: missing directory (the train/query/gallery layout needs query/ and gallery/)"
        )
    if present:
        scanned = {s: _scan(root / s) if (s != "train" or (root / s).is_dir()) else [] for s in SUBSETS}
        ids = person_id_map({name for found in scanned.values() for name, _, _ in found})
        subsets = {s: [ImageRecord(p, ids[n], c) for n, p, c in found] for s, found in scanned.items()}
        info = {"layout": "train/query/gallery"}
        return ReidSplit(
            name="folder",
            train=relabel(subsets["train"]),
            query=subsets["query"],
            gallery=subsets["gallery"],
            info=info,
        )
    scanned_pool = _scan(root)
    ids = person_id_map({name for name, _, _ in scanned_pool})
    records = [ImageRecord(p, ids[n], c) for n, p, c in scanned_pool]
    person_ids = sorted(set(ids.values()))
    split_rng("folder-ids", seed=seed, split_index=0).shuffle(person_ids)
    train_ids = set(person_ids[: round(train_fraction * len(person_ids))])
    train = [r for r in records if r.person_id in train_ids]
    query_rng = split_rng("folder-queries", seed=seed, split_index=0)
    query: list[ImageRecord] = []
    gallery: list[ImageRecord] = []
    by_person: dict[int, list[ImageRecord]] = {}
    for record in records:
        by_person.setdefault(record.person_id, []).append(record)
    for person_id in sorted(set(by_person) - train_ids):
        images = by_person[person_id]
        queries = pick_queries(images, query_per_id, query_rng)
        query.extend(queries)
        gallery.extend(r for r in images if r not in queries)
    info = {
        "layout": "random split",
        "seed": seed,
        "train_fraction": train_fraction,
        "query_per_id": query_per_id,
    }
    return ReidSplit(name="folder", train=relabel(train), query=sorted(query), gallery=gallery, info=info)
