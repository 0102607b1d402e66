"""The parity gate: an exported graph must reproduce PyTorch on real inputs, or the export fails.

The rule (:data:`service.contract.parity.RULE_TEXT`) is relative to the reference output's magnitude, so
it means the same for every model: for each output and batch size, ``max|Δ| / max|ref|`` (Δ = onnxruntime −
torch, ref = torch) must stay under ``max_rel_diff`` and every row's cosine(onnxruntime, torch) over
``min_cosine``.

Why these two numbers:

* Rounding differences between two correct fp32 implementations (another convolution algorithm, another
  summation order, FMA or not) grow with the magnitude of the activations, so an absolute bound refuses a
  model whose embeddings are large (a BoT ResNet-50's BN-neck embeddings have norms in the tens) and
  depends on the CPU's kernels. Dividing by ``max|ref|`` of the batch removes the scale: multiplying the
  model's output by c leaves the number unchanged.
* The batch's ``max|ref|``, not each row's norm: a per-row ``‖Δ‖ / ‖ref‖`` is undefined for a scalar output
  (the comparator's score) and explodes on a row near zero (a p(same) ≈ 0 row), whose rounding errors are of
  the size of the whole output, not of that row.
* The per-row cosine covers what the batch-wide number could hide: one row whose direction is wrong (what
  cosine retrieval sees), whatever its size. It is not computed for outputs of one number per row (a score).
  The relative bound in turn sees what the cosine cannot: a graph whose output is off by a factor (cosine 1).

Tolerances, one rule for both precisions: fp32 graphs ``max_rel_diff`` :data:`FP32_MAX_REL_DIFF` and
``min_cosine`` :data:`FP32_MIN_COSINE`: a BN-neck ResNet-50 measures ≈ 6e-5 and 1 − 1e-10 on an AVX2 CPU,
a wrong graph 1e-2 or more; the margin absorbs other CPUs' kernels. fp16 graphs keep their cosine
:data:`FP16_MIN_COSINE` and get ``max_rel_diff`` :data:`FP16_MAX_REL_DIFF` (fp16 weights keep 11 bits; the
same ResNet-50 measures ≈ 0.05 and cosine 0.9998). Both sets are recorded in the manifest (``parity.rule``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.contract.parity import OutputParity, ParityRule
from training.export.onnx_io import ExportError

#: fp32 graphs: largest allowed max|Δ| / max|ref|.
FP32_MAX_REL_DIFF = 1e-3
#: fp32 graphs: smallest allowed per-row cosine.
FP32_MIN_COSINE = 0.99999
#: fp16 graphs: largest allowed max|Δ| / max|ref|.
FP16_MAX_REL_DIFF = 0.1
#: fp16 graphs: smallest allowed per-row cosine(torch, onnxruntime).
FP16_MIN_COSINE = 0.999
#: Batch sizes the gate runs (1 and an odd size, so a fixed or mis-specialised batch axis shows).
PARITY_BATCHES: tuple[int, ...] = (1, 7)


def parity_rule(fp16: bool, batches: Sequence[int] = PARITY_BATCHES) -> ParityRule:
    """The gate's tolerances for an fp16 or fp32 graph."""
    if fp16:
        return ParityRule(precision="fp16", max_rel_diff=FP16_MAX_REL_DIFF, min_cosine=FP16_MIN_COSINE,
                          batches=list(batches))  # fmt: skip
    return ParityRule(precision="fp32", max_rel_diff=FP32_MAX_REL_DIFF, min_cosine=FP32_MIN_COSINE,
                      batches=list(batches))  # fmt: skip


def cpu_session(path: str | Path) -> ort.InferenceSession:
    """An onnxruntime CPU session with graph optimizations on (what the service runs on CPU)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _min_row_cosine(a: np.ndarray, b: np.ndarray) -> float | None:
    """Smallest cosine of matching rows; None for one number per row (a score)."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    if a.shape[1] < 2 or len(a) == 0:
        return None
    norm_a, norm_b = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    cos = np.where(norm_a * norm_b > 0, (a * b).sum(1) / np.maximum(norm_a * norm_b, 1e-300), 0.0)
    cos = np.where((norm_a == 0) & (norm_b == 0), 1.0, cos)  # two zero rows agree
    return float(np.clip(cos.min(), -1.0, 1.0))


