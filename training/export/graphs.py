"""Write a model's ONNX files into a folder and gate each one on parity with PyTorch.

What is written depends on the model type:

* :class:`~training.models.reid_model.EmbeddingModel` → ``embedding.onnx``;
* :class:`~training.models.reid_model.SiameseModel` → ``embedding.onnx`` + ``verification_head.onnx`` +
  ``head_weights.npz``;
* :class:`~training.models.multidepth.MultiDepthVGG` (with a filter selection) → ``embedding.onnx`` holding
  the selection and the box smoothing (an embedding model for the service);
* :class:`~training.models.mls.MLSNet` (pairwise) → ``encoder.onnx`` (``images`` → ``encoding`` N×E,
  ``descriptor`` N×256) + ``comparator.onnx`` (``encoding_a``, ``encoding_b`` → ``score``, ``probabilities``,
  ``distance``), the comparator with the ``"padded"`` correlation, so it takes at most
  :data:`COMPARATOR_MAX_BATCH` pairs per call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from service.contract.parity import ParityReport
from service.contract.scoring import HeadWeights, pair_scores
from training.export.onnx_io import DEFAULT_OPSET, ExportError, assert_eval_mode, export_onnx
from training.export.parity import check_parity, cpu_session, parity_rule
from training.models.heads import SAME_INDEX
from training.models.mls import (
    COMPARATOR_INPUT_NAMES,
    COMPARATOR_OUTPUT_NAMES,
    ENCODER_OUTPUT_NAMES,
    MLSComparatorExport,
    MLSEncoderExport,
    MLSNet,
)
from training.models.multidepth import DescriptorExport, MultiDepthVGG
from training.models.reid_model import EmbeddingExport, VerificationHeadExport

EMBEDDING_FILE = "embedding.onnx"
ENCODER_FILE = "encoder.onnx"
COMPARATOR_FILE = "comparator.onnx"
#: Pairs per ``comparator.onnx`` call ("padded" correlation: fastest in onnxruntime; callers chunk).
COMPARATOR_MAX_BATCH = 16
VERIFICATION_FILE = "verification_head.onnx"
HEAD_WEIGHTS_FILE = "head_weights.npz"
#: Largest allowed |p(stored linear weights) − p(verification_head.onnx)|.
HEAD_WEIGHTS_TOLERANCE = 1e-5


@dataclass
class WrittenGraphs:
    """What :func:`write_graphs` produced: role → file name, and the parity gate's rule and numbers."""

    files: dict[str, str] = field(default_factory=dict)
    parity: ParityReport = field(default_factory=ParityReport)
    embedding_dim: int = 0
    encoding_dim: int | None = None  # pairwise models: length of one flat encoding
    comparator_max_batch: int | None = None  # pairwise models: most pairs per comparator call


def _numpy_fn(module: nn.Module, output: int | None = None):
    def run(**inputs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            result = module(*(torch.from_numpy(v) for v in inputs.values()))
        return (result if output is None else result[output]).float().numpy()

    return run


def write_graphs(
    model: nn.Module,
    folder: Path,
    images: np.ndarray,
    *,
    fp16: bool = False,
    opset: int = DEFAULT_OPSET,
) -> WrittenGraphs:
    """Export ``model`` into ``folder`` (files by model type: see the module docstring) and check parity.

    Args:
        model: The trained model, in eval mode (checked for every module).
        folder: Output folder (created).
        images: At least 7 preprocessed real images, float32 N × 3 × H × W.
        fp16: Export float16 graphs (gated by the fp16 tolerances of
            :func:`~training.export.parity.parity_rule`); not for pairwise.
        opset: ONNX opset.

    Raises:
        ExportError: Train-mode module, exporter failure, checker failure, a parity failure, or a multidepth
            model without a filter selection.
        ValueError: ``fp16`` for a pairwise model.
    """
    assert_eval_mode(model)
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(model, MLSNet):
        if fp16:
            raise ValueError("--fp16 is not supported for pairwise (MLS) models; export them in fp32")
        return _write_pairwise(model, folder, images, opset=opset)
    out = WrittenGraphs(parity=ParityReport(rule=parity_rule(fp16)))
    embedder: nn.Module
    if isinstance(model, MultiDepthVGG):
        if model.selected is None:
            raise ExportError(
                "the multidepth model has no filter selection: run `reid explore-filters --checkpoint "
                "RUN/checkpoint.pt` first"
            )
        embedder = DescriptorExport(model).eval()
    else:
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
    out.parity.outputs["embedding"] = check_parity(
        folder / EMBEDDING_FILE, _numpy_fn(embedder), {"images": images}, fp16=fp16
    )
    out.files["embedding"] = EMBEDDING_FILE
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
    out.parity.outputs["verification_head"] = check_parity(
        folder / VERIFICATION_FILE, _numpy_fn(head_export), pairs, fp16=False
    )
    out.files["verification_head"] = VERIFICATION_FILE

    weight, bias = head.effective_weights()
    np.savez(folder / HEAD_WEIGHTS_FILE, weight=weight.float().numpy(), bias=np.float32(bias.item()))
    out.files["head_weights"] = HEAD_WEIGHTS_FILE
    out.parity.measured["head_weights_max_abs_diff"] = check_head_weights(folder, out.embedding_dim)
    return out


def _write_pairwise(model: MLSNet, folder: Path, images: np.ndarray, *, opset: int) -> WrittenGraphs:
    """``encoder.onnx`` + ``comparator.onnx``, each output through the parity gate at batch 1 and 7."""
    out = WrittenGraphs(parity=ParityReport(rule=parity_rule(fp16=False)))
    encoder = MLSEncoderExport(model).eval()
    export_onnx(
        encoder, (torch.from_numpy(images[:2]),), folder / ENCODER_FILE, input_names=["images"],
        output_names=list(ENCODER_OUTPUT_NAMES), opset=opset,
    )
    for index, name in enumerate(ENCODER_OUTPUT_NAMES):
        out.parity.outputs[f"encoder_{name}"] = check_parity(
            folder / ENCODER_FILE, _numpy_fn(encoder, index), {"images": images}, fp16=False, output=index
        )
    encoding, descriptor = cpu_session(folder / ENCODER_FILE).run(None, {"images": images})[:2]
    out.files["encoder"] = ENCODER_FILE
    out.embedding_dim, out.encoding_dim = int(descriptor.shape[1]), int(encoding.shape[1])

    # The training-time grouped correlation would freeze the batch into the graph; "padded" keeps it dynamic
    # up to COMPARATOR_MAX_BATCH pairs (same numbers, see DepthwiseCorrelation).
    model.set_correlation_method("padded", max_batch=COMPARATOR_MAX_BATCH)
    comparator = MLSComparatorExport(model).eval()
    example = torch.from_numpy(encoding[:2])
    export_onnx(
        comparator, (example, example.flip(0)), folder / COMPARATOR_FILE,
        input_names=list(COMPARATOR_INPUT_NAMES), output_names=list(COMPARATOR_OUTPUT_NAMES), opset=opset,
    )
    pairs = {"encoding_a": encoding, "encoding_b": np.roll(encoding, 1, axis=0)}
    for index, name in enumerate(COMPARATOR_OUTPUT_NAMES[:2]):  # score, probabilities
        out.parity.outputs[f"comparator_{name}"] = check_parity(
            folder / COMPARATOR_FILE, _numpy_fn(comparator, index), pairs, fp16=False, output=index
        )
    out.files["comparator"] = COMPARATOR_FILE
    out.comparator_max_batch = COMPARATOR_MAX_BATCH
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
