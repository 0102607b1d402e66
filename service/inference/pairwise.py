"""Pairwise models: ``encoder.onnx`` (image → encoding + descriptor) and ``comparator.onnx`` (two encodings →
score), as described by :class:`service.contract.manifest.PairwiseSpec`.

The micro-batcher runs one function per batch that returns one row per image, so the encoder's two outputs
travel together as rows ``[descriptor (D) | encoding (E)]`` (:meth:`PairwiseModel.rows`) and are taken apart
again with :func:`split_rows`. The descriptor (L2-normalized) is what the FAISS shortlist searches; the
encoding is what the comparator needs and what the gallery stores per entry (fp16).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.contract import tensors
from service.contract.kinds import get as get_kind
from service.contract.manifest import ModelManifest, PairwiseSpec

logger = logging.getLogger(__name__)

#: Pairs per comparator call when the manifest sets no ``comparator_max_batch`` (bounds the feed's memory).
DEFAULT_COMPARATOR_CHUNK = 512
#: Largest accepted deviation of a descriptor's L2 norm from 1 (the contract says L2-normalized).
NORM_TOLERANCE = 1e-3


class PairwiseContractError(RuntimeError):
    """``encoder.onnx`` or ``comparator.onnx`` does not follow the manifest's pairwise contract."""


