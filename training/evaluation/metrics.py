"""Ranking metrics for re-ID: CMC, mAP and mINP under the Market-1501 protocol (numpy only).

For each query, gallery images of the same person taken by the same camera are removed (they are trivially
easy matches); queries left with no correct match in the gallery are skipped and counted. CMC rank-k is the
fraction of queries whose first correct match is within the top k; AP averages precision at every correct
match; INP (Ye et al., 2021) is (number of correct matches) / (rank of the hardest correct match).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from training.checks import at_least

if TYPE_CHECKING:  # only for annotations: keeps this module numpy only
    from training.data.datasets.base import ImageRecord


class RankIds(NamedTuple):
    """Person and camera ids of a query × gallery evaluation: the rows and columns of its distance matrix.

    In :func:`evaluate_rank`'s argument order, so ``evaluate_rank(distmat, *ids)`` ranks with them.
    """

    query_pids: np.ndarray
    gallery_pids: np.ndarray
    query_camids: np.ndarray
    gallery_camids: np.ndarray

    @classmethod
    def of(cls, query: Sequence[ImageRecord], gallery: Sequence[ImageRecord]) -> RankIds:
        """The ids of query and gallery records."""
        return cls(
            np.array([r.person_id for r in query], dtype=np.int64),
            np.array([r.person_id for r in gallery], dtype=np.int64),
            np.array([r.camera_id for r in query], dtype=np.int64),
            np.array([r.camera_id for r in gallery], dtype=np.int64),
        )

    def gallery_columns(self, columns: np.ndarray) -> RankIds:
        """The same queries against the gallery images ``columns`` only."""
        return self._replace(
            gallery_pids=np.asarray(self.gallery_pids)[columns],
            gallery_camids=np.asarray(self.gallery_camids)[columns],
        )


@dataclass(frozen=True)
class RankResult:
    """Ranking metrics over the valid queries.

    Attributes:
        cmc: cmc[k-1] is the rank-k accuracy (fraction in [0, 1]).
        mean_ap: Mean average precision.
        mean_inp: Mean inverse negative penalty.
        num_valid_queries: Queries with at least one correct match in their gallery.
        num_skipped_queries: Queries with none (excluded from every metric).
    """

    cmc: np.ndarray
    mean_ap: float
    mean_inp: float
    num_valid_queries: int
    num_skipped_queries: int

    def rank(self, k: int) -> float:
        """Rank-k accuracy (k ≥ 1); beyond the computed depth the last value holds."""
        at_least("rank k", k, 1)
        return float(self.cmc[min(k, len(self.cmc)) - 1])

    def as_dict(self) -> dict[str, float]:
        """Flat dict of the headline numbers (fractions in [0, 1]) and counts."""
        return {
            "rank1": self.rank(1),
            "rank5": self.rank(5),
            "rank10": self.rank(10),
            "rank20": self.rank(20),
            "mAP": self.mean_ap,
            "mINP": self.mean_inp,
            "num_valid_queries": float(self.num_valid_queries),
            "num_skipped_queries": float(self.num_skipped_queries),
        }


def evaluate_rank(
    distmat: np.ndarray,
    query_pids: np.ndarray,
    gallery_pids: np.ndarray,
    query_camids: np.ndarray,
    gallery_camids: np.ndarray,
    max_rank: int = 50,
    remove_same_camera: bool = True,
) -> RankResult:
    """CMC, mAP and mINP from a query × gallery distance matrix (smaller = more similar).

    Args:
        distmat: Q × G distances.
        query_pids: Q person ids.
        gallery_pids: G person ids.
        query_camids: Q camera ids.
        gallery_camids: G camera ids.
        max_rank: Length of the returned CMC curve.
        remove_same_camera: Apply the Market protocol's same-person-same-camera removal. Set False for
            custom query / gallery sets with no meaningful camera ids.

    Raises:
        ValueError: Shapes disagree, or no query has a correct match.
    """
    distmat = np.asarray(distmat)
    q_pids, g_pids = np.asarray(query_pids), np.asarray(gallery_pids)
    q_cams, g_cams = np.asarray(query_camids), np.asarray(gallery_camids)
    if distmat.ndim != 2:
        raise ValueError(f"distmat must be 2-D (queries × gallery), got shape {distmat.shape}")
    num_q, num_g = distmat.shape
    if q_pids.shape != (num_q,) or q_cams.shape != (num_q,):
        raise ValueError(f"expected {num_q} query ids and cameras, got {q_pids.shape} and {q_cams.shape}")
    if g_pids.shape != (num_g,) or g_cams.shape != (num_g,):
        raise ValueError(f"expected {num_g} gallery ids and cameras, got {g_pids.shape} and {g_cams.shape}")
    at_least("max_rank", max_rank, 1)
    if not np.all(np.isfinite(distmat)):
        raise ValueError("distmat contains NaN or infinite values")

    # Stable sort so that ties are broken by gallery order, the same way every time.
    order = np.argsort(distmat, axis=1, kind="stable")
    matches = g_pids[order] == q_pids[:, None]

    cmc_sum = np.zeros(max_rank, dtype=np.float64)
    ap_sum = inp_sum = 0.0
    valid = 0
    for i in range(num_q):
        keep = ~((g_pids[order[i]] == q_pids[i]) & (g_cams[order[i]] == q_cams[i]))
        if not remove_same_camera:
            keep[:] = True
        hits = matches[i][keep]
        if not hits.any():
            continue
        valid += 1
        hit_ranks = np.flatnonzero(hits)  # 0-based positions of correct matches
        first = hit_ranks[0]
        if first < max_rank:
            cmc_sum[first:] += 1.0
        num_rel = len(hit_ranks)
        precision_at_hits = np.arange(1, num_rel + 1) / (hit_ranks + 1)
        ap_sum += float(precision_at_hits.mean())
        inp_sum += num_rel / float(hit_ranks[-1] + 1)
    skipped = num_q - valid
    if valid == 0:
        raise ValueError("no query has a correct match in the gallery; check person ids and camera ids")
    return RankResult(
        cmc=cmc_sum / valid,
        mean_ap=ap_sum / valid,
        mean_inp=inp_sum / valid,
        num_valid_queries=valid,
        num_skipped_queries=skipped,
    )
