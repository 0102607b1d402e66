"""k-reciprocal re-ranking (Zhong, Zheng, Cao and Li, "Re-ranking Person Re-identification with k-reciprocal
Encoding", CVPR 2017), on distance matrices, in numpy + scipy.sparse.

The algorithm, over all N = Q + G images (queries and gallery together):

1. ``d(i, j)`` = squared original distance, divided by the largest one in row i.
2. ``R(i, k)`` = the k-reciprocal neighbours of i: j in the k nearest of i *and* i in the k nearest of j
   (each list includes the image itself). With k = k1 this gives ``R(i, k1)``.
3. Expansion: for each j in ``R(i, k1)``, add ``R(j, round(k1 / 2))`` when more than 2/3 of it already
   lies in ``R(i, k1)``.
4. ``V[i, j] = exp(-d(i, j))`` over the expanded set, normalised to sum 1 per row (a sparse vector).
5. Local query expansion: ``V[i] ← mean of V over the k2 nearest neighbours of i`` (skipped when k2 == 1).
6. Jaccard distance ``J(i, j) = 1 − Σ_k min(V[i,k], V[j,k]) / Σ_k max(V[i,k], V[j,k])``; as every row of V
   sums to 1, ``Σ max = 2 − Σ min``.
7. ``final = (1 − λ)·J + λ·d``, returned for the query × gallery block.

Memory and time, unlike the usual implementation that holds several dense N × N matrices (float32 distance,
int32 argsort, float16/float32 V, Jaccard) — about 6 GB at Market-1501 size (N ≈ 19.7k):

* the N × N distance matrix is never assembled: rows are built ``chunk_size`` at a time from the three input
  blocks, and only the top ``max(k1 + 1, k2)`` neighbours per row are kept (argpartition, O(N²) time,
  O(chunk_size · N) scratch memory);
* V is a float32 ``scipy.sparse`` matrix with O(k1 · k2) non-zeros per row (the reference keeps it dense);
* the Jaccard step uses the inverted index (column-compressed V over the gallery) and ``np.bincount``, a
  chunk of queries at a time: time O(Q · nnz(V row) · mean column occupancy), memory O(chunk_size · G).

Peak memory is the inputs plus the Q × G float32 output plus O(N · k1²) — the k-reciprocal tests are
vectorised over a block of rows of size N_block × (k1 + 1) × (k1/2 + 1) × (k1 + 1) booleans.
Inputs are expected to be symmetric where they should be (``q_q_dist``, ``g_g_dist``), as distances are.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from training.checks import at_least, unit_interval


def _validate(
    q_g_dist: np.ndarray, q_q_dist: np.ndarray, g_g_dist: np.ndarray, k1: int, k2: int, lambda_value: float
) -> None:
    if q_g_dist.ndim != 2:
        raise ValueError(f"q_g_dist must be 2-D (queries × gallery), got shape {q_g_dist.shape}")
    num_q, num_g = q_g_dist.shape
    if q_q_dist.shape != (num_q, num_q):
        raise ValueError(f"q_q_dist must be {num_q} × {num_q}, got shape {q_q_dist.shape}")
    if g_g_dist.shape != (num_g, num_g):
        raise ValueError(f"g_g_dist must be {num_g} × {num_g}, got shape {g_g_dist.shape}")
    if num_q == 0 or num_g == 0:
        raise ValueError(f"need at least one query and one gallery image, got {num_q} and {num_g}")
    if k1 < 1 or k2 < 1:
        raise ValueError(f"k1 and k2 must be >= 1, got k1={k1}, k2={k2}")
    unit_interval("lambda_value", lambda_value, include_one=True)
    for name, d in (("q_g_dist", q_g_dist), ("q_q_dist", q_q_dist), ("g_g_dist", g_g_dist)):
        if not np.all(np.isfinite(d)):
            raise ValueError(f"{name} contains NaN or infinite values")


class _FullDistance:
    """Rows and entries of the (never assembled) N × N matrix [[q_q, q_g], [q_gᵀ, g_g]]."""

    def __init__(self, q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray) -> None:
        self.q_g, self.q_q, self.g_g = q_g, q_q, g_g
        self.num_q = q_g.shape[0]
        self.n = self.num_q + q_g.shape[1]

    def raw_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of the original distances, float32."""
        parts = []
        if start < self.num_q:
            s, e = start, min(stop, self.num_q)
            parts.append(np.concatenate([self.q_q[s:e], self.q_g[s:e]], axis=1))
        if stop > self.num_q:
            s, e = max(start, self.num_q) - self.num_q, stop - self.num_q
            parts.append(np.concatenate([self.q_g[:, s:e].T, self.g_g[s:e]], axis=1))
        return np.concatenate(parts, axis=0).astype(np.float32, copy=False)

    def raw_entries(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Original distances at (rows[t], cols[t]), float32."""
        out = np.empty(len(rows), dtype=np.float32)
        nq = self.num_q
        for r_is_q in (True, False):
            for c_is_q in (True, False):
                sel = ((rows < nq) == r_is_q) & ((cols < nq) == c_is_q)
                r = rows[sel] if r_is_q else rows[sel] - nq
                c = cols[sel] if c_is_q else cols[sel] - nq
                if r_is_q and c_is_q:
                    out[sel] = self.q_q[r, c]
                elif r_is_q:
                    out[sel] = self.q_g[r, c]
                elif c_is_q:
                    out[sel] = self.q_g[c, r]
                else:
                    out[sel] = self.g_g[r, c]
        return out


def _nearest(full: _FullDistance, depth: int, chunk_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``depth`` nearest images per row (sorted, self usually first) and each row's max d²."""
    ranks = np.empty((full.n, depth), dtype=np.int64)
    row_max = np.empty(full.n, dtype=np.float32)
    for start in range(0, full.n, chunk_size):
        stop = min(start + chunk_size, full.n)
        d = np.square(full.raw_rows(start, stop))
        row_max[start:stop] = d.max(axis=1)
        if depth < full.n:
            part = np.argpartition(d, depth - 1, axis=1)[:, :depth]
        else:
            part = np.broadcast_to(np.arange(full.n), d.shape)
        order = np.argsort(np.take_along_axis(d, part, axis=1), axis=1, kind="stable")
        ranks[start:stop] = np.take_along_axis(part, order, axis=1)
    row_max[row_max == 0] = 1.0  # a row of identical images: keep d = 0 instead of 0 / 0
    return ranks, row_max


def _reciprocal_mask(ranks: np.ndarray, k: int) -> np.ndarray:
    """mask[i, t]: ranks[i, t] (t < k) is a k-reciprocal neighbour of i (i is in its first k too)."""
    fwd = ranks[:, :k]
    mask = np.empty(fwd.shape, dtype=bool)
    rows = np.arange(len(ranks))
    block = max(1, 2_000_000 // (k * k))
    for s in range(0, len(ranks), block):
        back = fwd[fwd[s : s + block]]  # block × k × k
        mask[s : s + block] = (back == rows[s : s + block, None, None]).any(axis=2)
    return mask


def _expanded_sets(ranks: np.ndarray, k1: int) -> sparse.csr_matrix:
    """N × N 0/1 matrix of the expanded k-reciprocal set of every image (steps 2-3)."""
    n = len(ranks)
    k_full, k_half = min(k1 + 1, ranks.shape[1]), min(int(np.around(k1 / 2.0)) + 1, ranks.shape[1])
    fwd, half = ranks[:, :k_full], ranks[:, :k_half]
    recip = _reciprocal_mask(ranks, k_full)  # n × k_full
    half_recip = _reciprocal_mask(ranks, k_half)  # n × k_half
    rows_out, cols_out = [], []
    block = max(1, 4_000_000 // (k_full * k_full * k_half))
    for s in range(0, n, block):
        e = min(s + block, n)
        r_idx = np.where(recip[s:e], fwd[s:e], -1)  # b × k_full, -1 = not reciprocal
        cand_sets = np.where(half_recip[fwd[s:e]], half[fwd[s:e]], -2)  # b × k_full × k_half
        in_r = (cand_sets[..., None] == r_idx[:, None, None, :]).any(axis=3)  # b × k_full × k_half
        overlap = in_r.sum(axis=2)
        size = half_recip[fwd[s:e]].sum(axis=2)
        accept = recip[s:e] & (overlap > 2.0 / 3.0 * size)  # candidate must itself be reciprocal
        b_rows = np.arange(s, e)
        keep_r = r_idx >= 0
        rows_out.append(np.broadcast_to(b_rows[:, None], r_idx.shape)[keep_r])
        cols_out.append(r_idx[keep_r])
        keep_c = accept[..., None] & (cand_sets >= 0)
        rows_out.append(np.broadcast_to(b_rows[:, None, None], cand_sets.shape)[keep_c])
        cols_out.append(cand_sets[keep_c])
    rows, cols = np.concatenate(rows_out), np.concatenate(cols_out)
    member = sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n, n))
    member.sum_duplicates()
    member.data[:] = 1.0
    return member


def re_ranking(
    q_g_dist: np.ndarray,
    q_q_dist: np.ndarray,
    g_g_dist: np.ndarray,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    *,
    chunk_size: int = 256,
) -> np.ndarray:
    """Re-rank a query × gallery distance matrix with k-reciprocal encoding.

    Args:
        q_g_dist: Q × G query-gallery distances (smaller = more similar), e.g. euclidean or cosine.
        q_q_dist: Q × Q query-query distances.
        g_g_dist: G × G gallery-gallery distances.
        k1: Size of the k-reciprocal neighbourhood (paper: 20).
        k2: Neighbours averaged in local query expansion (paper: 6; 1 disables it).
        lambda_value: Weight of the original distance in the result (paper: 0.3; 0 = Jaccard only).
        chunk_size: Rows processed at once; scratch memory is about ``chunk_size × (Q + G)`` floats.

    Returns:
        Q × G float32 re-ranked distances (smaller = more similar).

    Raises:
        ValueError: Shapes that do not fit together, non-finite distances, or out-of-range parameters.
    """
    q_g, q_q, g_g = np.asarray(q_g_dist), np.asarray(q_q_dist), np.asarray(g_g_dist)
    _validate(q_g, q_q, g_g, k1, k2, lambda_value)
    at_least("chunk_size", chunk_size, 1)
    full = _FullDistance(q_g, q_q, g_g)
    n, num_q, num_g = full.n, q_g.shape[0], q_g.shape[1]

    ranks, row_max = _nearest(full, min(max(k1 + 1, k2), n), chunk_size)
    member = _expanded_sets(ranks, k1).tocoo()
    # Step 4: weights exp(-d(i, j)) over each expanded set, normalised per row.
    d_ij = np.square(full.raw_entries(member.row, member.col)) / row_max[member.row]
    weights = np.exp(-d_ij).astype(np.float32)
    row_sums = np.bincount(member.row, weights=weights, minlength=n)
    weights /= row_sums[member.row].astype(np.float32)
    v = sparse.csr_matrix((weights, (member.row, member.col)), shape=(n, n), dtype=np.float32)
    # Step 5: local query expansion as a sparse averaging matrix.
    if k2 != 1:
        k2_eff = min(k2, n)
        avg = sparse.csr_matrix(
            (
                np.full(n * k2_eff, 1.0 / k2_eff, dtype=np.float32),
                (np.repeat(np.arange(n), k2_eff), ranks[:, :k2_eff].ravel()),
            ),
            shape=(n, n),
        )
        v = (avg @ v).tocsr()
    v.sort_indices()

    # Step 6: Jaccard via the inverted index of the gallery rows of V (column-compressed).
    v_gallery = v[num_q:].tocsc()
    v_gallery.sort_indices()
    final = np.empty((num_q, num_g), dtype=np.float32)
    for start in range(0, num_q, chunk_size):
        stop = min(start + chunk_size, num_q)
        block = v[start:stop].tocoo()  # (local query, column k, V[i, k])
        col_start = v_gallery.indptr[block.col]
        lengths = v_gallery.indptr[block.col + 1] - col_start
        owner = np.repeat(np.arange(len(block.col)), lengths)  # which (query, k) entry each hit belongs to
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        hit = col_start[owner] + offsets
        mins = np.minimum(block.data[owner], v_gallery.data[hit])
        bins = block.row[owner].astype(np.int64) * num_g + v_gallery.indices[hit]
        shared = np.bincount(bins, weights=mins, minlength=(stop - start) * num_g)
        shared = shared.reshape(stop - start, num_g)
        jaccard = 1.0 - shared / (2.0 - shared)
        original = np.square(q_g[start:stop].astype(np.float32)) / row_max[start:stop, None]
        final[start:stop] = (1.0 - lambda_value) * jaccard + lambda_value * original
    return final
