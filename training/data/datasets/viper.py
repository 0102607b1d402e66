"""VIPeR.

Reference:
    Gray et al. Evaluating Appearance Models for Recognition, Reacquisition, and Tracking. PETS 2007.

Layout (``root`` or one extra top folder such as ``root/VIPeR``)::

    cam_a/000_45.bmp   cam_b/000_90.bmp    the i-th image of cam_a (sorted by name) and the i-th image
    cam_a/002_45.bmp   cam_b/002_90.bmp    of cam_b show the same person

Dataset statistics:
    - identities: 632; images: 1,264 (one per person and camera); cameras: 2.
    - protocol: 316 train / 316 test identities, 10 random repetitions; single-shot.

Conventions:
    - person id = position in the sorted listing (0..631); camera id 1 = cam_a, 2 = cam_b.
    - the split is drawn from ``(seed, split_index)``: the same pair gives the same split in every process.
    - query = the cam_a images of the test persons, gallery = their cam_b images (one each: single-shot).
"""

from __future__ import annotations

from pathlib import Path

from training.data.datasets._layout import (
    CAMERA_A,
    CAMERA_B,
    check_split_index,
    list_images,
    require_dir,
    resolve_dataset_dir,
    split_rng,
    split_by_test_ids,
)
from training.data.datasets.base import DatasetError, ImageRecord, ReidSplit, register_dataset, relabel

NUM_SPLITS = 10


@register_dataset("viper", "VIPeR: 632 ids, 2 cameras, one image each; 316/316 random splits (Gray 2007)")
def load_viper(root: Path, *, split_index: int = 0, seed: int = 0) -> ReidSplit:
    """Load VIPeR with a seeded 316 / 316 identity split.

    Args:
        root: Dataset folder holding ``cam_a/`` and ``cam_b/`` (or its parent).
        split_index: Which of the 10 repeated random splits, 0..9.
        seed: Base seed; together with ``split_index`` it fixes the split.

    Raises:
        ValueError: ``split_index`` out of range.
        DatasetError: A folder is missing or the two cameras hold different numbers of images.
    """
    check_split_index(split_index, NUM_SPLITS)
    root = resolve_dataset_dir(Path(root), ["cam_a", "cam_b"])
    images_a = list_images(require_dir(root / "cam_a", "VIPeR camera A images"))
    images_b = list_images(require_dir(root / "cam_b", "VIPeR camera B images"))
    if len(images_a) != len(images_b) or not images_a:
        raise DatasetError(
            f"{root}: cam_a has {len(images_a)} images and cam_b has {len(images_b)}; "
            "expected the same non-zero number (one image per person and camera)"
        )
    num_persons = len(images_a)
    persons = list(range(num_persons))
    split_rng("viper-ids", seed=seed, split_index=split_index).shuffle(persons)
    train_ids = set(persons[: num_persons // 2])
    records = [ImageRecord(path, i, CAMERA_A) for i, path in enumerate(images_a)]
    records += [ImageRecord(path, i, CAMERA_B) for i, path in enumerate(images_b)]
    test_ids = set(persons) - train_ids
    train, query, gallery = split_by_test_ids(
        sorted(records), test_ids, dataset="viper", seed=seed, split_index=split_index, single_shot=True
    )
    info = {"split_index": split_index, "seed": seed, "query": "cam_a", "gallery": "cam_b"}
    return ReidSplit(name="viper", train=relabel(train), query=query, gallery=gallery, info=info)
