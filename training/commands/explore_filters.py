"""``reid explore-filters``: pick the discriminative filters of a trained multidepth model (paper ``001_…``).

Example::

    reid train --recipe multidepth-vgg16 --root data/cuhk01 --output runs/md
    reid explore-filters --checkpoint runs/md/checkpoint.pt          # stores the selection in the run
    reid eval --checkpoint runs/md/checkpoint.pt --metric euclidean  # ranks with the smoothed descriptor

Triplets ``(query, same person, other person)`` are drawn from the *training* identities (the test
identities stay unseen); the same person's image comes from another camera when there is one. For each
chosen layer the feature maps are box-smoothed (``filter_size``, 20 in the paper) and per filter ``i`` the
mean Euclidean distances ``d_s,i`` and ``d_d,i`` are measured; the ``--top-k`` filters maximising
``d_d,i − d_s,i`` are kept. The selection is written into the checkpoint (``load_model`` and ``reid export``
apply it) and into ``RUN/filters.json`` with the margins.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import cast

import numpy as np

from training.checks import at_least

HELP = "select the discriminative smoothed filters of a multidepth model (paper 001)"
DESCRIPTION = (
    "For a checkpoint of the multidepth-vgg16 recipe: draw (query, same, other) triplets from the training "
    "identities, smooth the chosen layers' maps with the l×l box filter and keep per layer the filter(s) "
    "maximising d_d − d_s. The selection is stored in the checkpoint and in RUN/filters.json."
)
FILTERS_FILE = "filters.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``explore-filters`` arguments."""
    parser.add_argument(
        "--checkpoint", required=True, type=Path, help="RUN/checkpoint.pt of a multidepth run"
    )
    parser.add_argument("--root", type=Path, help="dataset folder (default: the training root)")
    parser.add_argument("--triplets", type=int, default=256, help="triplets to average over (default 256)")
    parser.add_argument("--top-k", type=int, default=1, help="filters kept per layer (1 in the paper)")
    parser.add_argument(
        "--batch-size", type=int, default=4, help="triplets per forward pass (every filter's maps are held)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the triplet draw")


def sample_triplets(
    person_ids: Sequence[int], camera_ids: Sequence[int], count: int, seed: int = 0
) -> list[tuple[int, int, int]]:
    """``count`` index triplets ``(query, same person, other person)``; "same" from another camera if any.

    Raises:
        ValueError: ``count`` < 1, or fewer than two persons with two images.
    """
    at_least("count", count, 1)
    by_person: dict[int, list[int]] = defaultdict(list)
    for index, pid in enumerate(person_ids):
        by_person[int(pid)].append(index)
    anchors = sorted(pid for pid, idx in by_person.items() if len(idx) >= 2)
    if len(anchors) < 1 or len(by_person) < 2:
        raise ValueError(
            "triplets need a person with >= 2 images and >= 2 persons; "
            f"got {len(anchors)} and {len(by_person)}"
        )
    rng = np.random.default_rng(seed)
    persons = sorted(by_person)
    triplets = []
    for _ in range(count):
        pid = anchors[int(rng.integers(len(anchors)))]
        images = by_person[pid]
        query = images[int(rng.integers(len(images)))]
        others = [i for i in images if i != query and camera_ids[i] != camera_ids[query]]
        others = others or [i for i in images if i != query]
        same = others[int(rng.integers(len(others)))]
        other_pid = pid
        while other_pid == pid:
            other_pid = persons[int(rng.integers(len(persons)))]
        pool = by_person[other_pid]
        triplets.append((query, same, pool[int(rng.integers(len(pool)))]))
    return triplets


def run(args: argparse.Namespace) -> int:
    """Explore, store the selection and print it as JSON."""
    import torch

    from training.data.dataset import ReidImageDataset
    from training.data.datasets import build_dataset
    from training.engine.checkpoint import load_model
    from training.engine.trainer import preprocess_spec
    from training.families.multidepth import MultiDepthFamily, store_selection
    from training.models.multidepth import MultiDepthVGG, filter_margins

    for name in ("triplets", "top_k", "batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    model, cfg, _ = load_model(args.checkpoint)
    if not isinstance(cfg.family, MultiDepthFamily):  # the family, or one derived from it
        raise ValueError(
            f"{args.checkpoint}: explore-filters needs a multidepth model, got {cfg.model_kind!r}"
        )
    split = build_dataset(cfg.dataset, args.root or Path(cfg.root), **cfg.dataset_options)
    images = ReidImageDataset(split.train, preprocess_spec(cfg))
    triplets = sample_triplets(
        [r.person_id for r in split.train], [r.camera_id for r in split.train], args.triplets, args.seed
    )

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        for start in range(0, len(triplets), args.batch_size):
            chunk = triplets[start : start + args.batch_size]
            q, s, d = (torch.stack([images[t[k]][0] for t in chunk]) for k in range(3))
            yield q, s, d

    margins = filter_margins(cast(MultiDepthVGG, model), batches())  # the family builds MultiDepthVGG
    selected: dict[str, list[int]] = {}
    report: dict[str, dict[str, object]] = {}
    for layer, (d_s, d_d) in margins.items():
        if args.top_k > d_s.numel():
            raise ValueError(f"--top-k {args.top_k} exceeds the {d_s.numel()} filters of layer {layer!r}")
        margin = (d_d - d_s).tolist()
        order = sorted(range(len(margin)), key=lambda i: (-margin[i], i))[: args.top_k]
        selected[layer] = order
        report[layer] = {
            "selected": order,
            "margin": [round(margin[i], 6) for i in order],
            "d_same": [round(float(d_s[i]), 6) for i in order],
            "d_different": [round(float(d_d[i]), 6) for i in order],
            "filters": len(margin),
        }
    store_selection(args.checkpoint, selected)
    summary = {
        "checkpoint": str(args.checkpoint), "triplets": len(triplets), "top_k": args.top_k,
        "filter_size": cfg.section.filter_size, "layers": report,
    }
    (args.checkpoint.parent / FILTERS_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2))
    return 0
