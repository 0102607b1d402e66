"""CUHK03.

Reference:
    Li et al. DeepReID: Deep Filter Pairing Neural Network for Person Re-identification. CVPR 2014.
    Zhong et al. Re-ranking Person Re-identification with k-reciprocal Encoding. CVPR 2017 (new protocol).

Layout (``root`` or one extra top folder such as ``root/cuhk03``)::

    cuhk-03.mat            (or cuhk03_release/cuhk-03.mat) MATLAB v7.3 = HDF5:
        detected, labeled  5 cells (camera pairs), each an (n_persons x 10) cell of HxWx3 uint8 images;
                           images 1-5 from the pair's first camera, 6-10 from its second; empty = missing
        testsets           20 cells, each a (100 x 2) array of 1-based [camera pair, person] (classic splits)
    cuhk03_new_protocol_config_{detected,labeled}.mat   (new protocol; MATLAB v5, read with scipy)
        filelist, labels, camId, train_idx, query_idx, gallery_idx (1-based indices into filelist)

The images live inside the .mat, so the first load extracts them to PNGs under ``root/images_{variant}/``
named ``{pair}_{person:03d}_{view}_{image:02d}.png`` (all 1-based; view 1 = images 1-5, view 2 = 6-10) and
later loads reuse them. This is also the naming of torchreid's extracted folders and of the new-protocol
``filelist``, so a filelist entry maps to ``images_{variant}/<entry>``, and an ``images_{variant}/`` folder
extracted elsewhere is used as it is (the .mat is then needed only for the classic ``testsets``).

Dataset statistics:
    - identities: 1,467 (5 camera pairs: 843 + 440 + 77 + 58 + 49); cameras: 6 (2 views per pair).
    - images: 14,097 detected, 14,096 labeled.
    - classic (Li et al.): 20 splits of 100 test identities; the paper trains on 1,160 of its 1,360
      identities (100 more for validation); like torchreid we train on every non-test identity of the
      release (1,367).
    - new (Zhong et al.): train 767 identities / 7,365 detected (7,368 labeled) images; query 700 / 1,400;
      gallery 700 / 5,332 detected (5,328 labeled).

Conventions:
    - camera id = the view (1 or 2) within the camera pair, as in the file names (and torchreid).
    - person id: classic = ``pair * 1000 + person`` (e.g. 3045); new = the ``labels`` of the config.
    - classic query / gallery: query = view 1, gallery = view 2 of the 100 test identities. Single-shot
      (default, as in the papers): one image per person and view, drawn from ``(seed, split_index)``;
      ``single_shot=False`` keeps every image.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from training.data.datasets._layout import (
    check_choice,
    check_split_index,
    is_image,
    split_rng,
    split_by_test_ids,
)
from training.data.datasets.base import DatasetError, ImageRecord, ReidSplit, register_dataset, relabel

logger = logging.getLogger(__name__)

VARIANTS = ("detected", "labeled")
PROTOCOLS = ("classic", "new")
MAT_NAME = "cuhk-03.mat"
RELEASE_DIR = "cuhk03_release"
IMAGES_PER_VIEW = 5
#: ``{pair}_{person}_{view}_{image}.png`` as written by :func:`extract_cuhk03_images`.
IMAGE_NAME = re.compile(r"^(\d+)_(\d+)_([12])_(\d+)\.\w+$")


def _find_dataset_dir(root: Path, variant: str) -> Path:
    markers = (MAT_NAME, RELEASE_DIR, f"images_{variant}")
    if not root.is_dir() or any((root / m).exists() for m in markers):
        return root
    subs = [s for s in sorted(root.iterdir()) if s.is_dir() and any((s / m).exists() for m in markers)]
    return subs[0] if len(subs) == 1 else root


def _find_file(dataset_dir: Path, name: str, what: str) -> Path:
    for candidate in (dataset_dir / name, dataset_dir / RELEASE_DIR / name):
        if candidate.is_file():
            return candidate
    raise DatasetError(f"{dataset_dir / name}: missing file ({what}; also looked in {RELEASE_DIR}/)")


def _open_mat(mat_path: Path) -> Any:
    import h5py

    try:
        return h5py.File(mat_path, "r")
    except OSError as exc:
        raise DatasetError(f"{mat_path}: cannot read as a MATLAB v7.3 (HDF5) file: {exc}") from None


def extract_cuhk03_images(mat_path: Path, variant: str, out_dir: Path) -> int:
    """Write the ``variant`` images of ``cuhk-03.mat`` as PNGs into ``out_dir``; return how many.

    The PNGs are written into ``<out_dir>.partial`` and the folder is renamed at the end, so an interrupted
    extraction is redone rather than reused.
    """
    import numpy as np
    from PIL import Image

    check_choice("variant", variant, VARIANTS)
    partial = out_dir.with_name(out_dir.name + ".partial")
    count = 0
    with _open_mat(mat_path) as mat:
        if variant not in mat:
            raise DatasetError(f"{mat_path}: no {variant!r} cell array (found {', '.join(sorted(mat))})")
        partial.mkdir(parents=True, exist_ok=True)
        for pair, pair_ref in enumerate(np.asarray(mat[variant]).ravel(), start=1):
            cells = np.asarray(mat[pair_ref]).T  # MATLAB (n_persons x 10), stored transposed
            for person in range(cells.shape[0]):
                for image_index in range(cells.shape[1]):
                    image = np.asarray(mat[cells[person, image_index]]).T  # HxWx3 after transposing
                    if image.ndim != 3 or image.size == 0:
                        continue  # an empty cell: that image is missing
                    view = 1 if image_index < IMAGES_PER_VIEW else 2
                    name = f"{pair}_{person + 1:03d}_{view}_{image_index + 1:02d}.png"
                    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(partial / name)
                    count += 1
    partial.rename(out_dir)
    logger.info("extracted %d %s CUHK03 images to %s", count, variant, out_dir)
    return count


def parse_cuhk03_name(path: Path) -> tuple[int, int, int]:
    """(pair, person, view) from ``{pair}_{person:03d}_{view}_{image:02d}.png``."""
    match = IMAGE_NAME.match(path.name)
    if match is None:
        raise DatasetError(f"{path}: file name does not match '<pair>_<person>_<view>_<image>.png'")
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def cuhk03_images_dir(dataset_dir: Path, variant: str) -> Path:
    """``images_{variant}/`` under ``dataset_dir``, extracted from ``cuhk-03.mat`` if it does not exist."""
    images_dir = dataset_dir / f"images_{variant}"
    if not images_dir.is_dir():
        mat_path = _find_file(
            dataset_dir, MAT_NAME, f"CUHK03 release .mat, needed to extract images_{variant}/"
        )
        logger.info("extracting %s CUHK03 images from %s (once)", variant, mat_path)
        extract_cuhk03_images(mat_path, variant, images_dir)
    return images_dir


def _classic_test_ids(mat_path: Path, split_index: int) -> set[int]:
    import numpy as np

    with _open_mat(mat_path) as mat:
        if "testsets" not in mat:
            raise DatasetError(f"{mat_path}: no 'testsets' cell array (the classic splits)")
        refs = np.asarray(mat["testsets"]).ravel()
        check_split_index(split_index, len(refs))
        pairs = np.asarray(mat[refs[split_index]]).T  # (100 x 2): [camera pair, person], 1-based
    return {int(pair) * 1000 + int(person) for pair, person in pairs.reshape(-1, 2)}


def _matlab_string(value: Any) -> str:
    """Unwrap a scipy.io cell entry (nested object / string arrays) to a plain string."""
    while not isinstance(value, str):
        if len(value) != 1:
            raise DatasetError(f"expected one file name per filelist cell, got {value!r}")
        value = value[0]
    return value


def _load_new_protocol(dataset_dir: Path, variant: str, images_dir: Path) -> dict[str, list[ImageRecord]]:
    import numpy as np
    from scipy.io import loadmat

    config_path = _find_file(
        dataset_dir, f"cuhk03_new_protocol_config_{variant}.mat", "CUHK03 new-protocol configuration"
    )
    config = loadmat(str(config_path))
    missing = [k for k in ("filelist", "labels", "train_idx", "query_idx", "gallery_idx") if k not in config]
    if missing:
        raise DatasetError(f"{config_path}: missing field(s) {', '.join(missing)}")
    filelist = [_matlab_string(entry) for entry in np.asarray(config["filelist"]).ravel()]
    labels = np.asarray(config["labels"]).ravel().astype(int)
    if len(labels) != len(filelist):
        raise DatasetError(f"{config_path}: {len(labels)} labels for {len(filelist)} files")
    subsets: dict[str, list[ImageRecord]] = {}
    for subset in ("train", "query", "gallery"):
        records = []
        for index in np.asarray(config[f"{subset}_idx"]).ravel().astype(int) - 1:  # 1-based in MATLAB
            if not 0 <= index < len(filelist):
                raise DatasetError(f"{config_path}: {subset}_idx {index + 1} outside [1, {len(filelist)}]")
            path = images_dir / filelist[index]
            if not path.is_file():
                raise DatasetError(f"{path}: missing file (listed in {config_path.name})")
            _, _, view = parse_cuhk03_name(path)
            records.append(ImageRecord(path, int(labels[index]), view))
        subsets[subset] = records
    return subsets


@register_dataset("cuhk03", "CUHK03: 1,467 ids, 5 camera pairs; classic 20 splits or new 767/700 (Li 2014)")
def load_cuhk03(
    root: Path,
    *,
    variant: str = "detected",
    protocol: str = "classic",
    split_index: int = 0,
    seed: int = 0,
    single_shot: bool = True,
) -> ReidSplit:
    """Load CUHK03, extracting its images from the .mat on first use.

    Args:
        root: Dataset folder (or its parent) with ``cuhk-03.mat`` and / or ``images_{variant}/``.
        variant: ``"detected"`` (DPM boxes) or ``"labeled"`` (hand-drawn boxes).
        protocol: ``"classic"`` (100 test identities, 20 splits) or ``"new"`` (767 / 700 identities,
            one split).
        split_index: Classic split 0..19 (the ``testsets`` of the .mat); must be 0 for the new protocol.
        seed: Classic single-shot draws, together with ``split_index``.
        single_shot: Classic protocol: one query and one gallery image per test identity (else all).

    Raises:
        ValueError: Unknown variant / protocol or ``split_index`` out of range.
        DatasetError: A needed file is missing or unreadable, or an image name does not parse.
    """
    check_choice("variant", variant, VARIANTS)
    check_choice("protocol", protocol, PROTOCOLS)
    if protocol == "new":
        check_split_index(split_index, 1)
    dataset_dir = _find_dataset_dir(Path(root), variant)
    images_dir = cuhk03_images_dir(dataset_dir, variant)
    info: dict[str, Any] = {"variant": variant, "protocol": protocol, "split_index": split_index}
    if protocol == "new":
        subsets = _load_new_protocol(dataset_dir, variant, images_dir)
        train, query, gallery = subsets["train"], subsets["query"], subsets["gallery"]
    else:
        records = []
        for path in sorted(p for p in images_dir.iterdir() if p.is_file() and is_image(p)):
            pair, person, view = parse_cuhk03_name(path)
            records.append(ImageRecord(path, pair * 1000 + person, view))
        if not records:
            raise DatasetError(f"{images_dir}: no CUHK03 images found")
        test_ids = _classic_test_ids(
            _find_file(dataset_dir, MAT_NAME, "CUHK03 classic test splits"), split_index
        )
        train, query, gallery = split_by_test_ids(
            records, test_ids, dataset=f"cuhk03-{variant}", seed=seed, split_index=split_index,
            single_shot=single_shot,
        )
        info.update(seed=seed, single_shot=single_shot)
    return ReidSplit(name="cuhk03", train=relabel(train), query=query, gallery=gallery, info=info)
