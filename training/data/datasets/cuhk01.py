"""CUHK01.

Reference:
    Li et al. Human Reidentification with Transferred Metric Learning. ACCV 2012.

Layout (``root`` or one extra top folder such as ``root/CUHK01``)::

    campus/0001001.png   person 0001, image 001
    images 001-002 are from camera A (frontal / back view), 003-004 from camera B (side view)

Dataset statistics:
    - identities: 971; images: 3,884 (2 per person and camera); cameras: 2.
    - protocols: 871 train / 100 test identities, or 485 / 486; 10 random repetitions; single-shot.

Conventions:
    - person id = the 4-digit number of the file name; camera id 1 = camera A, 2 = camera B.
    - the split is drawn from ``(seed, split_index)``; the protocol fixes the number of test identities
      (100 or 486) and every other identity is used for training, with all four of its images.
    - query = camera A, gallery = camera B. Single-shot (default, as in the papers): one randomly drawn image
      per test person and camera; multi-shot (``single_shot=False``): both images of each camera.
"""

from __future__ import annotations

from pathlib import Path

from training.data.datasets._layout import (
    CAMERA_A,
    CAMERA_B,
    check_choice,
    check_split_index,
    list_images,
    parse_int,
    require_dir,
    resolve_dataset_dir,
    split_rng,
    split_by_test_ids,
)
from training.data.datasets.base import DatasetError, ImageRecord, ReidSplit, register_dataset, relabel

NUM_SPLITS = 10
#: protocol -> number of test identities (the rest are training identities).
PROTOCOLS: dict[str, int] = {"871/100": 100, "485/486": 486}


def parse_cuhk01_name(path: Path) -> tuple[int, int]:
    """(person_id, camera_id) from ``NNNNIII.png``; images 1-2 are camera A (1), 3-4 camera B (2)."""
    if len(path.stem) != 7 or not path.stem.isdigit():
        raise DatasetError(f"{path}: file name does not match 'NNNNIII.png' (4-digit person, 3-digit image)")
    person_id = parse_int(path.stem[:4], path=path, what="person id")
    image_index = parse_int(path.stem[4:], path=path, what="image index")
    if not 1 <= image_index <= 4:
        raise DatasetError(f"{path}: image index must be in [1, 4], got {image_index}")
    return person_id, CAMERA_A if image_index <= 2 else CAMERA_B


@register_dataset("cuhk01", "CUHK01: 971 ids, 2 cameras, 4 images each; 871/100 or 485/486 splits (Li 2012)")
def load_cuhk01(
    root: Path, *, protocol: str = "871/100", split_index: int = 0, seed: int = 0, single_shot: bool = True
) -> ReidSplit:
    """Load CUHK01 with a seeded identity split.

    Args:
        root: Dataset folder holding ``campus/`` (or its parent).
        protocol: ``"871/100"`` (100 test identities) or ``"485/486"`` (486 test identities).
        split_index: Which of the 10 repeated random splits, 0..9.
        seed: Base seed; together with ``split_index`` it fixes the split and the single-shot draws.
        single_shot: One query and one gallery image per test identity (else all of them).

    Raises:
        ValueError: Unknown protocol or ``split_index`` out of range.
        DatasetError: ``campus/`` is missing, a name does not parse, or there are too few identities.
    """
    check_choice("protocol", protocol, list(PROTOCOLS))
    check_split_index(split_index, NUM_SPLITS)
    root = resolve_dataset_dir(Path(root), ["campus"])
    campus = require_dir(root / "campus", "CUHK01 images")
    records = [ImageRecord(path, *parse_cuhk01_name(path)) for path in list_images(campus)]
    person_ids = sorted({r.person_id for r in records})
    num_test = PROTOCOLS[protocol]
    if len(person_ids) <= num_test:
        raise DatasetError(
            f"{campus}: protocol {protocol} needs more than {num_test} identities, found {len(person_ids)}"
        )
    shuffled = list(person_ids)
    split_rng("cuhk01-ids", seed=seed, split_index=split_index).shuffle(shuffled)
    test_ids = set(shuffled[:num_test])
    train, query, gallery = split_by_test_ids(
        records, test_ids, dataset="cuhk01", seed=seed, split_index=split_index, single_shot=single_shot
    )
    info = {"protocol": protocol, "split_index": split_index, "seed": seed, "single_shot": single_shot}
    return ReidSplit(name="cuhk01", train=relabel(train), query=query, gallery=gallery, info=info)
