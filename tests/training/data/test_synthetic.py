"""The synthetic Market-1501 generator: determinism, layout, names, loader compatibility and the CLI."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from service.cli import main
from training.data.datasets import build_dataset
from training.data.synthetic import (
    SUBSETS,
    SynthConfig,
    camera_profiles,
    generate_market_dataset,
    person_rng,
    plan_jobs,
    render_pedestrian_image,
    sample_person,
)

TINY = SynthConfig(identities=6, train_identities=3, cameras=2, images_per_camera=2, seed=7)
MARKET_NAME = re.compile(r"^(-1|\d{4})_c([1-9])s1_(\d{6})_01\.jpg$")


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.jpg"))
    }


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "tiny"
    generate_market_dataset(root, TINY, workers=1)
    return root


def test_same_seed_gives_identical_files_whatever_the_worker_count(tiny_root: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate_market_dataset(again, TINY, workers=2)
    assert _digests(again) == _digests(tiny_root)


def test_another_seed_gives_other_images(tiny_root: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    generate_market_dataset(other, SynthConfig(**{**TINY.__dict__, "seed": 8}), workers=1)
    a, b = _digests(tiny_root), _digests(other)
    assert len(a) == len(b)  # same sizes; which image is the query depends on the seed
    common = a.keys() & b.keys()
    assert {k for k in a if k.startswith("bounding_box_train/")} <= common
    assert all(a[k] != b[k] for k in common)  # every image differs


def test_counts_and_names(tiny_root: Path) -> None:
    # 6 ids x 2 cameras x 2 images = 24: train 3 ids -> 12; test 3 ids -> 6 query (one per camera)
    # + 6 gallery; 6 gallery images -> max(1, round(0.3)) = 1 distractor and 1 junk.
    files = {s: sorted(p.name for p in (tiny_root / s).iterdir()) for s in SUBSETS}
    assert [len(files[s]) for s in SUBSETS] == [12, 6, 8]
    for names in files.values():
        for name in names:
            assert MARKET_NAME.match(name), name
    pids = {s: [int(n.split("_")[0]) for n in names] for s, names in files.items()}
    assert set(pids["bounding_box_train"]) == {1, 2, 3}
    assert sorted(pids["query"]) == [4, 4, 5, 5, 6, 6]
    assert sorted(pids["bounding_box_test"]) == [-1, 0, 4, 4, 5, 5, 6, 6]
    query_cams = sorted((n[:4], n[5:7]) for n in files["query"])
    assert query_cams == [(p, c) for p in ("0004", "0005", "0006") for c in ("c1", "c2")]
    summary = json.loads((tiny_root / "synthetic.json").read_text())
    assert summary["images"] == {"bounding_box_train": 12, "query": 6, "bounding_box_test": 8}
    assert summary["distractors"] == 1 and summary["junk"] == 1


def test_market_loader_reads_it(tiny_root: Path) -> None:
    split = build_dataset("market1501", tiny_root)
    counts = split.counts()
    assert counts["train"] == {"ids": 3, "images": 12, "cameras": 2}
    assert counts["query"] == {"ids": 3, "images": 6, "cameras": 2}
    # junk (-1) is dropped, the distractor (0) stays in the gallery
    assert counts["gallery"] == {"ids": 4, "images": 7, "cameras": 2}
    assert {r.person_id for r in split.train} == {0, 1, 2}


def test_images_have_the_requested_size(tiny_root: Path) -> None:
    from PIL import Image

    for path in (tiny_root / "query").iterdir():
        with Image.open(path) as image:
            assert image.size == (64, 128) and image.mode == "RGB"


def test_render_changes_with_camera_but_keeps_identity_attributes() -> None:
    person = sample_person(person_rng(0, 1))
    assert person == sample_person(person_rng(0, 1))
    assert person != sample_person(person_rng(0, 2))
    cameras = camera_profiles(SynthConfig(seed=0))
    a = np.asarray(render_pedestrian_image(person, cameras[0], np.random.default_rng(1), 96, 48))
    b = np.asarray(render_pedestrian_image(person, cameras[1], np.random.default_rng(1), 96, 48))
    assert a.shape == (96, 48, 3) and a.dtype == np.uint8
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 5.0


def test_plan_of_the_default_benchmark() -> None:
    jobs = plan_jobs(SynthConfig())
    per_subset = {s: sum(j.subset == s for j in jobs) for s in SUBSETS}
    assert per_subset == {"bounding_box_train": 4800, "query": 800, "bounding_box_test": 2400 + 120 + 48}
    assert len({(j.subset, j.filename) for j in jobs}) == len(jobs)  # names are unique


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("identities", 1, "identities must be in"),
        ("train_identities", 6, "train_identities must be in"),
        ("cameras", 10, "cameras must be in"),
        ("images_per_camera", 1, "images_per_camera must be in"),
        ("seed", -1, "seed must be in"),
    ],
)
def test_invalid_config_is_refused(field: str, value: int, message: str) -> None:
    config = SynthConfig(**{**TINY.__dict__, field: value})
    with pytest.raises(ValueError, match=message):
        config.validate()


def test_existing_output_is_refused_without_overwrite(tiny_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "twice"
    generate_market_dataset(root, TINY, workers=1)
    with pytest.raises(ValueError, match="already holds"):
        generate_market_dataset(root, TINY, workers=1)
    generate_market_dataset(root, TINY, workers=1, overwrite=True)
    assert _digests(root) == _digests(tiny_root)


def test_cli_synth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    argv = ["synth", "--out", str(out), "--identities", "6", "--train-identities", "3", "--cameras", "2"]
    assert main([*argv, "--images-per-camera", "2", "--seed", "7", "--workers", "1"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["images"] == {"bounding_box_train": 12, "query": 6, "bounding_box_test": 8}
    assert build_dataset("market1501", out).counts()["query"]["images"] == 6
    assert main(["synth", "--out", str(out), "--cameras", "12"]) == 2  # user error: one line, exit code 2
    assert "cameras must be in [2, 9], got 12" in capsys.readouterr().err