def compare(ort_out: np.ndarray, ref: np.ndarray) -> OutputParity:
    """The gate's numbers for one batch: max|Δ|, max|ref|, their ratio and the smallest row cosine."""
    diff = float(np.max(np.abs(ort_out.astype(np.float64) - ref.astype(np.float64)), initial=0.0))
    scale = float(np.max(np.abs(ref.astype(np.float64)), initial=0.0))
    rel = diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))
    cos = _min_row_cosine(ort_out, ref)
    return OutputParity(max_abs_diff=diff, max_abs_reference=scale, max_rel_diff=rel, min_cosine=cos)


def _worst(a: OutputParity | None, b: OutputParity) -> OutputParity:
    if a is None:
        return b
    return OutputParity(
        max_abs_diff=max(a.max_abs_diff, b.max_abs_diff),
        max_abs_reference=max(a.max_abs_reference, b.max_abs_reference),
        max_rel_diff=max(a.max_rel_diff, b.max_rel_diff),
        min_cosine=None if a.min_cosine is None or b.min_cosine is None else min(a.min_cosine, b.min_cosine),
    )


def check_parity(
    onnx_path: str | Path,
    torch_fn: Callable[..., np.ndarray],
    inputs: dict[str, np.ndarray],
    *,
    fp16: bool,
    batches: Sequence[int] = PARITY_BATCHES,
    output: int = 0,
) -> OutputParity:
    """Compare onnxruntime with PyTorch on the first ``b`` rows of ``inputs`` for each batch size ``b``.

    Args:
        onnx_path: The exported graph.
        torch_fn: Maps the same named inputs (numpy) to the reference output (numpy).
        inputs: Graph input name → array with at least ``max(batches)`` rows.
        fp16: Apply the fp16 tolerances (:func:`parity_rule`) instead of the fp32 ones.
        batches: Batch sizes to check.
        output: Which graph output ``torch_fn`` reproduces (graphs with several outputs are checked once per
            output).

    Returns:
        The worst numbers over all batches.

    Raises:
        ExportError: The outputs differ beyond the rule; the message names the file, batch and numbers.
    """
    rule = parity_rule(fp16, batches)
    session = cpu_session(onnx_path)
    name = Path(onnx_path).name
    rows = min(len(v) for v in inputs.values())
    if rows < max(batches):
        raise ValueError(f"parity needs at least {max(batches)} input rows, got {rows}")
    worst: OutputParity | None = None
    for b in batches:
        feed = {k: np.ascontiguousarray(v[:b]) for k, v in inputs.items()}
        ort_out = session.run(None, feed)[output]
        ref = np.asarray(torch_fn(**feed))
        if ort_out.shape != ref.shape:
            raise ExportError(f"{name}: output shape {ort_out.shape} != torch {ref.shape} at batch {b}")
        if not np.all(np.isfinite(ort_out)):
            raise ExportError(f"{name}: onnxruntime produced NaN/inf at batch {b}")
        got = compare(ort_out, ref)
        worst = _worst(worst, got)
        cos_fails = got.min_cosine is not None and got.min_cosine < rule.min_cosine
        if got.max_rel_diff > rule.max_rel_diff or cos_fails:
            cos = "n/a (one value per row)" if got.min_cosine is None else f"{got.min_cosine:.6f}"
            raise ExportError(
                f"{name}: onnxruntime differs from torch at batch {b}: max |Δ| = {got.max_abs_diff:.3g} "
                f"= {got.max_rel_diff:.3g} × max |ref| ({got.max_abs_reference:.3g}), min cosine {cos} "
                f"({rule.precision} gate: max |Δ| ≤ {rule.max_rel_diff:g} × max |ref| and cosine ≥ "
                f"{rule.min_cosine:g})"
            )
    assert worst is not None  # batches is not empty (max() above)
    return worst
