"""Dataset loaders, one file each, registered by name. See :func:`build_dataset`.

Importing this package imports every loader module, so :func:`dataset_registry` lists them all.
"""

from training.data.datasets import cuhk01, cuhk03, dukemtmc, folder, market1501, msmt17, viper
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
    "cuhk01",
    "cuhk03",
    "dataset_registry",
    "dukemtmc",
    "folder",
    "market1501",
    "msmt17",
    "register_dataset",
    "viper",
]
