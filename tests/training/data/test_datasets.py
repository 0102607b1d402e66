"""Dataset loaders on fake trees that follow each benchmark's real file naming; exact hand-computed counts.

The registry, Market-1501 / DukeMTMC-reID, MSMT17, the generic folder loader and ``reid datasets``; the
two-camera benchmarks with seeded test splits (CUHK01, VIPeR, CUHK03) are in ``test_datasets_cuhk_viper.py``.
"""

from __future__ import annotations

import inspect
import re
import shutil
from pathlib import Path

import pytest
from fake_trees import make_folder_tree, make_market_tree, make_msmt17_tree, make_viper_tree, write_image
from split_checks import assert_well_formed, counts, ids

from service.cli import main
from training.data.datasets import DatasetError, build_dataset, dataset_registry

ALL_DATASETS = ["cuhk01", "cuhk03", "dukemtmc", "folder", "market1501", "msmt17", "viper"]


# --- registry ----------------------------------------------------------------------------------------------


def test_registry_lists_every_loader() -> None:
    assert sorted(dataset_registry()) == ALL_DATASETS


@pytest.mark.parametrize("name", ALL_DATASETS)
def test_loader_signature_and_docstring(name: str) -> None:
    info = dataset_registry()[name]
    params = list(inspect.signature(info.loader).parameters.values())
    assert params[0].name == "root"
    # every option is an explicit keyword with a default, so `reid datasets show -o key=value` can type it
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is not p.empty for p in params[1:])
    module = inspect.getmodule(info.loader)
    assert module is not None
    module_doc = module.__doc__ or ""
    assert "Dataset statistics" in module_doc or name == "folder"
    assert info.summary


def test_unknown_dataset_lists_valid_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset 'market'; valid names: cuhk01, cuhk03, dukemtmc"):
        build_dataset("market", tmp_path)


# --- Market-1501 / DukeMTMC-reID ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["market1501", "dukemtmc"])
def test_market_style_counts_junk_and_distractors(tmp_path: Path, name: str) -> None:
    root = make_market_tree(tmp_path / name, naming="market" if name == "market1501" else "duke")
    split = build_dataset(name, root)
    assert counts(split) == {"train": (3, 7), "query": (3, 4), "gallery": (4, 8)}
    assert_well_formed(split)
    assert -1 not in ids(split.train + split.query + split.gallery)  # junk dropped everywhere
    assert 0 in ids(split.gallery) and 0 not in ids(split.query)  # distractor: gallery only
    assert ids(split.query) == {3, 5, 8}  # original ids kept
    assert not {int(r.path.name[:4]) for r in split.train} & ids(split.query + split.gallery)  # disjoint
    assert {r.camera_id for r in split.query} == {1, 2, 4}  # 1-based, as in the file names
    # train 2 -> 0, 7 -> 1, 10 -> 2 (sorted original id); camera 6 of person 10 unchanged
    train = {(r.path.name[:4], r.person_id, r.camera_id) for r in split.train}
    assert ("0010", 2, 6) in train and ("0002", 0, 1) in train


def test_market_accepts_one_extra_top_folder(tmp_path: Path) -> None:
    make_market_tree(tmp_path / "Market-1501-v15.09.15")
    split = build_dataset("market1501", tmp_path)
    assert counts(split)["gallery"] == (4, 8)
    assert split.train[0].path.parent == tmp_path / "Market-1501-v15.09.15" / "bounding_box_train"


def test_market_missing_folder_names_the_path(tmp_path: Path) -> None:
    root = make_market_tree(tmp_path / "market")
    shutil.rmtree(root / "query")
    with pytest.raises(DatasetError) as err:
        build_dataset("market1501", root)
    assert str(err.value) == f"{root / 'query'}: missing directory (Market-1501 query images)"


def test_market_unparseable_image_name_is_an_error(tmp_path: Path) -> None:
    root = make_market_tree(tmp_path / "market")
    write_image(root / "bounding_box_train" / "person2_cam1.jpg")
    with pytest.raises(DatasetError, match=re.escape("person2_cam1.jpg: file name does not match")):
        build_dataset("market1501", root)


# --- MSMT17 ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2])
def test_msmt17(tmp_path: Path, version: int) -> None:
    make_msmt17_tree(tmp_path / f"MSMT17_V{version}", version=version)
    split = build_dataset("msmt17", tmp_path)
    assert counts(split) == {"train": (3, 5), "query": (2, 2), "gallery": (3, 4)}
    assert_well_formed(split)
    assert sorted(r.camera_id for r in split.gallery) == [3, 5, 6, 12]
    combined = build_dataset("msmt17", tmp_path, combine_train_val=True)
    assert counts(combined)["train"] == (3, 7)


def test_msmt17_list_paths_with_folder_prefix(tmp_path: Path) -> None:
    make_msmt17_tree(tmp_path)
    lines = (tmp_path / "list_query.txt").read_text().splitlines()
    (tmp_path / "list_query.txt").write_text("".join(f"test/{line}\n" for line in lines))
    assert counts(build_dataset("msmt17", tmp_path))["query"] == (2, 2)


