"""The colour-histogram baseline: HSV conversion, features, distances and a tiny end-to-end run."""

from __future__ import annotations

import colorsys
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.cli import main
from training.data.datasets.base import ImageRecord, ReidSplit
from training.data.synthetic import SynthConfig, generate_market_dataset
from training.evaluation.histogram import (
    cosine_distance,
    evaluate_histogram_baseline,
    hsv_histogram,
    rgb_to_hsv,
)


def test_rgb_to_hsv_matches_colorsys() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, size=(6, 5, 3)).astype(np.uint8)
    rgb[0, :3] = [(10, 10, 10), (255, 0, 0), (0, 0, 255)]
    expected = np.array([[colorsys.rgb_to_hsv(*(px / 255.0)) for px in row] for row in rgb.astype(float)])
    np.testing.assert_allclose(rgb_to_hsv(rgb), expected, atol=1e-12)


def test_histogram_of_a_flat_image_is_one_bin_per_stripe() -> None:
    red = np.zeros((8, 4, 3), dtype=np.uint8)
    red[..., 0] = 255  # hue 0, saturation 1, value 1 -> bin (0, 1, 1) of (2, 2, 2) = index 3
    feature = hsv_histogram(red, bins=(2, 2, 2), stripes=2)
    expected = np.zeros(16, dtype=np.float32)
    expected[[3, 8 + 3]] = np.sqrt(0.5)
    np.testing.assert_allclose(feature, expected, rtol=1e-6)


def test_stripes_separate_top_and_bottom_colours() -> None:
    top_red = np.zeros((8, 4, 3), dtype=np.uint8)
    top_red[:4, :, 0] = 255
    top_red[4:, :, 2] = 255
    flipped = top_red[::-1].copy()
    one = cosine_distance(hsv_histogram(top_red, stripes=1)[None], hsv_histogram(flipped, stripes=1)[None])
    two = cosine_distance(hsv_histogram(top_red, stripes=2)[None], hsv_histogram(flipped, stripes=2)[None])
    assert one[0, 0] == pytest.approx(0.0, abs=1e-6)  # same colours overall
    assert two[0, 0] == pytest.approx(1.0, abs=1e-6)  # but nothing in common stripe by stripe


def test_cosine_distance_values() -> None:
    q = np.array([[1.0, 0.0], [1.0, 1.0]])
    g = np.array([[2.0, 0.0], [0.0, 3.0], [0.0, 0.0]])
    np.testing.assert_allclose(
        cosine_distance(q, g), [[0.0, 1.0, 1.0], [1 - 2**-0.5, 1 - 2**-0.5, 1.0]], atol=1e-6
    )


def test_bad_arguments_are_refused() -> None:
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="bins"):
        hsv_histogram(image, bins=(8, 0, 8))
    with pytest.raises(ValueError, match="stripes"):
        hsv_histogram(image, stripes=5)
    with pytest.raises(ValueError, match="RGB"):
        rgb_to_hsv(np.zeros((4, 4)))


def _save(path: Path, colour: tuple[int, int, int]) -> Path:
    Image.new("RGB", (8, 16), colour).save(path, format="PNG")
    return path


def test_hand_made_split_ranks_the_same_colour_first(tmp_path: Path) -> None:
    red, blue, green = (200, 20, 20), (20, 20, 200), (20, 200, 20)
    query = [
        ImageRecord(_save(tmp_path / "q1.png", red), 1, 1),
        ImageRecord(_save(tmp_path / "q2.png", blue), 2, 1),
    ]
    gallery = [
        ImageRecord(_save(tmp_path / "g0.png", green), 3, 2),
        ImageRecord(_save(tmp_path / "g1.png", red), 1, 2),
        ImageRecord(_save(tmp_path / "g2.png", blue), 2, 2),
        ImageRecord(_save(tmp_path / "g3.png", red), 1, 1),  # same camera as the query: not counted
    ]
    result = evaluate_histogram_baseline(ReidSplit("hand", [], query, gallery), bins=(8, 2, 2), stripes=1)
    assert result.rank(1) == 1.0 and result.mean_ap == pytest.approx(1.0)
    with pytest.raises(ValueError, match="needs query and gallery"):
        evaluate_histogram_baseline(ReidSplit("empty", [], query, []))


def test_cli_baseline_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "synth"
    generate_market_dataset(
        root, SynthConfig(identities=8, train_identities=2, cameras=2, images_per_camera=3), workers=1
    )
    assert main(["baseline", "--root", str(root), "--bins", "8x4x4", "--stripes", "4"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["bins"] == [8, 4, 4] and report["stripes"] == 4
    assert report["num_query"] == 12 and report["num_valid_queries"] == 12
    assert 0.0 <= report["rank1"] <= report["rank5"] <= report["rank10"] <= 1.0
    assert 0.0 < report["mAP"] <= 1.0
    assert main(["baseline", "--root", str(tmp_path / "missing")]) == 2
