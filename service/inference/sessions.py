"""onnxruntime sessions for one model folder: provider selection, embedding, verification head (or the
pairwise encoder and comparator, :mod:`service.inference.pairwise`).

``device="auto"`` asks for ``CUDAExecutionProvider`` when onnxruntime lists it and then checks
``session.get_providers()``: onnxruntime silently falls back to CPU when CUDA cannot be initialised, so the
active provider is always read back from the session, never assumed. ``device="cuda"`` without a working CUDA
provider raises :class:`ProviderUnavailableError` (the service stays live but not ready).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.contract import tensors
from service.contract.kinds import get as get_kind
from service.contract.manifest import ModelManifest, load
from service.contract.preprocess import PreprocessSpec
from service.contract.scoring import HeadWeights, pair_scores
from service.inference.pairwise import PairwiseModel, split_rows

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
logger = logging.getLogger(__name__)


class ProviderUnavailableError(RuntimeError):
    """The requested execution provider cannot be used on this machine."""


class HeadMismatchError(RuntimeError):
    """``head_weights`` do not reproduce ``verification_head.onnx``."""


def requested_providers(device: str) -> list[str]:
    """Providers to ask onnxruntime for, best first.

    Raises:
        ValueError: ``device`` is not auto, cuda or cpu.
        ProviderUnavailableError: ``device="cuda"`` and onnxruntime has no CUDA provider.
    """
    available = ort.get_available_providers()
    if device == "cpu":
        return [CPU]
    if device == "auto":
        return [CUDA, CPU] if CUDA in available else [CPU]
    if device == "cuda":
        if CUDA not in available:
            raise ProviderUnavailableError(
                f"device=cuda but onnxruntime has no {CUDA} (available: {', '.join(available)}); "
                "install onnxruntime-gpu with a working CUDA, or set REID_DEVICE=cpu"
            )
        return [CUDA, CPU]
    raise ValueError(f"device must be one of auto, cuda, cpu; got {device!r}")


def create_session(path: Path, device: str, intra_op_threads: int = 0) -> ort.InferenceSession:
    """An inference session on the requested device, with the active provider verified."""
    options = ort.SessionOptions()
    if intra_op_threads > 0:
        options.intra_op_num_threads = intra_op_threads
    options.log_severity_level = 3
    # no busy-waiting worker threads: on shared CPUs spinning makes latency erratic and burns idle cores
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = requested_providers(device)
    session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    active = session.get_providers()
    if device == "cuda" and CUDA not in active:
        raise ProviderUnavailableError(
            f"device=cuda but onnxruntime could not create {CUDA} for {path.name} (active: {active}); "
            "check the CUDA/cuDNN installation or set REID_DEVICE=cpu"
        )
    return session


@dataclass
class ModelRuntime:
    """The loaded sessions of one model folder.

    Attributes:
        manifest: The validated manifest.
        folder: The model folder.
        embedding: Session of ``embedding.onnx`` (``images`` → ``embeddings``); ``encoder.onnx`` for
            pairwise models.
        head: Session of ``verification_head.onnx`` (siamese models only).
        head_weights: Weights of the head's same-minus-different logit (siamese models only).
        provider: The provider the embedding session actually runs on.
        pairwise: Encoder and comparator (pairwise models only).
    """

    manifest: ModelManifest
    folder: Path
    embedding: ort.InferenceSession
    head: ort.InferenceSession | None
    head_weights: HeadWeights | None
    provider: str
    pairwise: PairwiseModel | None = None

    @classmethod
    def load(cls, folder: str | Path, device: str = "auto", intra_op_threads: int = 0) -> ModelRuntime:
        """Validate the manifest (checksums included) and open the sessions.

        Raises:
            ManifestError: Invalid manifest or checksum mismatch.
            ProviderUnavailableError: ``device="cuda"`` without a usable CUDA provider.
        """
        folder = Path(folder)
        manifest = load(folder)
        kind = get_kind(manifest.kind)
        if kind.comparator:
            pairwise = PairwiseModel.load(manifest, folder, create_session, device, intra_op_threads)
            provider = pairwise.encoder.get_providers()[0]
            logger.info("pairwise model %s loaded on %s", manifest.model_id, provider)
            return cls(manifest, folder, pairwise.encoder, None, None, provider, pairwise)
        embedding = create_session(manifest.file_path(folder, kind.embed_role), device, intra_op_threads)
        head = weights = None
        if kind.verification_head:
            head = create_session(manifest.file_path(folder, "verification_head"), device, intra_op_threads)
            weights = HeadWeights.from_npz(manifest.file_path(folder, "head_weights"), manifest.embedding_dim)
        provider = embedding.get_providers()[0]
        logger.info("model %s loaded on %s", manifest.model_id, provider)
        return cls(manifest, folder, embedding, head, weights, provider)

    @property
    def spec(self) -> PreprocessSpec:
        """The preprocessing the model expects."""
        return self.manifest.input.to_spec()

    @property
    def kind(self) -> str:
        """embedding | siamese | pairwise."""
        return self.manifest.kind

    def embed(self, images: np.ndarray) -> np.ndarray:
        """Run the model on an (N, 3, H, W) float32 batch (what the micro-batcher runs).

        Returns:
            (N, D) float32 embeddings; for pairwise models (N, D + E) rows ``[descriptor | encoding]``, taken
            apart by :meth:`split`.
        """
        if self.pairwise is not None:
            return self.pairwise.rows(images)
        (out,) = self.embedding.run(
            [tensors.EMBEDDINGS], {tensors.IMAGES: np.ascontiguousarray(images, dtype=np.float32)}
        )
        out = np.asarray(out, dtype=np.float32)
        if out.ndim != 2 or out.shape[1] != self.manifest.embedding_dim:
            raise RuntimeError(
                f"embedding.onnx returned shape {out.shape}, expected (N, {self.manifest.embedding_dim})"
            )
        return out

    def split(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Outputs of :meth:`embed` → (embeddings or descriptors (N, D), encodings (N, E) or None)."""
        if self.pairwise is None:
            return rows, None
        return split_rows(rows, self.manifest.embedding_dim, self.pairwise.encoding_dim)

    def same_probability(self, emb_a: np.ndarray, emb_b: np.ndarray) -> np.ndarray:
        """p(same person) for each pair of rows through ``verification_head.onnx`` → (N,) float32."""
        if self.head is None or self.manifest.verification is None:
            raise ValueError(
                f"model {self.manifest.model_id} has no verification head (kind {self.manifest.kind})"
            )
        feeds = {
            tensors.EMBEDDINGS_A: emb_a.astype(np.float32),
            tensors.EMBEDDINGS_B: emb_b.astype(np.float32),
        }
        (probs,) = self.head.run([tensors.PROBABILITIES], feeds)
        return np.asarray(probs, dtype=np.float32)[:, self.manifest.verification.same_index]

    def warm_up(self, rng_seed: int = 0, pairs: int = 8, tolerance: float = 1e-4) -> float:
        """Run one inference (and check the head weights against the head graph); returns the max deviation.

        Pairwise models: encode and compare random images and check the descriptors' norms instead.

        Raises:
            HeadMismatchError: The exact-search weights disagree with the verification head.
            PairwiseContractError: The pairwise graphs break the manifest's contract.
        """
        spec = self.spec
        if self.pairwise is not None:
            return self.pairwise.warm_up(spec.height, spec.width, rng_seed)
        rng = np.random.default_rng(rng_seed)
        images = rng.standard_normal((2, 3, spec.height, spec.width)).astype(np.float32)
        emb = self.embed(images)
        if self.head is None or self.head_weights is None:
            return 0.0
        a = rng.standard_normal((pairs, emb.shape[1])).astype(np.float32) * np.abs(emb).mean()
        b = a + 0.3 * rng.standard_normal(a.shape).astype(np.float32) * np.abs(emb).mean()
        onnx_p = self.same_probability(a, b)
        exact_p = pair_scores("softmax", a, b, self.head_weights)
        deviation = float(np.max(np.abs(onnx_p - exact_p)))
        if deviation > tolerance:
            raise HeadMismatchError(
                f"{self.folder}: head_weights disagree with verification_head.onnx on random pairs "
                f"(max |Δp| = {deviation:.2e} > {tolerance:.0e}); exact softmax search would be wrong"
            )
        return deviation
