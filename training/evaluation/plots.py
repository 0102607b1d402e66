"""Evaluation figures: CMC curve, ranked lists, distance histograms and ROC, written as PNG files.

matplotlib (Agg backend) is imported inside each function, so importing this module costs nothing and
never needs a display. Every function returns the path it wrote and creates missing parent folders.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from training.checks import at_least
from training.evaluation.calibration import DEFAULT_FMR_TARGETS

#: Size (height, width) every image is resized to in the ranked-list figure.
_THUMB_HW = (128, 64)
_CORRECT, _WRONG = "#1a9e3a", "#d62728"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path, dpi: int = 100) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def plot_cmc(cmc: np.ndarray, path: str | Path, title: str = "CMC") -> Path:
    """Cumulative matching characteristic: rank-k accuracy (%) against k, with rank-1/5/10/20 marked.

    Args:
        cmc: cmc[k-1] = rank-k accuracy as a fraction in [0, 1].
        path: Output PNG (e.g. ``cmc.png``).
        title: Figure title.

    Raises:
        ValueError: ``cmc`` empty or not 1-D.
    """
    cmc = np.asarray(cmc, dtype=np.float64)
    if cmc.ndim != 1 or cmc.size == 0:
        raise ValueError(f"cmc must be a non-empty 1-D array, got shape {cmc.shape}")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ranks = np.arange(1, cmc.size + 1)
    ax.plot(ranks, 100 * cmc, color="#1f77b4", linewidth=2)
    for k in (1, 5, 10, 20):
        if k <= cmc.size:
            ax.plot(k, 100 * cmc[k - 1], "o", color="#ff7f0e")
            ax.annotate(f"R{k} {100 * cmc[k - 1]:.1f}", (k, 100 * cmc[k - 1]), textcoords="offset points",
                        xytext=(6, -12), fontsize=8)
    ax.set(xlabel="rank k", ylabel="matching rate (%)", title=title, xlim=(0.5, cmc.size + 0.5))
    ax.set_ylim(max(0.0, 100 * cmc.min() - 5), 100.5)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _thumbnail(path: str | Path) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: image not found")
    with Image.open(p) as img:
        return np.asarray(img.convert("RGB").resize((_THUMB_HW[1], _THUMB_HW[0]), Image.Resampling.BILINEAR))


def plot_ranked_lists(
    query_paths: Sequence[str | Path],
    gallery_paths: Sequence[str | Path],
    distmat: np.ndarray,
    query_pids: np.ndarray,
    gallery_pids: np.ndarray,
    query_camids: np.ndarray,
    gallery_camids: np.ndarray,
    path: str | Path,
    *,
    num_queries: int = 8,
    top_k: int = 10,
    seed: int = 0,
) -> Path:
    """Ranked lists of a few random queries: each row is the query then its top-k gallery images.

    Gallery images of the query's person taken by the query's camera are skipped, as in
    :func:`~training.evaluation.metrics.evaluate_rank`. Correct matches get a green border, wrong ones red;
    each tile is captioned with its rank, person id and distance.

    Args:
        query_paths: Q query image files.
        gallery_paths: G gallery image files.
        distmat: Q × G distances (smaller = more similar).
        query_pids: Q person ids.
        gallery_pids: G person ids.
        query_camids: Q camera ids.
        gallery_camids: G camera ids.
        path: Output PNG (e.g. ``ranks.png``).
        num_queries: Queries shown (fewer if there are fewer).
        top_k: Gallery images per query.
        seed: Seed of the query choice.

    Raises:
        ValueError: Shapes that disagree or non-positive counts.
        FileNotFoundError: An image to show is missing.
    """
    distmat = np.asarray(distmat)
    q_pids, g_pids = np.asarray(query_pids), np.asarray(gallery_pids)
    q_cams, g_cams = np.asarray(query_camids), np.asarray(gallery_camids)
    num_q, num_g = len(query_paths), len(gallery_paths)
    if distmat.shape != (num_q, num_g):
        raise ValueError(f"distmat must be {num_q} × {num_g} (queries × gallery), got {distmat.shape}")
    shapes = (q_pids.shape, q_cams.shape, g_pids.shape, g_cams.shape)
    if shapes != ((num_q,), (num_q,), (num_g,), (num_g,)):
        raise ValueError("person / camera id arrays must match the numbers of query and gallery paths")
    if num_queries < 1 or top_k < 1:
        raise ValueError(f"num_queries and top_k must be >= 1, got {num_queries} and {top_k}")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(num_q, size=min(num_queries, num_q), replace=False))

    plt = _pyplot()
    cols = top_k + 1
    fig, axes = plt.subplots(len(chosen), cols, figsize=(1.05 * cols, 2.25 * len(chosen)), squeeze=False)
    for row, qi in enumerate(chosen):
        order = np.argsort(distmat[qi], kind="stable")
        junk = (g_pids[order] == q_pids[qi]) & (g_cams[order] == q_cams[qi])
        ranked = order[~junk][:top_k]
        query_caption = f"query\nid {q_pids[qi]} cam {q_cams[qi]}"
        _tile(axes[row, 0], _thumbnail(query_paths[qi]), query_caption, "black", 1.5)
        for col in range(1, cols):
            ax = axes[row, col]
            if col - 1 >= len(ranked):
                ax.axis("off")
                continue
            gi = ranked[col - 1]
            color = _CORRECT if g_pids[gi] == q_pids[qi] else _WRONG
            caption = f"#{col} id {g_pids[gi]}\nd={distmat[qi, gi]:.3g}"
            _tile(ax, _thumbnail(gallery_paths[gi]), caption, color, 4.0)
    fig.suptitle(f"top-{top_k} ranked gallery (green = same person, red = different)", fontsize=10)
    height_in = fig.get_size_inches()[1]
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.35 / height_in))  # leave room for the suptitle
    return _save(fig, path)


def _tile(ax: Any, image: np.ndarray, caption: str, color: str, width: float) -> None:
    ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(color)
        spine.set_linewidth(width)
    ax.set_title(caption, fontsize=7, color=color)


def plot_distance_histograms(
    same_scores: np.ndarray,
    diff_scores: np.ndarray,
    path: str | Path,
    metric: str,
    *,
    thresholds: Mapping[str, float] | None = None,
    bins: int = 60,
) -> Path:
    """Overlaid, density-normalised histograms of same-person and different-person pair scores.

    Args:
        same_scores: Scores of same-person pairs.
        diff_scores: Scores of different-person pairs.
        path: Output PNG (e.g. ``distances.png``).
        metric: Name of the score, used in the axis label.
        thresholds: Optional named thresholds drawn as vertical lines (e.g. the calibrated ones).
        bins: Number of histogram bins over the common range.

    Raises:
        ValueError: Empty score arrays or ``bins`` < 1.
    """
    same = np.asarray(same_scores, dtype=np.float64).ravel()
    diff = np.asarray(diff_scores, dtype=np.float64).ravel()
    if same.size == 0 or diff.size == 0:
        raise ValueError(f"need same and different scores, got {same.size} and {diff.size}")
    at_least("bins", bins, 1)
    lo, hi = min(same.min(), diff.min()), max(same.max(), diff.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(diff, bins=edges, density=True, alpha=0.55, color=_WRONG, label=f"different person ({diff.size})")
    ax.hist(same, bins=edges, density=True, alpha=0.55, color=_CORRECT, label=f"same person ({same.size})")
    for i, (name, value) in enumerate((thresholds or {}).items()):
        ax.axvline(value, color="black", linestyle=("--", ":", "-.")[i % 3], linewidth=1.2,
                   label=f"{name} = {value:.4g}")
    ax.set(xlabel=f"{metric} score", ylabel="density", title=f"pair scores ({metric})")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_roc(
    fpr: np.ndarray,
    tpr: np.ndarray,
    path: str | Path,
    *,
    marks: Sequence[float] = DEFAULT_FMR_TARGETS,
    title: str = "ROC",
) -> Path:
    """ROC with a logarithmic false-match-rate axis and the TPR marked at each FMR in ``marks``.

    The TPR at a mark is the largest TPR whose FPR is at most the mark (as in
    :func:`~training.evaluation.calibration.threshold_at_fmr`). FPR = 0 points are drawn at the left edge.

    Args:
        fpr: False-match rates, non-decreasing (e.g. ``roc_curve(...).fpr``).
        tpr: True-match rates, same length.
        path: Output PNG (e.g. ``roc.png``).
        marks: FMR values to annotate.
        title: Figure title.

    Raises:
        ValueError: Empty or different-length arrays.
    """
    fpr = np.asarray(fpr, dtype=np.float64).ravel()
    tpr = np.asarray(tpr, dtype=np.float64).ravel()
    if fpr.size == 0 or fpr.shape != tpr.shape:
        raise ValueError(f"fpr and tpr must be non-empty and equally long, got {fpr.size} and {tpr.size}")
    positive = fpr[fpr > 0]
    floor = min([*marks, positive.min() if positive.size else 1.0]) / 10.0
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.step(np.maximum(fpr, floor), tpr, where="post", color="#1f77b4", linewidth=2)
    for mark in marks:
        ok = fpr <= mark
        value = float(tpr[ok].max()) if ok.any() else 0.0
        ax.plot(mark, value, "o", color="#ff7f0e")
        ax.annotate(f"TPR {100 * value:.1f}% @ FMR {mark:.0e}", (mark, value), textcoords="offset points",
                    xytext=(5, -12), fontsize=8)
    ax.set_xscale("log")
    ax.set(xlabel="false-match rate", ylabel="true-match rate", title=title)
    ax.set(xlim=(floor, 1.0), ylim=(0.0, 1.02))
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path)