def test_msmt17_errors(tmp_path: Path) -> None:
    make_msmt17_tree(tmp_path)
    (tmp_path / "list_gallery.txt").unlink()
    with pytest.raises(DatasetError, match=r"list_gallery.txt: missing file \(MSMT17 image list\)"):
        build_dataset("msmt17", tmp_path)
    (tmp_path / "list_gallery.txt").write_text("0000/0000_000_xx_0303morning_0000_0.jpg 0\n")
    with pytest.raises(DatasetError, match=r"0000_000_xx_0303morning_0000_0.jpg: cannot parse camera id"):
        build_dataset("msmt17", tmp_path)
    (tmp_path / "list_gallery.txt").write_text("0000/0000_000_01_0303morning_0000_0.jpg 0\n")
    with pytest.raises(DatasetError, match=re.escape("0000_000_01_0303morning_0000_0.jpg: missing file")):
        build_dataset("msmt17", tmp_path)


# --- folder ------------------------------------------------------------------------------------------------


def test_folder_all_test_identities(tmp_path: Path) -> None:
    make_folder_tree(tmp_path)
    split = build_dataset("folder", tmp_path, train_fraction=0.0, query_per_id=2)
    assert counts(split) == {"train": (0, 0), "query": (3, 4), "gallery": (4, 7)}
    # non-numeric folder names -> sorted index: alice 0, bob 1, carol 2, dave 3
    per_person = {pid: sum(r.person_id == pid for r in split.query) for pid in range(4)}
    assert per_person == {0: 1, 1: 0, 2: 2, 3: 1}
    for query in split.query:  # every query keeps a same-person gallery image from another camera
        assert any(g.person_id == query.person_id and g.camera_id != query.camera_id for g in split.gallery)
    one_query = build_dataset("folder", tmp_path, train_fraction=0.0)
    assert counts(one_query)["query"] == (3, 3)


def test_folder_seeded_split(tmp_path: Path) -> None:
    persons = {str(100 + i): [1, 2, 2] for i in range(12)}
    make_folder_tree(tmp_path, persons, suffix=".png")
    split = build_dataset("folder", tmp_path, seed=1)
    assert counts(split) == {"train": (6, 18), "query": (6, 6), "gallery": (6, 12)}
    assert_well_formed(split)
    assert ids(split.query) <= set(range(100, 112))  # numeric folder names are the person ids
    assert not {int(r.path.parent.name) for r in split.train} & ids(split.query)
    assert build_dataset("folder", tmp_path, seed=1) == split
    assert ids(build_dataset("folder", tmp_path, seed=2).query) != ids(split.query)
    assert counts(build_dataset("folder", tmp_path, train_fraction=0.25))["train"] == (3, 9)


def test_folder_explicit_layout(tmp_path: Path) -> None:
    make_folder_tree(tmp_path / "train", {"zoe": [1, 2], "yann": [1]})
    make_folder_tree(tmp_path / "query", {"ann": [1], "ben": [2]})
    make_folder_tree(tmp_path / "gallery", {"ann": [2, 3], "ben": [1], "cyd": [4]})
    split = build_dataset("folder", tmp_path)
    assert counts(split) == {"train": (2, 3), "query": (2, 2), "gallery": (3, 4)}
    assert ids(split.query) == {0, 1} and ids(split.gallery) == {0, 1, 2}  # ann 0, ben 1, cyd 2 (sorted)
    assert split.info["layout"] == "train/query/gallery"
    shutil.rmtree(tmp_path / "query")
    with pytest.raises(DatasetError) as err:
        build_dataset("folder", tmp_path)
    assert str(err.value).startswith(f"{tmp_path / 'query'}: missing directory")


def test_folder_errors(tmp_path: Path) -> None:
    write_image(tmp_path / "alice" / "cam1_0001.jpg")
    with pytest.raises(DatasetError, match=r"alice/cam1_0001.jpg: file name must start with '<camera id>_'"):
        build_dataset("folder", tmp_path)
    (tmp_path / "alice" / "cam1_0001.jpg").unlink()
    write_image(tmp_path / "0001.jpg")
    with pytest.raises(DatasetError, match=re.escape("0001.jpg: image outside a person folder")):
        build_dataset("folder", tmp_path)
    with pytest.raises(ValueError, match=r"train_fraction must be in \[0, 1\], got 1.5"):
        build_dataset("folder", tmp_path, train_fraction=1.5)


# --- reid datasets -----------------------------------------------------------------------------------------


def test_cli_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datasets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ALL_DATASETS
    assert "Market-1501" in lines[ALL_DATASETS.index("market1501")]
    assert main(["datasets", "list"]) == 0
    assert capsys.readouterr().out.splitlines() == lines


def test_cli_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_market_tree(tmp_path)
    assert main(["datasets", "show", "market1501", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("dataset market1501")
    assert out[2].split() == ["train", "3", "7", "4"]
    assert out[4].split() == ["gallery", "4", "8", "4"]
    make_viper_tree(tmp_path / "viper", num_persons=10)
    argv = [
        "datasets",
        "show",
        "viper",
        "--root",
        str(tmp_path / "viper"),
        "-o",
        "split_index=3",
        "-o",
        "seed=2",
    ]
    assert main(argv) == 0
    assert "split_index=3, seed=2" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["datasets", "show", "market"], "unknown dataset 'market'; valid names: cuhk01, cuhk03, dukemtmc"),
        (["datasets", "show", "viper"], "'show viper' needs --root DIR"),
        (
            ["datasets", "show", "viper", "--root", "ROOT", "-o", "seeds=1"],
            "valid options: seed, split_index",
        ),
        (["datasets", "show", "viper", "--root", "ROOT", "-o", "seed=x"], "expected a value of type int"),
        (["datasets", "show", "market1501", "--root", "ROOT"], "bounding_box_train: missing directory"),
    ],
)
def test_cli_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    argv = [str(tmp_path) if a == "ROOT" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("reid datasets: error: ") and message in err
    assert len(err.strip().splitlines()) == 1
