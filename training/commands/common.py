"""Helpers shared by the torch subcommands: options from parsed flags, the printed summaries."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")

#: The headline ranking metrics every summary prints.
HEADLINE_KEYS: tuple[str, ...] = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")


def from_args(cls: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """An instance of the dataclass ``cls`` from the flags named like its fields (``overrides`` win)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    given = {name: getattr(args, name) for name in names if hasattr(args, name)}
    return cls(**{**given, **overrides})


def ranking_summary(metrics: dict[str, Any], keys: tuple[str, ...] = HEADLINE_KEYS) -> dict[str, Any]:
    """The other rankings' headline numbers and each scoring mode's verification rates, rounded.

    ``softmax``: the Siamese head's ranking; ``descriptor``: a pairwise model's descriptor-only ranking;
    ``verification``: ROC AUC / balanced accuracy at the EER on the test split's pairs.
    """
    out: dict[str, Any] = {
        ranking: {k: round(float(metrics[ranking][k]), 4) for k in keys}
        for ranking in ("softmax", "descriptor")
        if ranking in metrics
    }
    out["verification"] = {
        mode: {k: round(float(v), 4) for k, v in values.items()}
        for mode, values in metrics["verification"].items()
    }
    return out
