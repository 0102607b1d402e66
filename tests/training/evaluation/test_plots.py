from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.evaluation.calibration import roc_curve
from training.evaluation.plots import plot_cmc, plot_distance_histograms, plot_ranked_lists, plot_roc


def _check_png(path: Path, min_size: tuple[int, int]) -> None:
    assert path.is_file()
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.width >= min_size[0] and img.height >= min_size[1]
        assert img.width <= 4000 and img.height <= 4000
        extrema = img.convert("L").getextrema()
        assert extrema[0] < extrema[1]  # not a blank image


def _pedestrian_images(folder: Path, pids: np.ndarray, prefix: str, seed: int) -> list[Path]:
    """Tiny 'pedestrians': a shirt colour and a trousers colour per person, plus per-image noise."""
    rng = np.random.default_rng(seed)
    palette = np.random.default_rng(99).integers(0, 256, size=(int(pids.max()) + 1, 2, 3))
    paths = []
    for k, pid in enumerate(pids):
        img = np.full((64, 32, 3), 230, dtype=np.int16)
        img[8:34, 6:26] = palette[pid, 0]
        img[34:60, 8:24] = palette[pid, 1]
        img[2:9, 12:20] = (224, 172, 130)  # head
        img = np.clip(img + rng.integers(-20, 21, size=img.shape), 0, 255).astype(np.uint8)
        path = folder / f"{prefix}_{k:03d}_id{pid}.png"
        Image.fromarray(img).save(path)
        paths.append(path)
    return paths


def test_plot_cmc(tmp_path: Path) -> None:
    cmc = np.minimum(1.0, 0.6 + 0.02 * np.arange(50))
    out = plot_cmc(cmc, tmp_path / "sub" / "cmc.png", title="Market-1501 test")
    assert out == tmp_path / "sub" / "cmc.png"
    _check_png(out, (300, 200))


def test_plot_ranked_lists(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    g_pids, q_pids = np.repeat(np.arange(10), 3), np.arange(10)
    g_cams, q_cams = np.tile([0, 1, 1], 10), np.zeros(10, dtype=int)
    gallery = _pedestrian_images(tmp_path, g_pids, "g", seed=1)
    query = _pedestrian_images(tmp_path, q_pids, "q", seed=2)
    distmat = rng.random((10, 30)) + 0.8 * (q_pids[:, None] != g_pids[None, :])
    out = plot_ranked_lists(query, gallery, distmat, q_pids, g_pids, q_cams, g_cams, tmp_path / "ranks.png",
                            num_queries=3, top_k=6, seed=0)
    _check_png(out, (600, 400))


def test_plot_ranked_lists_errors(tmp_path: Path) -> None:
    paths = _pedestrian_images(tmp_path, np.array([0, 1]), "x", seed=0)
    ids, cams = np.array([0, 1]), np.array([0, 1])
    with pytest.raises(ValueError, match="distmat must be 2 × 2"):
        plot_ranked_lists(paths, paths, np.zeros((2, 3)), ids, ids, cams, cams, tmp_path / "r.png")
    with pytest.raises(FileNotFoundError, match=r"missing\.png"):
        plot_ranked_lists([tmp_path / "missing.png"], paths, np.zeros((1, 2)), ids[:1], ids, cams[:1], cams,
                          tmp_path / "r.png")


def test_plot_distance_histograms(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    out = plot_distance_histograms(rng.normal(0.7, 0.1, 500), rng.normal(0.2, 0.15, 2000),
                                   tmp_path / "distances.png", "cosine", thresholds={"fmr_1e-03": 0.65})
    _check_png(out, (300, 200))
    with pytest.raises(ValueError, match="need same and different"):
        plot_distance_histograms(np.array([]), np.array([1.0]), tmp_path / "d.png", "cosine")


def test_plot_roc(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    roc = roc_curve(rng.normal(3, 1, 2000), rng.normal(0, 1, 20000), higher_is_better=True)
    out = plot_roc(roc.fpr, roc.tpr, tmp_path / "roc.png")
    _check_png(out, (300, 200))
    with pytest.raises(ValueError, match="equally long"):
        plot_roc(np.zeros(3), np.zeros(2), tmp_path / "r.png")
