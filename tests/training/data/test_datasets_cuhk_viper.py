"""Loaders of the two-camera benchmarks with seeded test splits (CUHK01, VIPeR, CUHK03) on fake trees that
follow their real file naming (CUHK03: a real MATLAB v7.3 file); exact hand-computed counts."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from fake_trees import (
    CUHK03_TESTSETS,
    cuhk03_pixel,
    make_cuhk01_tree,
    make_viper_tree,
    write_cuhk03_mat,
    write_cuhk03_new_protocol,
    write_image,
)
from PIL import Image
from split_checks import assert_well_formed, counts, ids

from training.data.datasets import DatasetError, build_dataset

# --- CUHK01 / VIPeR ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cuhk01_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cuhk01_tree(tmp_path_factory.mktemp("cuhk01"))  # full size: 971 persons, 3,884 images


@pytest.mark.parametrize(
    ("protocol", "single_shot", "expected"),
    [
        ("871/100", True, {"train": (871, 3484), "query": (100, 100), "gallery": (100, 100)}),
        ("485/486", True, {"train": (485, 1940), "query": (486, 486), "gallery": (486, 486)}),
        ("871/100", False, {"train": (871, 3484), "query": (100, 200), "gallery": (100, 200)}),
    ],
)
def test_cuhk01_protocols(cuhk01_root: Path, protocol: str, single_shot: bool, expected: dict) -> None:
    split = build_dataset("cuhk01", cuhk01_root, protocol=protocol, single_shot=single_shot)
    assert counts(split) == expected
    assert_well_formed(split)
    assert {r.camera_id for r in split.query} == {1} and {r.camera_id for r in split.gallery} == {2}
    assert all(r.path.stem[4:] in ("001", "002") for r in split.query)  # camera A = images 1-2
    assert ids(split.query) == ids(split.gallery)
    train_originals = {int(r.path.stem[:4]) for r in split.train}
    assert not train_originals & ids(split.query)  # disjoint identities


def test_cuhk01_seeded_split(cuhk01_root: Path) -> None:
    def test_ids(**kw: int) -> set[int]:
        return ids(build_dataset("cuhk01", cuhk01_root, **kw).query)

    assert test_ids(seed=3) == test_ids(seed=3)
    assert test_ids(seed=3) != test_ids(seed=4)
    assert test_ids(seed=3, split_index=1) != test_ids(seed=3, split_index=0)


def test_cuhk01_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"campus: missing directory \(CUHK01 images\)"):
        build_dataset("cuhk01", tmp_path)
    make_cuhk01_tree(tmp_path, num_persons=50)
    with pytest.raises(DatasetError, match="protocol 871/100 needs more than 100 identities, found 50"):
        build_dataset("cuhk01", tmp_path)
    with pytest.raises(ValueError, match=r"protocol must be one of '871/100', '485/486', got '50/50'"):
        build_dataset("cuhk01", tmp_path, protocol="50/50")
    with pytest.raises(ValueError, match=r"split_index must be in \[0, 9\], got 10"):
        build_dataset("cuhk01", tmp_path, split_index=10)
    write_image(tmp_path / "campus" / "0001005.png")
    with pytest.raises(DatasetError, match=r"0001005.png: image index must be in \[1, 4\], got 5"):
        build_dataset("cuhk01", tmp_path, protocol="485/486")


def test_viper_split(tmp_path: Path) -> None:
    root = make_viper_tree(tmp_path / "VIPeR")
    split = build_dataset("viper", tmp_path, split_index=2, seed=7)  # via the extra top folder
    assert counts(split) == {"train": (316, 632), "query": (316, 316), "gallery": (316, 316)}
    assert_well_formed(split)
    assert all(r.path.parent.name == "cam_a" for r in split.query)
    # pairing by sorted order: a query and its gallery image share the name prefix
    gallery = {r.person_id: r.path.name[:3] for r in split.gallery}
    assert all(gallery[r.person_id] == r.path.name[:3] for r in split.query)
    train_prefixes = {r.path.name[:3] for r in split.train}
    assert not train_prefixes & set(gallery.values())
    again = build_dataset("viper", root, split_index=2, seed=7)
    assert again.query == split.query and again.train == split.train
    assert ids(build_dataset("viper", root, split_index=2, seed=8).query) != ids(split.query)


def test_viper_unpaired_cameras(tmp_path: Path) -> None:
    make_viper_tree(tmp_path, num_persons=6)
    (tmp_path / "cam_b" / "005_90.bmp").unlink()
    with pytest.raises(DatasetError, match="cam_a has 6 images and cam_b has 5"):
        build_dataset("viper", tmp_path)


# --- CUHK03 ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cuhk03_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cuhk03")
    write_cuhk03_mat(root / "cuhk03_release" / "cuhk-03.mat")
    return root


def test_cuhk03_extracts_images_once(cuhk03_root: Path) -> None:
    build_dataset("cuhk03", cuhk03_root, variant="labeled")
    images = cuhk03_root / "images_labeled"
    assert len(list(images.iterdir())) == 127  # 14 persons × 10 images, 13 missing
    pixels = np.asarray(Image.open(images / "2_003_2_07.png"))
    assert pixels.shape == (8, 4, 3) and (pixels == cuhk03_pixel(2, 3, 7)).all()  # HxWx3 after transposing
    stamp = (images / "2_003_2_07.png").stat().st_mtime_ns
    build_dataset("cuhk03", cuhk03_root, variant="labeled")
    assert (images / "2_003_2_07.png").stat().st_mtime_ns == stamp  # reused, not rewritten


@pytest.mark.parametrize(
    ("split_index", "single_shot", "expected"),
    [
        (0, True, {"train": (10, 92), "query": (3, 3), "gallery": (3, 3)}),
        (0, False, {"train": (10, 92), "query": (3, 15), "gallery": (3, 15)}),
        (1, True, {"train": (10, 95), "query": (3, 3), "gallery": (4, 4)}),
    ],
)
def test_cuhk03_classic(cuhk03_root: Path, split_index: int, single_shot: bool, expected: dict) -> None:
    split = build_dataset("cuhk03", cuhk03_root, split_index=split_index, single_shot=single_shot)
    assert counts(split) == expected
    assert_well_formed(split)
    test_ids = {pair * 1000 + person for pair, person in CUHK03_TESTSETS[split_index]}
    assert ids(split.query) <= test_ids and ids(split.gallery) <= test_ids
    assert {r.camera_id for r in split.query} == {1} and {r.camera_id for r in split.gallery} == {2}
    train_originals = {int(r.path.name[0]) * 1000 + int(r.path.name[2:5]) for r in split.train}
    assert not train_originals & test_ids


def test_cuhk03_classic_single_shot_is_seeded(cuhk03_root: Path) -> None:
    def draws(seed: int) -> list[Path]:
        split = build_dataset("cuhk03", cuhk03_root, seed=seed)
        return [r.path for r in split.query + split.gallery]

    assert draws(0) == draws(0)
    assert any(draws(0) != draws(s) for s in (1, 2, 3))


def test_cuhk03_new_protocol(tmp_path: Path, cuhk03_root: Path) -> None:
    shutil.copytree(cuhk03_root, tmp_path / "cuhk03")
    root = tmp_path / "cuhk03"
    assert write_cuhk03_new_protocol(root / "cuhk03_new_protocol_config_detected.mat") == {
        "train": 67,
        "query": 12,
        "gallery": 48,
    }
    split = build_dataset("cuhk03", root, protocol="new")
    assert counts(split) == {"train": (7, 67), "query": (7, 12), "gallery": (7, 48)}
    assert_well_formed(split)
    assert ids(split.query) == set(range(8, 15))  # the config's labels
    assert {r.path.parent.name for r in split.query} == {"images_detected"}
    with pytest.raises(ValueError, match=r"split_index must be in \[0, 0\], got 1"):
        build_dataset("cuhk03", root, protocol="new", split_index=1)
    # a pre-extracted folder is enough for the new protocol: the .mat is not read again
    shutil.rmtree(root / "cuhk03_release")
    assert counts(build_dataset("cuhk03", root, protocol="new"))["gallery"] == (7, 48)
    with pytest.raises(DatasetError, match=r"cuhk-03.mat: missing file \(CUHK03 classic test splits"):
        build_dataset("cuhk03", root)


def test_cuhk03_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"cuhk-03.mat: missing file \(CUHK03 release .mat"):
        build_dataset("cuhk03", tmp_path)
    (tmp_path / "cuhk-03.mat").write_bytes(b"MATLAB 5.0 MAT-file, not HDF5")
    with pytest.raises(DatasetError, match=re.escape("cuhk-03.mat: cannot read as a MATLAB v7.3")):
        build_dataset("cuhk03", tmp_path)
    with pytest.raises(ValueError, match="variant must be one of 'detected', 'labeled', got 'manual'"):
        build_dataset("cuhk03", tmp_path, variant="manual")
    (tmp_path / "images_detected").mkdir()
    write_image(tmp_path / "images_detected" / "1_001_3_01.png")
    with pytest.raises(DatasetError, match=re.escape("1_001_3_01.png: file name does not match")):
        build_dataset("cuhk03", tmp_path)
