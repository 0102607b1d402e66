"""``reid eval --model models/DIR``: the model folder evaluated through the service's runtime.

The same report as for a checkpoint (metrics.json with CMC / mAP / mINP and the verification numbers,
cmc.png, ranks.png, distances.png, roc.png), computed from what the service computes: the folder's ONNX
sessions, the shared preprocessing, the contract's scoring modes and, for a pairwise model, the descriptor
shortlist re-ranked by the comparator.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

HEADLINE = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")


def run_served(args: argparse.Namespace) -> int:
    """Evaluate ``args.model`` on ``args.root`` and print the headline numbers as JSON."""
    from service.contract.scoring import get as get_metric
    from training.commands.evaluate import parse_options
    from training.data.datasets import build_dataset
    from training.evaluation.evaluator import EvaluationResult, is_single_shot, rank_metrics
    from training.evaluation.report import write_report
    from training.evaluation.served import embed_records, load_runtime, ranking_distances, score_matrix

    if args.root is None:
        raise ValueError("--model needs --root (the labelled images to evaluate on)")
    for flag in ("rerank", "flip"):
        if getattr(args, flag):
            raise ValueError(f"--{flag} is not what the service does; it is not offered with --model")
    started = time.perf_counter()
    runtime = load_runtime(args.model)
    manifest = runtime.manifest
    metric = args.metric or manifest.default_metric
    if metric not in manifest.scoring:
        raise ValueError(f"--metric {metric}: model {manifest.model_id} offers {sorted(manifest.scoring)}")
    dataset = args.dataset or "market1501"
    options = parse_options(args.option)
    split = build_dataset(dataset, args.root, **options)
    if not split.query or not split.gallery:
        raise ValueError(f"{args.root}: evaluation needs query and gallery images")
    query = embed_records(runtime, split.query, args.batch_size)
    gallery = embed_records(runtime, split.gallery, args.batch_size)
    shortlist = args.shortlist or (manifest.pairwise.shortlist if manifest.pairwise else 100)
    distmat = ranking_distances(runtime, metric, query, gallery, shortlist=shortlist)
    # the Siamese head's p(same) is measured in the report too (the embedding modes come from the features)
    scores = (
        {"softmax": score_matrix(runtime, "softmax", query.embeddings, gallery.embeddings)}
        if "softmax" in manifest.scoring
        else {}
    )
    result = EvaluationResult(
        {}, distmat, query.embeddings, gallery.embeddings, split.query, split.gallery, scores=scores
    )
    metrics = rank_metrics(distmat, result.ids(), single_shot=is_single_shot(split))
    metrics.update(
        metric=metric, rerank=False, flip=False, num_query=len(split.query), num_gallery=len(split.gallery),
        embedding_dim=manifest.embedding_dim,
    )
    if get_metric(metric).needs_comparator:
        metrics["shortlist"] = min(shortlist, len(split.gallery))
    result.metrics = metrics
    output = args.output or Path("eval") / f"{manifest.name}-{dataset}"
    extra: dict[str, Any] = {
        "dataset": dataset, "root": str(args.root), "dataset_options": options, "model": str(args.model),
        "model_id": manifest.model_id, "runtime": f"service ModelRuntime ({runtime.provider})",
    }
    target_fmr = args.target_fmr if args.target_fmr is not None else 1e-3
    report = write_report(result, output, target_fmr=target_fmr, extra=extra)
    summary: dict[str, Any] = {
        "output": str(output), "model": manifest.model_id, "metric": metric,
        **{k: round(float(report[k]), 4) for k in HEADLINE},
        "verification": {
            mode: {k: round(float(v), 4) for k, v in values.items()}
            for mode, values in report["verification"].items()
        },
        "minutes": round((time.perf_counter() - started) / 60, 3),
    }
    print(json.dumps(summary, indent=2))
    return 0
