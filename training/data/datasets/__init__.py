"""Dataset loaders, one file each, registered by name. See :func:`build_dataset`."""

from training.data.datasets.base import (
    DatasetError,
    ImageRecord,
    ReidSplit,
    build_dataset,
    dataset_registry,
    register_dataset,
)

__all__ = [
    "DatasetError",
    "ImageRecord",
    "ReidSplit",
    "build_dataset",
    "dataset_registry",
    "register_dataset",
]
