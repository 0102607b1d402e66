"""Write a model's ONNX files into a folder and gate each one on parity with PyTorch."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from service.inference.scoring import HeadWeights, pair_scores
from training.export.onnx_io import DEFAULT_OPSET, ExportError, assert_eval_mode, export_onnx
from training.export.parity import check_parity, cpu_session
from training.models.heads import SAME_INDEX
from training.models.reid_model import EmbeddingExport, VerificationHeadExport

EMBEDDING_FILE = "embedding.onnx"
VERIFICATION_FILE = "verification_head.onnx"
HEAD_WEIGHTS_FILE = "head_weights.npz"
#: Largest allowed |p(stored linear weights) − p(verification_head.onnx)|.
HEAD_WEIGHTS_TOLERANCE = 1e-5


@dataclass
class WrittenGraphs:
    """What :func:`write_graphs` produced: role → file name, and the measured parity numbers."""

    files: dict[str, str] = field(default_factory=dict)
    parity: dict[str, float] = field(default_factory=dict)
    embedding_dim: int = 0


def _numpy_fn(module: nn.Module):
    def run(**inputs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(*(torch.from_numpy(v) for v in inputs.values())).float().numpy()

    return run


def write_graphs(
    model: nn.Module,
    folder: Path,
    images: np.ndarray,
    *,
    fp16: bool = False,
    opset: int = DEFAULT_OPSET,
) -> WrittenGraphs:
    """Export ``model`` (an EmbeddingModel or a SiameseModel) into ``folder`` and check parity.

    Args:
        model: The trained model, in eval mode (checked for every module).
        folder: Output folder (created).
        images: At least 7 preprocessed real images, float32 N × 3 × H × W.
        fp16: Export float16 graphs (gated by cosine ≥ 0.999 instead of max |Δ| ≤ 1e-4).
        opset: ONNX opset.

    Raises:
        ExportError: Train-mode module, exporter failure, checker failure or a parity failure.
    """
    assert_eval_mode(model)
    folder.mkdir(parents=True, exist_ok=True)
    out = WrittenGraphs()
    embedder = EmbeddingExport(model).eval()
    example = torch.from_numpy(images[:2])
    export_onnx(
        embedder,
        (example,),
        folder / EMBEDDING_FILE,
        input_names=["images"],
        output_names=["embeddings"],
        opset=opset,
        fp16=fp16,
    )
    # fp16 graphs are compared with the fp32 torch model: what matters is distance to the trained model.
    parity = check_parity(folder / EMBEDDING_FILE, _numpy_fn(embedder), {"images": images}, fp16=fp16)
    out.files["embedding"] = EMBEDDING_FILE
    out.parity.update(parity.as_dict("embedding"))
    out.parity["fp16"] = float(fp16)
    embeddings = cpu_session(folder / EMBEDDING_FILE).run(None, {"images": images})[0]
    out.embedding_dim = int(embeddings.shape[1])

    head = getattr(model, "verification_head", None)
    if head is None:
        return out
    head_export = VerificationHeadExport(head).eval()
    ex_a = torch.from_numpy(embeddings[:2].astype(np.float32))
    export_onnx(
        head_export,
        (ex_a, ex_a.flip(0)),
        folder / VERIFICATION_FILE,
        input_names=["embeddings_a", "embeddings_b"],
        output_names=["probabilities"],
        opset=opset,
        fp16=False,
    )
    pairs = {"embeddings_a": embeddings, "embeddings_b": np.roll(embeddings, 1, axis=0)}
    head_parity = check_parity(folder / VERIFICATION_FILE, _numpy_fn(head_export), pairs, fp16=False)
    out.files["verification_head"] = VERIFICATION_FILE
    out.parity.update(head_parity.as_dict("verification_head"))

    weight, bias = head.effective_weights()
    np.savez(folder / HEAD_WEIGHTS_FILE, weight=weight.float().numpy(), bias=np.float32(bias.item()))
    out.files["head_weights"] = HEAD_WEIGHTS_FILE
    out.parity["head_weights_max_abs_diff"] = check_head_weights(folder, out.embedding_dim)
    return out


def check_head_weights(folder: Path, dim: int, num_pairs: int = 100, seed: int = 0) -> float:
    """p(same) from the stored linear weights vs ``verification_head.onnx`` on random pairs.

    Returns:
        The max absolute difference (≤ 1e-5, else ExportError).
    """
    head = HeadWeights.from_npz(folder / HEAD_WEIGHTS_FILE, dim)
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((num_pairs, dim)).astype(np.float32)
    b = rng.standard_normal((num_pairs, dim)).astype(np.float32)
    probs = cpu_session(folder / VERIFICATION_FILE).run(None, {"embeddings_a": a, "embeddings_b": b})[0]
    diff = float(np.max(np.abs(pair_scores("softmax", a, b, head) - probs[:, SAME_INDEX])))
    if diff > HEAD_WEIGHTS_TOLERANCE:
        raise ExportError(
            f"{HEAD_WEIGHTS_FILE}: p(same) from the stored weights differs from {VERIFICATION_FILE} by "
            f"{diff:.3g} > {HEAD_WEIGHTS_TOLERANCE:g}"
        )
    return diff
