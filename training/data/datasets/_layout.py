"""Small helpers shared by the dataset loaders: required folders, listing images, the dataset folder, splits."""

from __future__ import annotations

import random
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path

from training.data.datasets.base import DatasetError, ImageRecord

#: Camera ids of a two-camera benchmark: camera A's images query camera B's (:func:`split_by_test_ids`).
CAMERA_A, CAMERA_B = 1, 2

#: file suffixes (lower case) treated as images; everything else in a dataset folder is ignored.
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


def require_dir(path: Path, what: str) -> Path:
    """Return ``path`` if it is a directory, else raise a :class:`DatasetError` naming it and ``what``."""
    if not path.is_dir():
        raise DatasetError(f"{path}: missing directory ({what})")
    return path


def require_file(path: Path, what: str) -> Path:
    """Return ``path`` if it is a file, else raise a :class:`DatasetError` naming it and ``what``."""
    if not path.is_file():
        raise DatasetError(f"{path}: missing file ({what})")
    return path


def is_image(path: Path) -> bool:
    """Whether ``path`` has an image suffix (case-insensitive)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def list_images(directory: Path) -> list[Path]:
    """The image files directly inside ``directory``, sorted by name (non-image files are ignored)."""
    return sorted(p for p in directory.iterdir() if p.is_file() and is_image(p))


def resolve_dataset_dir(root: Path, expected: Sequence[str]) -> Path:
    """Find the folder that holds the ``expected`` entries: ``root`` itself, or one extra top folder.

    Archives often unpack into ``root/Market-1501-v15.09.15/...``; if the expected entries are not directly
    under ``root`` but all of them are under exactly one of its sub-folders, that sub-folder is returned.
    Otherwise ``root`` is returned unchanged, so the caller's ``require_dir`` names the missing path.
    """
    if all((root / name).exists() for name in expected) or not root.is_dir():
        return root
    candidates = [
        sub for sub in sorted(root.iterdir()) if sub.is_dir() and all((sub / n).exists() for n in expected)
    ]
    return candidates[0] if len(candidates) == 1 else root


def split_rng(dataset: str, *, seed: int, split_index: int) -> random.Random:
    """A random generator that depends only on (dataset, seed, split_index).

    String seeding hashes with SHA-512, so the generator (and the split) is the same in every process and
    Python version, whatever ``PYTHONHASHSEED`` is.
    """
    return random.Random(f"{dataset}:seed={seed}:split={split_index}")


def check_split_index(split_index: int, num_splits: int) -> None:
    """Raise ``ValueError`` unless ``0 <= split_index < num_splits``."""
    if not 0 <= split_index < num_splits:
        raise ValueError(f"split_index must be in [0, {num_splits - 1}], got {split_index}")


def check_choice(name: str, value: str, allowed: Sequence[str]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


def parse_int(text: str, *, path: Path, what: str) -> int:
    """``int(text)``, or a :class:`DatasetError` naming the file whose name did not parse."""
    try:
        return int(text)
    except ValueError:
        raise DatasetError(f"{path}: cannot parse {what} from the file name (got {text!r})") from None


def two_camera_test_split(
    test_records: Sequence[ImageRecord],
    *,
    query_camera: int,
    gallery_camera: int,
    single_shot: bool,
    rng: random.Random,
) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """Query / gallery for the two-camera benchmarks (CUHK01, CUHK03 classic, VIPeR).

    Query images come from ``query_camera``, gallery images from ``gallery_camera``. Single-shot keeps one
    randomly chosen image per person and camera (the published protocol: one query and one matching gallery
    image per test identity); multi-shot keeps every image. A person without any ``gallery_camera`` image
    gets no query (it could never be matched); one without ``query_camera`` images stays in the gallery.
    """
    by_person: dict[int, dict[int, list[ImageRecord]]] = {}
    for record in sorted(test_records):
        by_person.setdefault(record.person_id, {}).setdefault(record.camera_id, []).append(record)
    query: list[ImageRecord] = []
    gallery: list[ImageRecord] = []
    for person_id in sorted(by_person):
        cameras = by_person[person_id]
        query_images = cameras.get(query_camera, [])
        gallery_images = cameras.get(gallery_camera, [])
        query_pick = rng.choice(query_images) if query_images else None
        gallery_pick = rng.choice(gallery_images) if gallery_images else None
        if gallery_pick is None:
            continue
        if single_shot:
            gallery.append(gallery_pick)
            if query_pick is not None:
                query.append(query_pick)
        else:
            query.extend(query_images)
            gallery.extend(gallery_images)
    return query, gallery


def split_by_test_ids(
    records: Sequence[ImageRecord],
    test_ids: AbstractSet[int],
    *,
    dataset: str,
    seed: int,
    split_index: int,
    single_shot: bool,
) -> tuple[list[ImageRecord], list[ImageRecord], list[ImageRecord]]:
    """(train, query, gallery) of a two-camera benchmark: every image of the other persons trains; the test
    persons' camera-1 images query their camera-2 images (:func:`two_camera_test_split`, its draws seeded by
    ``(dataset, seed, split_index)``)."""
    train = [r for r in records if r.person_id not in test_ids]
    query, gallery = two_camera_test_split(
        [r for r in records if r.person_id in test_ids],
        query_camera=CAMERA_A,
        gallery_camera=CAMERA_B,
        single_shot=single_shot,
        rng=split_rng(f"{dataset}-shots", seed=seed, split_index=split_index),
    )
    return train, query, gallery
