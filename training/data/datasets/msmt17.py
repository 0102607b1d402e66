"""MSMT17.

Reference:
    Wei et al. Person Transfer GAN to Bridge Domain Gap for Person Re-Identification. CVPR 2018.

Layout (``root``, ``root/MSMT17_V1`` or ``root/MSMT17_V2``)::

    train/0000/0000_000_01_0303morning_0015_0.jpg    V1 (V2: mask_train_v2/, mask_test_v2/)
    test/...
    list_train.txt   list_val.txt   list_query.txt   list_gallery.txt
        lines ``<path relative to the train or test folder> <person id>``, e.g. ``0000/0000_000_01_... 0``

Dataset statistics:
    - identities: 4,101 (1,041 train + 3,060 test); cameras: 15.
    - train: 1,041 identities, 30,248 images (list_train) + 2,373 (list_val, same identities) = 32,621.
    - query: 3,060 identities, 11,659 images.  gallery: 3,060 identities, 82,161 images.

Conventions:
    - camera id = the third ``_``-separated field of the file name (``01``..``15``), 1-based as written.
    - person ids are those of the lists; train and test identities are numbered separately from 0, so a
      query id may equal a train id of another person (train ids are relabelled 0..N-1 anyway).
    - published results train on list_train only; ``combine_train_val=True`` adds list_val.
    - a list path that starts with a folder name (``train/0000/...``) is resolved against the dataset folder.
"""

from __future__ import annotations

from pathlib import Path

from training.data.datasets._layout import parse_int, require_dir, require_file
from training.data.datasets.base import DatasetError, ImageRecord, ReidSplit, register_dataset, relabel

#: (train folder, test folder) per release; the first whose folders exist is used.
IMAGE_DIRS: tuple[tuple[str, str], ...] = (("train", "test"), ("mask_train_v2", "mask_test_v2"))
RELEASE_DIRS: tuple[str, ...] = ("MSMT17_V1", "MSMT17_V2", "MSMT17")


def find_msmt17_dir(root: Path) -> Path:
    """``root`` if it holds ``list_train.txt``, else the first release folder below it that does."""
    for candidate in (root, *(root / name for name in RELEASE_DIRS)):
        if (candidate / "list_train.txt").is_file():
            return candidate
    return root


def parse_msmt17_camera(path: Path) -> int:
    """The camera id (third field) of ``0000_000_01_0303morning_0015_0.jpg``."""
    fields = path.name.split("_")
    if len(fields) < 4:
        raise DatasetError(f"{path}: file name does not match '<person>_<index>_<camera>_<time>_...'")
    camera_id = parse_int(fields[2], path=path, what="camera id")
    if camera_id < 1:
        raise DatasetError(f"{path}: camera id must be >= 1 (1-based), got {camera_id}")
    return camera_id


def read_msmt17_list(list_path: Path, image_dir: Path, dataset_dir: Path) -> list[ImageRecord]:
    """Records of one ``list_*.txt``; every listed file must exist."""
    records = []
    folder_names = {name for pair in IMAGE_DIRS for name in pair}
    lines = require_file(list_path, "MSMT17 image list").read_text().splitlines()
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise DatasetError(
                f"{list_path}:{line_number}: expected '<relative path> <person id>', got {line!r}"
            )
        relative, person_text = parts
        base = dataset_dir if relative.split("/", 1)[0] in folder_names else image_dir
        path = base / relative
        person_id = parse_int(person_text, path=list_path, what=f"person id on line {line_number}")
        camera_id = parse_msmt17_camera(path)
        if not path.is_file():
            raise DatasetError(f"{path}: missing file (listed on line {line_number} of {list_path.name})")
        records.append(ImageRecord(path, person_id, camera_id))
    if not records:
        raise DatasetError(f"{list_path}: the list is empty")
    return records


@register_dataset("msmt17", "MSMT17: 4,101 ids, 15 cameras; 1,041 train / 3,060 test ids (Wei 2018)")
def load_msmt17(root: Path, *, combine_train_val: bool = False) -> ReidSplit:
    """Load MSMT17 (V1 or V2) from ``root``.

    Args:
        root: Dataset folder, or its parent holding ``MSMT17_V1/`` or ``MSMT17_V2/``.
        combine_train_val: Train on list_train + list_val (published results use list_train only).

    Raises:
        DatasetError: A folder, list or listed image is missing, or a line does not parse.
    """
    dataset_dir = find_msmt17_dir(Path(root))
    dirs = next(
        (pair for pair in IMAGE_DIRS if all((dataset_dir / name).is_dir() for name in pair)), IMAGE_DIRS[0]
    )
    train_dir = require_dir(dataset_dir / dirs[0], "MSMT17 training images")
    test_dir = require_dir(dataset_dir / dirs[1], "MSMT17 test images")
    train = read_msmt17_list(dataset_dir / "list_train.txt", train_dir, dataset_dir)
    if combine_train_val:
        train += read_msmt17_list(dataset_dir / "list_val.txt", train_dir, dataset_dir)
    query = read_msmt17_list(dataset_dir / "list_query.txt", test_dir, dataset_dir)
    gallery = read_msmt17_list(dataset_dir / "list_gallery.txt", test_dir, dataset_dir)
    info = {"root": str(dataset_dir), "combine_train_val": combine_train_val}
    return ReidSplit(name="msmt17", train=relabel(train), query=query, gallery=gallery, info=info)
