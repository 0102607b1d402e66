"""Any embedding ONNX graph (boxmot's, one exported by hand) → ``embedding.onnx`` of a model folder.

The graph must take one float32 image batch N × 3 × H × W and give N × D embeddings. Its input and the chosen
output are renamed to the contract's names (``images``, ``embeddings``) and other outputs are dropped. A graph
exported with a fixed batch of 1 gets a symbolic batch axis; whether it then really embeds each image on its
own is checked, not assumed: on rendered pedestrians, every row of a batch of 7 must equal the same image's
batch-of-1 embedding (a graph with batch-1 reshapes fails here, so does one with train-mode BN), with the
right shape and finite values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from service.contract.manifest import ModelManifest
from service.contract.parity import ParityReport
from service.contract.tensors import EMBEDDINGS, IMAGES
from training.export.parity import PARITY_BATCHES, cpu_session
from training.importers.checkpoints import SourceError
from training.importers.folder import (
    EMBEDDING_FILE,
    ImportOptions,
    WrittenGraph,
    import_source,
    write_imported_folder,
)

#: Largest allowed max |batch-of-7 row − batch-of-1| relative to max |batch-of-1| (float32 reordering).
MAX_REL_BATCH_DIFF = 1e-4
#: Smallest allowed row cosine between the batch-of-7 and the batch-of-1 embedding of an image.
MIN_BATCH_COSINE = 0.99999


def _load(path: Path) -> onnx.ModelProto:
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises DecodeError, ValidationError, OSError …: one line for all
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SourceError(f"{path}: not a valid ONNX model: {first}") from exc
    return model


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    if old == new:
        return
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
    for value in (*graph.input, *graph.output, *graph.value_info):
        if value.name == old:
            value.name = new


def to_contract(model: onnx.ModelProto, path: Path, opts: ImportOptions, output_name: str | None) -> bool:
    """Rename I/O to the contract, keep one output, make the batch axis symbolic (in place).

    The output kept is ``output_name``, else the only N × D output, else the first.

    Returns:
        True when the batch axis was fixed in the file and has been made symbolic.

    Raises:
        SourceError: Not one image input, a wrong input size or type, or an unknown output name.
    """
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [v for v in graph.input if v.name not in initializers]
    if len(inputs) != 1:
        raise SourceError(f"{path}: expected one image input, got {len(inputs)}: {[v.name for v in inputs]}")
    image = inputs[0]
    tensor = image.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    if tensor.elem_type != onnx.TensorProto.FLOAT or len(dims) != 4 or dims[1] not in (None, 3):
        raise SourceError(
            f"{path}: input {image.name!r} must be float32 N×3×H×W, got "
            f"{onnx.TensorProto.DataType.Name(tensor.elem_type)} {dims}"
        )
    for axis, want, flag in ((2, opts.height, "--height"), (3, opts.width, "--width")):
        if dims[axis] is not None and dims[axis] != want:
            raise SourceError(f"{path}: the graph takes {dims[2]}×{dims[3]} images; pass {flag} {dims[axis]}")
    names = [v.name for v in graph.output]
    matrices = [v.name for v in graph.output if len(v.type.tensor_type.shape.dim) == 2]
    chosen = output_name or (matrices[0] if len(matrices) == 1 else names[0])
    if chosen not in names:
        raise SourceError(f"{path}: no output {chosen!r}; outputs are {names}")
    for value in [v for v in graph.output if v.name != chosen]:
        graph.output.remove(value)
    fixed_batch = dims[0] is not None
    if fixed_batch:
        del graph.value_info[:]  # intermediate shapes recorded at the fixed batch; onnxruntime re-infers them
    for value in (image, graph.output[0]):
        dim0 = value.type.tensor_type.shape.dim[0] if value.type.tensor_type.shape.dim else None
        if dim0 is not None:
            dim0.Clear()
            dim0.dim_param = "batch"
    _rename(graph, image.name, IMAGES)
    _rename(graph, chosen, EMBEDDINGS)
    return fixed_batch


def check_embeddings(path: Path, images: np.ndarray, fixed_batch: bool) -> WrittenGraph:
    """Run the graph at batch 1 and 7 on real images: shape N × D, finite, rows independent of the batch.

    Raises:
        SourceError: The graph fails, gives another shape, NaN / inf, or batch-dependent rows.
    """
    try:
        session = cpu_session(path)
        singles = [session.run([EMBEDDINGS], {IMAGES: images[i : i + 1]})[0] for i in range(len(images))]
        batch = session.run([EMBEDDINGS], {IMAGES: images[: max(PARITY_BATCHES)]})[0]
    except Exception as exc:  # onnxruntime's pybind errors share no public base class
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        hint = " (its batch axis was fixed: re-export it with a dynamic batch axis)" if fixed_batch else ""
        raise SourceError(f"{path.name}: onnxruntime failed at batch 1 or 7{hint}: {first[:300]}") from exc
    single = np.concatenate(singles)
    if single.ndim != 2 or batch.shape != (len(images), single.shape[1]):
        raise SourceError(
            f"embedding output must be N×D: got {singles[0].shape} at batch 1 and {batch.shape} at batch "
            f"{len(images)} (pick the embedding output with --output-name)"
        )
    if not (np.all(np.isfinite(single)) and np.all(np.isfinite(batch))):
        raise SourceError("the graph produced NaN or inf embeddings on real images")
    scale = float(np.abs(single).max())
    rel = float(np.abs(batch.astype(np.float64) - single).max() / scale) if scale > 0 else 0.0
    norms = np.linalg.norm(batch, axis=1) * np.linalg.norm(single, axis=1)
    cosine = float(np.min(np.where(norms > 0, (batch * single).sum(1) / np.maximum(norms, 1e-30), 1.0)))
    if rel > MAX_REL_BATCH_DIFF or cosine < MIN_BATCH_COSINE:
        why = "a fixed batch of 1 made dynamic" if fixed_batch else "batch-mixing ops or train-mode BN"
        raise SourceError(
            f"the embeddings depend on the batch: batch-of-7 rows differ from batch-of-1 by "
            f"{rel:.3g} × max |embedding| (min cosine {cosine:.6f}); {why}?"
        )
    return WrittenGraph(
        embedding_dim=int(single.shape[1]),
        checks=ParityReport(  # no torch reference: the batch-of-7 rows against the batch-of-1 embeddings
            measured={
                "embedding_batch_max_rel_diff": rel,
                "embedding_batch_min_cosine": cosine,
                "batch_axis_made_dynamic": float(fixed_batch),
            }
        ),
    )


def import_onnx(opts: ImportOptions, output_name: str | None = None) -> ModelManifest:
    """``reid models import --format onnx``: rename to the contract, check on real images, write a folder."""
    model = _load(opts.weights)
    fixed_batch = to_contract(model, opts.weights, opts, output_name)

    def write(folder: Path, images: np.ndarray) -> WrittenGraph:
        onnx.save(model, str(folder / EMBEDDING_FILE))
        return check_embeddings(folder / EMBEDDING_FILE, images, fixed_batch)

    description = f"ONNX embedding graph imported from {opts.weights.name}, {opts.height}×{opts.width}"
    source = import_source("onnx", opts.weights)
    return write_imported_folder(opts, source, description, write)
