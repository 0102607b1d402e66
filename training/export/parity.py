"""The parity gate: an exported graph must reproduce PyTorch on real inputs, or the export fails."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from training.export.onnx_io import ExportError

#: Largest allowed max |torch − onnxruntime| for fp32 graphs.
FP32_MAX_ABS_DIFF = 1e-4
#: Smallest allowed per-row cosine(torch, onnxruntime) for fp16 graphs.
FP16_MIN_COSINE = 0.999
#: Batch sizes the gate runs (1 and an odd size, so a fixed or mis-specialised batch axis shows).
PARITY_BATCHES: tuple[int, ...] = (1, 7)


@dataclass(frozen=True)
class ParityResult:
    """Worst differences between torch and onnxruntime over all checked batches."""

    max_abs_diff: float
    min_cosine: float
    batches: tuple[int, ...]

    def as_dict(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}_max_abs_diff": self.max_abs_diff, f"{prefix}_min_cosine": self.min_cosine}


def cpu_session(path: str | Path) -> ort.InferenceSession:
    """An onnxruntime CPU session with graph optimizations on (what the service runs on CPU)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _row_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(denom > 0, (a * b).sum(1) / np.maximum(denom, 1e-30), 1.0)


def check_parity(
    onnx_path: str | Path,
    torch_fn: Callable[..., np.ndarray],
    inputs: dict[str, np.ndarray],
    *,
    fp16: bool,
    batches: Sequence[int] = PARITY_BATCHES,
    output: int = 0,
) -> ParityResult:
    """Compare onnxruntime with PyTorch on the first ``b`` rows of ``inputs`` for each batch size ``b``.

    Args:
        onnx_path: The exported graph.
        torch_fn: Maps the same named inputs (numpy) to the reference output (numpy).
        inputs: Graph input name → array with at least ``max(batches)`` rows.
        fp16: Apply the fp16 gate (cosine) instead of the fp32 gate (max |Δ|).
        batches: Batch sizes to check.
        output: Which graph output ``torch_fn`` reproduces (graphs with several outputs are checked once per
            output).

    Raises:
        ExportError: The outputs differ beyond the gate; the message names the file, batch and numbers.
    """
    session = cpu_session(onnx_path)
    name = Path(onnx_path).name
    rows = min(len(v) for v in inputs.values())
    if rows < max(batches):
        raise ValueError(f"parity needs at least {max(batches)} input rows, got {rows}")
    worst_abs, worst_cos = 0.0, 1.0
    for b in batches:
        feed = {k: np.ascontiguousarray(v[:b]) for k, v in inputs.items()}
        ort_out = session.run(None, feed)[output]
        ref = np.asarray(torch_fn(**feed))
        if ort_out.shape != ref.shape:
            raise ExportError(f"{name}: output shape {ort_out.shape} != torch {ref.shape} at batch {b}")
        if not np.all(np.isfinite(ort_out)):
            raise ExportError(f"{name}: onnxruntime produced NaN/inf at batch {b}")
        abs_diff = float(np.max(np.abs(ort_out.astype(np.float64) - ref.astype(np.float64))))
        cos = float(np.min(_row_cosine(ort_out, ref)))
        worst_abs, worst_cos = max(worst_abs, abs_diff), min(worst_cos, cos)
        if not fp16 and abs_diff > FP32_MAX_ABS_DIFF:
            raise ExportError(
                f"{name}: onnxruntime differs from torch at batch {b}: max |Δ| = {abs_diff:.3g} "
                f"> {FP32_MAX_ABS_DIFF:g} (fp32 gate; min cosine {cos:.6f})"
            )
        if fp16 and cos < FP16_MIN_COSINE:
            raise ExportError(
                f"{name}: onnxruntime differs from torch at batch {b}: min cosine = {cos:.6f} "
                f"< {FP16_MIN_COSINE} (fp16 gate; max |Δ| {abs_diff:.3g})"
            )
    return ParityResult(max_abs_diff=worst_abs, min_cosine=worst_cos, batches=tuple(batches))
