"""Builders of tiny fake dataset trees that follow the real file naming of each benchmark.

The loaders only list files, so every image is the same 8×4 picture (encoded once per format); CUHK03 gets a
real MATLAB v7.3 (HDF5) file with object references and a new-protocol config written by scipy.
"""

from __future__ import annotations

import atexit
import io
import os
import shutil
import tempfile
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP"}


@cache
def _encoded(suffix: str) -> Path:
    """One encoded 8×4 image per format, in a private temp folder (removed at exit)."""
    folder = Path(tempfile.mkdtemp(prefix="reid-fake-images-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    buffer = io.BytesIO()
    Image.new("RGB", (4, 8), (120, 60, 30)).save(buffer, format=_FORMATS[suffix])
    path = folder / f"image{suffix}"
    path.write_bytes(buffer.getvalue())
    return path


def write_image(path: Path) -> Path:
    """A tiny 8×4 (H×W) image in the format of ``path``'s suffix.

    Hard-linked to one encoded file when possible: thousands of links cost far less than thousands of writes.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    source = _encoded(path.suffix.lower())
    try:
        os.link(source, path)
    except OSError:  # another file system, or links not supported
        shutil.copyfile(source, path)
    return path


def write_images(folder: Path, names: Iterable[str]) -> None:
    for name in names:
        write_image(folder / name)


# --- Market-1501 / DukeMTMC-reID -------------------------------------------------------------------------


def market_name(person_id: int, camera_id: int, index: int) -> str:
    """``0002_c1s1_000451_03.jpg``; person -1 (junk) is written ``-1_c1s1_...``."""
    person = "-1" if person_id == -1 else f"{person_id:04d}"
    return f"{person}_c{camera_id}s1_{index:06d}_01.jpg"


def duke_name(person_id: int, camera_id: int, index: int) -> str:
    """``0001_c2_f0046182.jpg``."""
    return f"{person_id:04d}_c{camera_id}_f{index:07d}.jpg"


#: (person, camera) per image; train 3 ids / 7 images after dropping junk and distractors.
MARKET_TRAIN = [(2, 1), (2, 1), (2, 2), (7, 3), (7, 3), (10, 1), (10, 6), (-1, 1), (0, 2)]
#: query 3 ids / 4 images after dropping junk and distractors.
MARKET_QUERY = [(3, 1), (5, 2), (8, 1), (8, 4), (-1, 3), (0, 1)]
#: gallery 4 ids (3 + distractor 0) / 8 images after dropping 3 junk images.
MARKET_GALLERY = [(3, 2), (3, 3), (5, 1), (5, 5), (5, 5), (8, 2), (0, 1), (0, 3), (-1, 1), (-1, 2), (-1, 4)]


def make_market_tree(root: Path, *, naming: str = "market") -> Path:
    """A Market-1501-style tree (``naming="duke"`` for DukeMTMC-reID names) with a stray ``Thumbs.db``."""
    name = market_name if naming == "market" else duke_name
    for folder, images in (
        ("bounding_box_train", MARKET_TRAIN),
        ("query", MARKET_QUERY),
        ("bounding_box_test", MARKET_GALLERY),
    ):
        write_images(root / folder, [name(p, c, i) for i, (p, c) in enumerate(images)])
        (root / folder / "Thumbs.db").write_bytes(b"not an image")
    return root


# --- CUHK01 / VIPeR ----------------------------------------------------------------------------------------


def make_cuhk01_tree(root: Path, num_persons: int = 971) -> Path:
    """``campus/NNNNIII.png``: images 001-002 camera A, 003-004 camera B."""
    write_images(
        root / "campus", [f"{p:04d}{i:03d}.png" for p in range(1, num_persons + 1) for i in range(1, 5)]
    )
    return root


def make_viper_tree(root: Path, num_persons: int = 632) -> Path:
    """``cam_a/NNN_45.bmp`` and ``cam_b/NNN_90.bmp``, paired by sorted order."""
    write_images(root / "cam_a", [f"{p:03d}_45.bmp" for p in range(num_persons)])
    write_images(root / "cam_b", [f"{p:03d}_90.bmp" for p in range(num_persons)])
    return root


# --- MSMT17 ------------------------------------------------------------------------------------------------


def msmt17_name(person_id: int, index: int, camera_id: int) -> str:
    """``0000_000_01_0303morning_0015_0.jpg``: person, index, camera, time of day, frame, box."""
    return f"{person_id:04d}_{index:03d}_{camera_id:02d}_0303morning_{index:04d}_0.jpg"


#: list name -> (person, camera) per line. train 3 ids / 5 images, val 2 ids / 2 images (same identities).
MSMT17_LISTS = {
    "train": [(0, 1), (0, 7), (1, 15), (1, 2), (2, 3)],
    "val": [(0, 4), (2, 9)],
    "query": [(0, 1), (1, 2)],
    "gallery": [(0, 5), (0, 6), (1, 12), (2, 3)],
}


def make_msmt17_tree(root: Path, *, version: int = 1) -> Path:
    """The MSMT17 V1 (``train/``, ``test/``) or V2 (``mask_train_v2/``, ``mask_test_v2/``) layout."""
    train_dir, test_dir = ("train", "test") if version == 1 else ("mask_train_v2", "mask_test_v2")
    index = 0
    for list_name, entries in MSMT17_LISTS.items():
        image_dir = root / (test_dir if list_name in ("query", "gallery") else train_dir)
        lines = []
        for person_id, camera_id in entries:
            relative = f"{person_id:04d}/{msmt17_name(person_id, index, camera_id)}"
            write_image(image_dir / relative)
            lines.append(f"{relative} {person_id}\n")
            index += 1
        (root / f"list_{list_name}.txt").write_text("".join(lines))
    return root


# --- CUHK03 ------------------------------------------------------------------------------------------------

#: persons per camera pair (5 pairs, 14 persons).
CUHK03_PERSONS = (3, 4, 3, 2, 2)
#: (pair, person) -> missing image numbers (1-based; 1-5 view 1, 6-10 view 2). 127 images in all.
CUHK03_MISSING = {(1, 2): {8, 9, 10}, (4, 1): {6, 7, 8, 9, 10}, (3, 1): {1, 2, 3, 4, 5}}
#: classic test splits: 1-based [pair, person].
CUHK03_TESTSETS = (
    [(1, 1), (2, 3), (4, 1), (5, 2)],
    [(1, 2), (2, 1), (3, 1), (5, 1)],
)


def cuhk03_pixel(pair: int, person: int, image: int) -> int:
    """The value every pixel of one fake CUHK03 image has (so extraction can be checked)."""
    return pair * 40 + person * 10 + image


def cuhk03_images() -> list[tuple[int, int, int]]:
    """(pair, person, image) of every non-missing image, in file-name order."""
    return [
        (pair, person, image)
        for pair, n in enumerate(CUHK03_PERSONS, start=1)
        for person in range(1, n + 1)
        for image in range(1, 11)
        if image not in CUHK03_MISSING.get((pair, person), set())
    ]


def write_cuhk03_mat(path: Path) -> Path:
    """A MATLAB v7.3 ``cuhk-03.mat``: ``detected`` / ``labeled`` / ``testsets`` cells of object references.

    MATLAB writes arrays column-major, so h5py sees every array transposed: an (n_persons × 10) cell is a
    (10, n_persons) dataset and an H×W×3 image is 3×W×H. Empty cells are 2-element uint64 arrays.
    """
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as mat:
        refs = mat.create_group("#refs#")
        counter = iter(range(1_000_000))

        def store(data: np.ndarray, *, empty: bool = False) -> h5py.Reference:
            dataset = refs.create_dataset(f"r{next(counter)}", data=data)
            if empty:
                dataset.attrs["MATLAB_empty"] = np.uint8(1)
            return dataset.ref

        for variant in ("detected", "labeled"):
            pair_cells = mat.create_dataset(variant, (1, len(CUHK03_PERSONS)), dtype=h5py.ref_dtype)
            for pair, n in enumerate(CUHK03_PERSONS, start=1):
                cell = np.empty((10, n), dtype=object)
                for person in range(1, n + 1):
                    for image in range(1, 11):
                        if image in CUHK03_MISSING.get((pair, person), set()):
                            cell[image - 1, person - 1] = store(np.zeros(2, dtype=np.uint64), empty=True)
                        else:
                            pixels = np.full((3, 4, 8), cuhk03_pixel(pair, person, image), dtype=np.uint8)
                            cell[image - 1, person - 1] = store(pixels)
                person_cells = refs.create_dataset(f"{variant}{pair}", data=cell, dtype=h5py.ref_dtype)
                pair_cells[0, pair - 1] = person_cells.ref
        testsets = mat.create_dataset("testsets", (1, len(CUHK03_TESTSETS)), dtype=h5py.ref_dtype)
        for i, test in enumerate(CUHK03_TESTSETS):
            testsets[0, i] = store(np.asarray(test, dtype=np.float64).T)  # MATLAB (k × 2), stored (2, k)
    return path


def cuhk03_file_name(pair: int, person: int, image: int) -> str:
    view = 1 if image <= 5 else 2
    return f"{pair}_{person:03d}_{view}_{image:02d}.png"


def write_cuhk03_new_protocol(path: Path) -> dict[str, int]:
    """A new-protocol config: pairs 1-2 train, pairs 3-5 test; query = first image of each view.

    Returns the expected counts: train 7 ids / 67 images, query 7 ids / 12, gallery 7 ids / 48.
    """
    from scipy.io import savemat

    images = cuhk03_images()
    persons = sorted({(pair, person) for pair, person, _ in images})
    label = {key: i for i, key in enumerate(persons, start=1)}
    filelist = np.empty((len(images), 1), dtype=object)
    train_idx, query_idx, gallery_idx = [], [], []
    seen_views: set[tuple[int, int, int]] = set()
    for i, (pair, person, image) in enumerate(images):
        filelist[i, 0] = cuhk03_file_name(pair, person, image)
        view = 1 if image <= 5 else 2
        if pair <= 2:
            train_idx.append(i + 1)
        elif (pair, person, view) not in seen_views:
            seen_views.add((pair, person, view))
            query_idx.append(i + 1)
        else:
            gallery_idx.append(i + 1)
    savemat(
        str(path),
        {
            "filelist": filelist,
            "labels": np.array([[label[(p, q)]] for p, q, _ in images], dtype=np.float64),
            "camId": np.array([[1 if im <= 5 else 2] for _, _, im in images], dtype=np.float64),
            "train_idx": np.array(train_idx, dtype=np.float64).reshape(-1, 1),
            "query_idx": np.array(query_idx, dtype=np.float64).reshape(-1, 1),
            "gallery_idx": np.array(gallery_idx, dtype=np.float64).reshape(-1, 1),
        },
    )
    return {"train": len(train_idx), "query": len(query_idx), "gallery": len(gallery_idx)}


# --- folder ------------------------------------------------------------------------------------------------

#: person folder -> camera id per image. With train_fraction=0 and query_per_id=2: query 4 images of 3 ids
#: (alice 1, bob 0, carol 2, dave 1), gallery 7 of 4 ids (11 images in all).
FOLDER_PERSONS = {
    "alice": [1, 1, 2],  # cameras 1, 1, 2: one query at most (a second would leave a query unmatched)
    "bob": [3, 3],  # one camera: no query, both images in the gallery
    "carol": [1, 2, 3],  # three cameras, one image each: two queries (the third would be unmatched)
    "dave": [4, 5, 5],
}


def make_folder_tree(
    root: Path, persons: dict[str, list[int]] = FOLDER_PERSONS, suffix: str = ".jpg"
) -> Path:
    """``<root>/<person>/<camera>_<index>.jpg``."""
    for person, cameras in persons.items():
        write_images(root / person, [f"{camera}_{i:04d}{suffix}" for i, camera in enumerate(cameras)])
    return root
