"""Write ONNX files into a model folder, each gated on parity with PyTorch: the families' building blocks.

A family (:mod:`training.families`) decides which graphs it exports and calls these:

* :func:`write_embedding_graph` → ``embedding.onnx`` (``images`` → ``embeddings``) from any module mapping
  images to embeddings (the embedding and multidepth families, and the Siamese backbone);
* :func:`write_verification_head` → ``verification_head.onnx`` + ``head_weights.npz`` (the Siamese head and
  its exact logistic form, cross-checked by :func:`check_head_weights`).

The pairwise family writes its ``encoder.onnx`` + ``comparator.onnx`` itself
(:mod:`training.families.pairwise`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from service.contract import tensors
from service.contract.parity import ParityReport
from service.contract.scoring import HeadWeights, pair_scores
from training.export.onnx_io import DEFAULT_OPSET, ExportError, assert_eval_mode, export_onnx
from training.export.parity import check_parity, cpu_session, parity_rule
from training.models.heads import SAME_INDEX, VerificationHead
from training.models.reid_model import VerificationHeadExport

EMBEDDING_FILE = "embedding.onnx"
VERIFICATION_FILE = "verification_head.onnx"
HEAD_WEIGHTS_FILE = "head_weights.npz"
#: Largest allowed |p(stored linear weights) − p(verification_head.onnx)|.
HEAD_WEIGHTS_TOLERANCE = 1e-5


@dataclass
class WrittenGraphs:
    """What a family's export wrote: role → file name, and the parity gate's rule and numbers."""

    files: dict[str, str] = field(default_factory=dict)
    parity: ParityReport = field(default_factory=ParityReport)
    embedding_dim: int = 0
    encoding_dim: int | None = None  # pairwise models: length of one flat encoding
    comparator_max_batch: int | None = None  # pairwise models: most pairs per comparator call


def numpy_fn(module: nn.Module, output: int | None = None) -> Callable[..., np.ndarray]:
    """The torch module as the parity gate's reference: numpy inputs by name → numpy output ``output``."""

    def run(**inputs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            result = module(*(torch.from_numpy(v) for v in inputs.values()))
        return (result if output is None else result[output]).float().numpy()

    return run


def write_embedding_graph(
    embedder: nn.Module,
    folder: Path,
    images: np.ndarray,
    *,
    fp16: bool = False,
    opset: int = DEFAULT_OPSET,
) -> tuple[WrittenGraphs, np.ndarray]:
    """``embedding.onnx`` of ``embedder`` (eval mode, checked), through the parity gate.

    Args:
        embedder: Images → embeddings, in eval mode (checked for every module).
        folder: Output folder (created).
        images: At least 7 preprocessed real images, float32 N × 3 × H × W.
        fp16: Export float16 weights (gated by the fp16 tolerances of
            :func:`~training.export.parity.parity_rule`).
        opset: ONNX opset.

    Returns:
        The written file and parity numbers, and the ONNX embeddings of ``images``.

    Raises:
        ExportError: Train-mode module, exporter failure, checker failure or a parity failure.
    """
    assert_eval_mode(embedder)
    folder.mkdir(parents=True, exist_ok=True)
    out = WrittenGraphs(parity=ParityReport(rule=parity_rule(fp16)))
    example = torch.from_numpy(images[:2])
    export_onnx(
        embedder, (example,), folder / EMBEDDING_FILE, input_names=list(tensors.EMBEDDING_INPUTS),
        output_names=list(tensors.EMBEDDING_OUTPUTS), opset=opset, fp16=fp16,
    )
    # fp16 graphs are compared with the fp32 torch model: what matters is distance to the trained model.
    out.parity.outputs["embedding"] = check_parity(
        folder / EMBEDDING_FILE, numpy_fn(embedder), {tensors.IMAGES: images}, fp16=fp16
    )
    out.files["embedding"] = EMBEDDING_FILE
    embeddings = cpu_session(folder / EMBEDDING_FILE).run([tensors.EMBEDDINGS], {tensors.IMAGES: images})[0]
    out.embedding_dim = int(embeddings.shape[1])
    return out, embeddings


def write_verification_head(
    head: VerificationHead, folder: Path, embeddings: np.ndarray, out: WrittenGraphs, *,
    opset: int = DEFAULT_OPSET,
) -> None:
    """Add ``verification_head.onnx`` (parity-gated) and ``head_weights.npz`` (cross-checked) to ``out``."""
    head_export = VerificationHeadExport(head).eval()
    ex_a = torch.from_numpy(embeddings[:2].astype(np.float32))
    export_onnx(
        head_export, (ex_a, ex_a.flip(0)), folder / VERIFICATION_FILE, input_names=list(tensors.HEAD_INPUTS),
        output_names=list(tensors.HEAD_OUTPUTS), opset=opset, fp16=False,
    )
    pairs = {tensors.EMBEDDINGS_A: embeddings, tensors.EMBEDDINGS_B: np.roll(embeddings, 1, axis=0)}
    out.parity.outputs["verification_head"] = check_parity(
        folder / VERIFICATION_FILE, numpy_fn(head_export), pairs, fp16=False
    )
    out.files["verification_head"] = VERIFICATION_FILE
    weight, bias = head.effective_weights()
    np.savez(folder / HEAD_WEIGHTS_FILE, weight=weight.float().numpy(), bias=np.float32(bias.item()))
    out.files["head_weights"] = HEAD_WEIGHTS_FILE
    out.parity.measured["head_weights_max_abs_diff"] = check_head_weights(folder, out.embedding_dim)


def check_head_weights(folder: Path, dim: int, num_pairs: int = 100, seed: int = 0) -> float:
    """p(same) from the stored linear weights vs ``verification_head.onnx`` on random pairs.

    Returns:
        The max absolute difference (≤ 1e-5, else ExportError).
    """
    head = HeadWeights.from_npz(folder / HEAD_WEIGHTS_FILE, dim)
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((num_pairs, dim)).astype(np.float32)
    b = rng.standard_normal((num_pairs, dim)).astype(np.float32)
    feed = {tensors.EMBEDDINGS_A: a, tensors.EMBEDDINGS_B: b}
    probs = cpu_session(folder / VERIFICATION_FILE).run([tensors.PROBABILITIES], feed)[0]
    diff = float(np.max(np.abs(pair_scores("softmax", a, b, head) - probs[:, SAME_INDEX])))
    if diff > HEAD_WEIGHTS_TOLERANCE:
        raise ExportError(
            f"{HEAD_WEIGHTS_FILE}: p(same) from the stored weights differs from {VERIFICATION_FILE} by "
            f"{diff:.3g} > {HEAD_WEIGHTS_TOLERANCE:g}"
        )
    return diff