def split_rows(rows: np.ndarray, embedding_dim: int, encoding_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Split encoder rows ``[descriptor | encoding]`` (N, D + E) into descriptors (N, D) and encodings (N, E).

    Raises:
        ValueError: The rows are not (N, D + E).
    """
    rows = np.asarray(rows, dtype=np.float32)
    if rows.ndim != 2 or rows.shape[1] != embedding_dim + encoding_dim:
        raise ValueError(
            f"pairwise rows must have shape (N, {embedding_dim} + {encoding_dim}), got {rows.shape}"
        )
    return rows[:, :embedding_dim], rows[:, embedding_dim:]


def _input_dtype(session: ort.InferenceSession, name: str) -> type[np.floating]:
    kinds = {i.name: i.type for i in session.get_inputs()}
    if name not in kinds:
        raise PairwiseContractError(f"comparator.onnx has no input {name!r} (inputs: {sorted(kinds)})")
    return np.float16 if kinds[name] == "tensor(float16)" else np.float32


def run_comparator(
    session: ort.InferenceSession, enc_a: np.ndarray, enc_b: np.ndarray, max_batch: int | None = None
) -> np.ndarray:
    """``comparator.onnx`` scores of row pairs (higher = same person) → (N,) float32.

    The pairs go in chunks of at most ``max_batch`` (default :data:`DEFAULT_COMPARATOR_CHUNK`), each fed in
    the dtype the graph declares (float32 or float16). The service and the export's calibration both call
    this, so a calibrated threshold applies to the very scores the service computes.

    Raises:
        ValueError: The encodings are not two 2-D arrays of the same shape.
        PairwiseContractError: A missing input, or a score of the wrong shape.
    """
    a, b = np.asarray(enc_a), np.asarray(enc_b)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"encodings must be two (N, E) arrays of one shape; got {a.shape} and {b.shape}")
    dtype_a = _input_dtype(session, tensors.ENCODING_A)
    dtype_b = _input_dtype(session, tensors.ENCODING_B)
    chunk = max_batch or DEFAULT_COMPARATOR_CHUNK
    scores = np.empty(len(a), dtype=np.float32)
    for start in range(0, len(a), chunk):
        stop = min(start + chunk, len(a))
        feeds = {
            tensors.ENCODING_A: np.ascontiguousarray(a[start:stop], dtype=dtype_a),
            tensors.ENCODING_B: np.ascontiguousarray(b[start:stop], dtype=dtype_b),
        }
        (score,) = session.run([tensors.SCORE], feeds)
        score = np.asarray(score, dtype=np.float32).reshape(-1)
        if score.shape != (stop - start,):
            raise PairwiseContractError(
                f"comparator.onnx returned {score.shape[0]} scores for {stop - start} pairs"
            )
        scores[start:stop] = score
    return scores


@dataclass
class PairwiseModel:
    """The two sessions of a pairwise model folder.

    Attributes:
        encoder: Session of ``encoder.onnx`` (``images`` → ``encoding``, ``descriptor``).
        comparator: Session of ``comparator.onnx`` (``encoding_a``, ``encoding_b`` → ``score``).
        spec: The manifest's pairwise section.
        embedding_dim: Descriptor length D.
    """

    encoder: ort.InferenceSession
    comparator: ort.InferenceSession
    spec: PairwiseSpec
    embedding_dim: int

    @classmethod
    def load(
        cls,
        manifest: ModelManifest,
        folder: Path,
        create: Callable[[Path, str, int], ort.InferenceSession],
        device: str,
        intra_op_threads: int,
    ) -> PairwiseModel:
        """Open both sessions with ``create(path, device, intra_op_threads)`` (see ``create_session``).

        Raises:
            ValueError: The manifest is not of kind pairwise.
        """
        if not get_kind(manifest.kind).comparator or manifest.pairwise is None:
            raise ValueError(f"{folder}: model kind {manifest.kind!r} is not pairwise")
        encoder = create(manifest.file_path(folder, "encoder"), device, intra_op_threads)
        comparator = create(manifest.file_path(folder, "comparator"), device, intra_op_threads)
        return cls(encoder, comparator, manifest.pairwise, manifest.embedding_dim)

    @property
    def encoding_dim(self) -> int:
        """Length E of one flattened encoding."""
        return self.spec.encoding_dim

    def encode(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run ``encoder.onnx`` on an (N, 3, H, W) float32 batch → (descriptors (N, D), encodings (N, E)).

        Raises:
            PairwiseContractError: An output of the wrong shape.
        """
        encoding, descriptor = self.encoder.run(
            [tensors.ENCODING, tensors.DESCRIPTOR],
            {tensors.IMAGES: np.ascontiguousarray(images, dtype=np.float32)},
        )
        n = len(images)
        encoding = np.asarray(encoding, dtype=np.float32).reshape(n, -1)
        descriptor = np.asarray(descriptor, dtype=np.float32)
        if descriptor.shape != (n, self.embedding_dim):
            raise PairwiseContractError(
                f"encoder.onnx returned descriptor shape {descriptor.shape}, "
                f"expected ({n}, {self.embedding_dim})"
            )
        if encoding.shape[1] != self.encoding_dim:
            raise PairwiseContractError(
                f"encoder.onnx returned encodings of length {encoding.shape[1]}, the manifest says "
                f"encoding_dim={self.encoding_dim}"
            )
        return descriptor, encoding

    def rows(self, images: np.ndarray) -> np.ndarray:
        """Encoder outputs as one row per image, ``[descriptor | encoding]`` (N, D + E) float32."""
        descriptor, encoding = self.encode(images)
        return np.concatenate([descriptor, encoding], axis=1)

    def compare(self, enc_a: np.ndarray, enc_b: np.ndarray) -> np.ndarray:
        """Comparator scores of row pairs (higher = same person) → (N,) float32, in chunks of at most
        ``comparator_max_batch`` pairs.

        Raises:
            ValueError: The encodings are not two (N, E) arrays of the same N.
            PairwiseContractError: The comparator's score has the wrong shape.
        """
        a = np.asarray(enc_a).reshape(len(enc_a), -1)
        b = np.asarray(enc_b).reshape(len(enc_b), -1)
        if a.shape != b.shape or a.shape[1] != self.encoding_dim:
            raise ValueError(f"encodings must both be (N, {self.encoding_dim}); got {a.shape} and {b.shape}")
        return run_comparator(self.comparator, a, b, self.spec.comparator_max_batch)

    def warm_up(self, height: int, width: int, rng_seed: int = 0) -> float:
        """Encode two random images and compare them; returns the largest descriptor-norm deviation from 1.

        Raises:
            PairwiseContractError: Wrong shapes, descriptors that are not L2-normalized, or non-finite scores.
        """
        rng = np.random.default_rng(rng_seed)
        images = rng.standard_normal((2, 3, height, width)).astype(np.float32)
        descriptor, encoding = self.encode(images)
        deviation = float(np.max(np.abs(np.linalg.norm(descriptor, axis=1) - 1.0)))
        if deviation > NORM_TOLERANCE:
            raise PairwiseContractError(
                f"encoder.onnx descriptors are not L2-normalized (max |‖d‖ − 1| = {deviation:.2e}); "
                "the FAISS shortlist searches them by cosine"
            )
        scores = self.compare(encoding, encoding[::-1])
        if not np.all(np.isfinite(scores)):
            raise PairwiseContractError(f"comparator.onnx returned non-finite scores {scores.tolist()}")
        return deviation
