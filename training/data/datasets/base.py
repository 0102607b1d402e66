"""Records, splits and the dataset registry shared by every dataset loader.

A loader turns a dataset root on disk into a :class:`ReidSplit`: train / query / gallery lists of
:class:`ImageRecord` (path, person_id, camera_id), with train person ids relabelled 0..N-1. Loaders never
import torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar


class DatasetError(ValueError):
    """The dataset on disk does not have the expected layout; the message names the path and what is wrong."""


@dataclass(frozen=True, order=True)
class ImageRecord:
    """One image: where it is, who it shows and which camera took it."""

    path: Path
    person_id: int
    camera_id: int


@dataclass
class ReidSplit:
    """A dataset split into train / query / gallery.

    Attributes:
        name: Dataset name (registry key).
        train: Training images; person ids relabelled 0..num_train_ids-1.
        query: Query images (original person ids).
        gallery: Gallery images (original person ids; may contain distractors).
        info: Extra facts about the split (protocol, split index, seed …).
    """

    name: str
    train: list[ImageRecord]
    query: list[ImageRecord]
    gallery: list[ImageRecord]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_train_ids(self) -> int:
        return len({r.person_id for r in self.train})

    def counts(self) -> dict[str, dict[str, int]]:
        """Number of identities, images and cameras per subset."""
        out: dict[str, dict[str, int]] = {}
        for subset in ("train", "query", "gallery"):
            records: list[ImageRecord] = getattr(self, subset)
            out[subset] = {
                "ids": len({r.person_id for r in records}),
                "images": len(records),
                "cameras": len({r.camera_id for r in records}),
            }
        return out

    def format_counts(self) -> str:
        """A small table of :meth:`counts` for printing."""
        lines = [f"dataset {self.name}" + (f" ({_fmt_info(self.info)})" if self.info else "")]
        lines.append(f"  {'subset':<8} {'# ids':>7} {'# images':>9} {'# cameras':>10}")
        for subset, c in self.counts().items():
            lines.append(f"  {subset:<8} {c['ids']:>7} {c['images']:>9} {c['cameras']:>10}")
        return "\n".join(lines)


def _fmt_info(info: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in info.items())


def relabel(records: Iterable[ImageRecord]) -> list[ImageRecord]:
    """Map person ids to 0..N-1 in order of sorted original id (deterministic)."""
    records = list(records)
    mapping = {pid: i for i, pid in enumerate(sorted({r.person_id for r in records}))}
    return [ImageRecord(r.path, mapping[r.person_id], r.camera_id) for r in records]


#: What a registered loader is: ``loader(root, *, option=default, ...) -> ReidSplit``. Loaders take
#: explicit typed keyword-only options (a Protocol with ``**options`` would reject them under mypy).
DatasetLoader = Callable[..., ReidSplit]
LoaderT = TypeVar("LoaderT", bound=DatasetLoader)


@dataclass(frozen=True)
class DatasetInfo:
    """A registry entry: the loader and one line describing the dataset."""

    name: str
    loader: DatasetLoader
    summary: str


_REGISTRY: dict[str, DatasetInfo] = {}


def register_dataset(name: str, summary: str) -> Callable[[LoaderT], LoaderT]:
    """Decorator registering a loader function under ``name`` (the function is returned unchanged)."""

    def deco(fn: LoaderT) -> LoaderT:
        if name in _REGISTRY:
            raise ValueError(f"dataset {name!r} is registered twice")
        _REGISTRY[name] = DatasetInfo(name=name, loader=fn, summary=summary)
        return fn

    return deco


def dataset_registry() -> dict[str, DatasetInfo]:
    """All registered datasets (importing every loader module first)."""
    from training.data import datasets as _pkg  # noqa: F401  (the package imports every loader)

    return dict(_REGISTRY)


def build_dataset(name: str, root: str | Path, **options: Any) -> ReidSplit:
    """Load dataset ``name`` from ``root``.

    Raises:
        ValueError: Unknown name (the message lists the valid ones).
        DatasetError: Wrong layout under ``root``.
    """
    registry = dataset_registry()
    if name not in registry:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(sorted(registry))}")
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: dataset root does not exist")
    return registry[name].loader(root, **options)
