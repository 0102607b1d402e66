"""``reid export``: checkpoint → parity-gated ONNX files + calibrated manifest in ``models/NAME``.

The run's family (:mod:`training.families`) picks the files, calibrates its scoring modes with the written
graphs on held-out images and fills the manifest fields it owns (kind, default metric, description, the
``verification`` / ``pairwise`` sections):

* embedding / multidepth → kind ``embedding``, scoring cosine, correlation and euclidean on the embedding
  (default cosine; euclidean for multidepth, the paper's ranking);
* siamese → kind ``siamese``, the same plus ``softmax`` (the verification head; default);
* pairwise (MLS) → kind ``pairwise`` with a ``pairwise`` section, scoring ``pairwise`` (the comparator's
  score, calibrated on ``comparator.onnx`` outputs of held-out pairs; default) and ``cosine`` (the
  descriptor, used for the search shortlist). Its held-out set is capped at ``max_pairwise_images`` and its
  different-person pairs at ``max_pairwise_negatives``: every pair costs a comparator call.

The folder is assembled in a staging directory beside the target and moved into place only after every
graph passed ``onnx.checker`` and the parity gate and the manifest validated, so a failed export never leaves
a half-written model behind.
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from service.contract.manifest import (
    InputSpec,
    ModelManifest,
    Provenance,
    file_entry,
    load,
)
from service.contract.preprocess import preprocess_file, stack_batch
from training.data.datasets import ImageRecord, ReidSplit, build_dataset
from training.export.onnx_io import DEFAULT_OPSET
from training.export.parity import PARITY_BATCHES

log = logging.getLogger(__name__)


@dataclass
class ExportOptions:
    """Everything ``reid export`` takes (flat, so the CLI maps onto it one flag per field)."""

    checkpoint: Path
    output: Path
    fp16: bool = False
    opset: int = DEFAULT_OPSET
    name: str | None = None
    version: str = "1"
    dataset: str | None = None
    root: Path | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    target_fmr: float | None = None  # None: the run's target_fmr (TrainConfig, default 1e-3)
    max_negatives: int = 200_000
    max_calibration_images: int = 4000
    max_pairwise_images: int = 600
    max_pairwise_negatives: int = 5000
    seed: int = 0
    synthetic: bool | None = None
    notes: str = ""


def _held_out(split: ReidSplit, limit: int, seed: int) -> list[ImageRecord]:
    """Query + gallery images (identities disjoint from training), without distractors, capped by id."""
    records = [r for r in split.query + split.gallery if r.person_id > 0]
    if len(records) <= limit:
        return records
    rng = np.random.default_rng(seed)
    ids = np.array(sorted({r.person_id for r in records}))
    rng.shuffle(ids)
    chosen, total = set(), 0
    per_id = {pid: sum(r.person_id == pid for r in records) for pid in ids}
    for pid in ids:
        if total + per_id[pid] > limit:
            break
        chosen.add(int(pid))
        total += per_id[pid]
    return [r for r in records if r.person_id in chosen]


def library_versions() -> dict[str, str]:
    """Versions of the libraries that produced the files."""
    import onnx
    import onnxruntime
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
    }


def export_checkpoint(opts: ExportOptions) -> ModelManifest:
    """Export a training run's checkpoint into a model folder; returns the written manifest.

    Raises:
        ExportError: A graph failed the checker or the parity gate.
        ValueError / DatasetError: Bad options or dataset.
    """
    from training.engine.checkpoint import load_model
    from training.engine.trainer import preprocess_spec

    model, cfg, ckpt = load_model(opts.checkpoint, map_location="cpu")
    model.eval()
    spec = preprocess_spec(cfg)  # the run's preprocessing contract, as training used it
    dataset = opts.dataset or cfg.dataset
    root = opts.root or Path(cfg.root)
    split = build_dataset(dataset, root, **(opts.dataset_options or cfg.dataset_options or {}))
    family = cfg.family
    if opts.target_fmr is None:
        opts = replace(opts, target_fmr=cfg.target_fmr)
    held_out = _held_out(split, family.held_out_limit(opts), opts.seed)
    parity_records = held_out[:: max(1, len(held_out) // max(PARITY_BATCHES))][: max(PARITY_BATCHES)]
    if len(parity_records) < max(PARITY_BATCHES):
        raise ValueError(f"{root}: need at least {max(PARITY_BATCHES)} held-out images for the parity gate")
    images = stack_batch([preprocess_file(r.path, spec) for r in parity_records])

    output = Path(opts.output)
    name = opts.name or output.name
    staging = output.parent / f".{output.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir(parents=True)
        written = family.export(model, staging, images, fp16=opts.fp16, opset=opts.opset)
        scoring, pair_counts = family.calibrate(written, staging, held_out, spec, opts)
        synthetic = (
            opts.synthetic if opts.synthetic is not None else dataset == "market1501" and _is_synth(root)
        )
        notes = opts.notes or (
            "Trained on synthetic pedestrians (reid synth): a demonstration model, not for real cameras."
            if synthetic
            else ""
        )
        run_metrics = _run_metrics(Path(opts.checkpoint), ckpt)
        manifest = ModelManifest(
            name=name,
            version=opts.version,
            input=InputSpec(height=spec.height, width=spec.width, mean=spec.mean, std=spec.std),
            files={role: file_entry(staging, f) for role, f in written.files.items()},  # type: ignore[misc]
            embedding_dim=written.embedding_dim,
            scoring=scoring,  # type: ignore[arg-type]
            parity=written.parity.with_measured(pair_counts),
            provenance=Provenance(
                recipe=cfg.recipe,
                dataset=f"{dataset} ({root.name})",
                metrics=run_metrics,
                notes=notes,
                synthetic=bool(synthetic),
            ),
            library_versions=library_versions(),
            **family.manifest_fields(cfg, written, opts.fp16),
        )
        manifest.save(staging)
        load(staging)  # what the service will do: validate every field and checksum
        if output.exists():
            shutil.rmtree(output)
        staging.rename(output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("exported %s to %s", manifest.model_id, output)
    return manifest


#: Headline numbers copied from the run's final evaluation into the manifest's provenance.
_REPORTED_METRICS = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")


def _run_metrics(checkpoint: Path, ckpt: dict[str, Any]) -> dict[str, float]:
    """The run's final evaluation (``metrics.json`` beside the checkpoint), else the checkpoint's own."""
    report = checkpoint.parent / "metrics.json"
    source: dict[str, Any] = ckpt.get("metrics") or {}
    if report.is_file():
        source = json.loads(report.read_text(encoding="utf-8"))
    return {k: float(source[k]) for k in _REPORTED_METRICS if _is_number(source.get(k))}


def _is_synth(root: Path) -> bool:
    return (Path(root) / "synthetic.json").is_file()


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
