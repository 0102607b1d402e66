"""Re-deriving a model folder's thresholds on the user's own labelled images, through the served runtime.

A threshold calibrated on another dataset means little on your cameras. ``reid calibrate`` embeds the
labelled images of a dataset's test split (query + gallery; Market-layout distractors left out) with the
folder's ONNX sessions and the shared preprocessing, forms same-person pairs across cameras and sampled
different-person pairs, and places every scoring mode's thresholds with the functions the export uses
(:mod:`training.export.calibrate`, scores from :func:`service.contract.scoring.pair_scores` or the comparator
graph). The manifest gets a new version that records the previous version's scoring modes and the data's
counts (:class:`~service.contract.manifest.CalibrationRecord`); the ONNX files are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from service.contract.manifest import CalibrationRecord, ModelManifest, ScoringMode, load
from training.data.datasets import ImageRecord, ReidSplit
from training.evaluation.served import embed_records, load_runtime
from training.export.calibrate import calibrate_pairwise, calibrate_scoring

#: A threshold at FMR t from n different-person pairs rests on n·t false matches; fewer than this: warn.
MIN_FALSE_MATCHES = 10
#: Datasets whose person id 0 marks distractors (Market-1501 layout), not a person.
_DISTRACTOR_DATASETS = frozenset({"market1501", "dukemtmc"})


@dataclass
class Recalibration:
    """The written manifest, the pair counts and the warnings to show."""

    manifest: ModelManifest
    counts: dict[str, int]
    warnings: list[str] = field(default_factory=list)


def labelled_records(split: ReidSplit) -> list[ImageRecord]:
    """The test split's labelled images (query + gallery), without junk or Market-layout distractors."""
    drop_zero = split.name in _DISTRACTOR_DATASETS
    first = 1 if drop_zero else 0
    return [r for r in (*split.query, *split.gallery) if r.person_id >= first]


def next_version(version: str) -> str:
    """``"3"`` → ``"4"``; any other string gets a ``-cal`` suffix counter (``"v1"`` → ``"v1-cal1"``)."""
    if version.isdigit():
        return str(int(version) + 1)
    stem, _, count = version.rpartition("-cal")
    if stem and count.isdigit():
        return f"{stem}-cal{int(count) + 1}"
    return f"{version}-cal1"


def few_pairs_warnings(counts: dict[str, int], target_fmr: float) -> list[str]:
    """One warning per pair count whose different-person pairs cannot place a threshold at ``target_fmr``."""
    out = []
    for key in ("negative_pairs", "pairwise_negative_pairs"):
        if key not in counts:
            continue
        negatives = counts[key]
        if negatives * target_fmr < MIN_FALSE_MATCHES:
            out.append(
                f"only {negatives} different-person pairs ({key}): a threshold at FMR {target_fmr:g} rests "
                f"on {negatives * target_fmr:.2g} false matches; ≥ {MIN_FALSE_MATCHES / target_fmr:.0f} "
                "pairs (more people) are needed to place it, or ask for a larger --target-fmr"
            )
    return out


def recalibrate_folder(
    folder: str | Path,
    split: ReidSplit,
    *,
    dataset_label: str,
    target_fmr: float = 1e-3,
    max_negatives: int = 200_000,
    max_pairwise_negatives: int = 5000,
    seed: int = 0,
    batch_size: int = 64,
) -> Recalibration:
    """Calibrate every scoring mode of ``folder`` on ``split`` and write the manifest as a new version.

    Raises:
        ValueError: Fewer than two people, no person seen by two cameras, or a bad ``target_fmr``; nothing is
            written then.
    """
    if not 0.0 < target_fmr < 1.0:
        raise ValueError(f"--target-fmr must be in (0, 1), got {target_fmr}")
    folder = Path(folder)
    runtime = load_runtime(folder)
    manifest = runtime.manifest
    records = labelled_records(split)
    person_ids = np.array([r.person_id for r in records], dtype=np.int64)
    camera_ids = np.array([r.camera_id for r in records], dtype=np.int64)
    identities = len(np.unique(person_ids))
    if identities < 2:
        raise ValueError(
            f"{dataset_label}: {identities} labelled person(s) in query + gallery; calibration needs "
            "different people (different-person pairs) and people seen by two cameras"
        )
    features = embed_records(runtime, records, batch_size)
    metrics = [m for m in manifest.scoring if m != "pairwise"]
    scoring: dict[str, ScoringMode] = {}
    counts: dict[str, int] = {}
    if metrics:
        modes, counts = calibrate_scoring(
            features.embeddings, person_ids, camera_ids, metrics, head=runtime.head_weights,
            max_negatives=max_negatives, target_fmr=target_fmr, seed=seed,
        )
        scoring.update(modes)
    if "pairwise" in manifest.scoring and manifest.pairwise is not None and features.encodings is not None:
        scoring["pairwise"], pairwise_counts = calibrate_pairwise(
            features.encodings, person_ids, camera_ids, manifest.file_path(folder, "comparator"),
            max_batch=manifest.pairwise.comparator_max_batch, max_negatives=max_pairwise_negatives,
            target_fmr=target_fmr, seed=seed,
        )
        counts.update(pairwise_counts)
    record = CalibrationRecord(
        dataset=dataset_label, target_fmr=target_fmr, images=len(records), identities=identities,
        counts=counts, previous_version=manifest.version, previous=manifest.scoring,
    )
    updated = manifest.model_copy(
        update={
            "version": next_version(manifest.version),
            "scoring": {name: scoring[name] for name in manifest.scoring},
            "calibrations": [*manifest.calibrations, record],
        }
    )
    updated.save(folder)
    return Recalibration(load(folder), counts, few_pairs_warnings(counts, target_fmr))
