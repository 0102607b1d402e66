"""Market-1501.

Reference:
    Zheng et al. Scalable Person Re-identification: A Benchmark. ICCV 2015.

Layout (``root`` or one extra top folder such as ``root/Market-1501-v15.09.15``)::

    bounding_box_train/0002_c1s1_000451_03.jpg   person 0002, camera 1, sequence 1, frame 451, box 3
    bounding_box_test/ ...                        the gallery
    query/ ...

Dataset statistics (after dropping junk):
    - identities: 1,501 (+ the distractor id 0000); cameras: 6.
    - train: 751 identities, 12,936 images.
    - query: 750 identities, 3,368 images.
    - gallery: 751 identities (750 + the distractor id 0000), 15,913 images (3,819 junk images dropped).

Conventions (shared with DukeMTMC-reID, see :func:`load_market_style`):
    - person id -1 is junk and is dropped everywhere; person id 0 is a distractor, kept in the gallery only.
    - camera ids are the 1-based numbers written in the file names (``c1`` → 1), unchanged.
    - train person ids are relabelled 0..N-1 (sorted original id); query / gallery keep the original ids.
    - non-image files (``Thumbs.db`` …) are ignored; an image whose name does not parse is an error.
"""

from __future__ import annotations

import re
from pathlib import Path

from training.data.datasets._layout import list_images, parse_int, require_dir, resolve_dataset_dir
from training.data.datasets.base import DatasetError, ImageRecord, ReidSplit, register_dataset, relabel

JUNK_PERSON_ID = -1
DISTRACTOR_PERSON_ID = 0

#: ``<person>_c<camera>...``: the person id (may be -1) and the camera number start every file name.
MARKET_NAME = re.compile(r"^(-?\d+)_c(\d+)")

SUBSET_DIRS: dict[str, str] = {
    "train": "bounding_box_train",
    "query": "query",
    "gallery": "bounding_box_test",
}


def parse_market_name(path: Path) -> tuple[int, int]:
    """(person_id, camera_id) from a Market-1501 / DukeMTMC-reID file name.

    Raises:
        DatasetError: The name does not start with ``<person>_c<camera>``; the message names the file.
    """
    match = MARKET_NAME.match(path.name)
    if match is None:
        raise DatasetError(f"{path}: file name does not match '<person>_c<camera>_...' (e.g. 0002_c1s1_...)")
    person_id = parse_int(match.group(1), path=path, what="person id")
    camera_id = parse_int(match.group(2), path=path, what="camera id")
    if camera_id < 1:
        raise DatasetError(f"{path}: camera id must be >= 1 (1-based), got {camera_id}")
    return person_id, camera_id


def read_market_dir(directory: Path, *, keep_distractors: bool) -> list[ImageRecord]:
    """Records of one Market-style folder; junk dropped, distractors kept only if ``keep_distractors``."""
    records = []
    for path in list_images(directory):
        person_id, camera_id = parse_market_name(path)
        if person_id == JUNK_PERSON_ID:
            continue
        if person_id == DISTRACTOR_PERSON_ID and not keep_distractors:
            continue
        if person_id < 0:
            raise DatasetError(f"{path}: person id must be >= -1, got {person_id}")
        records.append(ImageRecord(path, person_id, camera_id))
    return records


def load_market_style(root: Path, *, name: str, title: str) -> ReidSplit:
    """Load a dataset in the Market-1501 layout (Market-1501, DukeMTMC-reID).

    Args:
        root: Dataset folder, or its parent if the archive added one top folder.
        name: Registry name, stored in the split.
        title: Human-readable dataset name used in error messages.

    Raises:
        DatasetError: A folder is missing, or an image name does not parse.
    """
    root = resolve_dataset_dir(Path(root), list(SUBSET_DIRS.values()))
    dirs = {
        subset: require_dir(root / folder, f"{title} {subset} images")
        for subset, folder in SUBSET_DIRS.items()
    }
    train = read_market_dir(dirs["train"], keep_distractors=False)
    query = read_market_dir(dirs["query"], keep_distractors=False)
    gallery = read_market_dir(dirs["gallery"], keep_distractors=True)
    for subset, records in (("train", train), ("query", query), ("gallery", gallery)):
        if not records:
            raise DatasetError(f"{dirs[subset]}: no {title} {subset} images found")
    return ReidSplit(name=name, train=relabel(train), query=query, gallery=gallery, info={"root": str(root)})


@register_dataset("market1501", "Market-1501: 1,501 ids, 6 cameras; 751 train / 750 test ids (Zheng 2015)")
def load_market1501(root: Path) -> ReidSplit:
    """Load Market-1501 from ``root`` (see the module docstring for the layout and conventions)."""
    return load_market_style(root, name="market1501", title="Market-1501")
