"""Torch datasets over :class:`ImageRecord` lists, decoding through the one shared preprocessing path.

Every image goes through :func:`service.contract.preprocess.preprocess_file` — the exact decode → RGB →
bilinear resize → normalize the service applies to uploaded bytes — and only then becomes a tensor, so a
model is trained and evaluated on the same pixels it will see when served. Training augmentation
(:class:`training.data.transforms.TrainTransform`) runs afterwards, on the normalized tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from service.contract.preprocess import PreprocessSpec, preprocess_file
from training.data.datasets.base import ImageRecord

ImageTransform = Callable[[Tensor], Tensor]
#: One pair drawn by :class:`training.data.samplers.PairSampler`: (index a, index b, same person?).
PairIndex = tuple[int, int, bool]


class ReidImageDataset(Dataset[tuple[Tensor, int, int, int]]):
    """Images of a re-ID split: item ``i`` is ``(image 3×H×W float32, person_id, camera_id, i)``.

    Args:
        records: The images (train ids relabelled 0..N-1 for training; original ids for query / gallery).
        spec: Input size and normalization (the model's preprocessing contract).
        transform: Augmentation applied to the normalized tensor, or None.
        cache: Keep every preprocessed array in memory after its first decode (≈ 12·H·W bytes per image;
            each DataLoader worker holds its own cache: use persistent workers or ``num_workers=0``).
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        spec: PreprocessSpec,
        transform: ImageTransform | None = None,
        *,
        cache: bool = False,
    ) -> None:
        if len(records) == 0:
            raise ValueError("ReidImageDataset needs at least one image record, got none")
        self.records = list(records)
        self.spec = spec
        self.transform = transform
        self.cache = cache
        self._cached: dict[int, np.ndarray] = {}

    @property
    def person_ids(self) -> list[int]:
        """Person id of every index (what the samplers group by)."""
        return [r.person_id for r in self.records]

    @property
    def camera_ids(self) -> list[int]:
        """Camera id of every index."""
        return [r.camera_id for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def load_image(self, index: int) -> Tensor:
        """The preprocessed (not augmented) image ``index`` as a 3×H×W float32 tensor."""
        array = self._cached.get(index) if self.cache else None
        if array is None:
            array = preprocess_file(self.records[index].path, self.spec)
            if self.cache:
                self._cached[index] = array
        # from_numpy shares memory with the cached array: copy so augmentation can never write into the cache.
        tensor = torch.from_numpy(array)
        return tensor.clone() if self.cache else tensor

    def __getitem__(self, index: int) -> tuple[Tensor, int, int, int]:
        if not 0 <= index < len(self.records):
            raise IndexError(f"index {index} out of range for {len(self.records)} images")
        image = self.load_image(index)
        if self.transform is not None:
            image = self.transform(image)
        record = self.records[index]
        return image, record.person_id, record.camera_id, index


class ReidPairDataset(Dataset[tuple[Tensor, Tensor, int, int, bool]]):
    """Image pairs for Siamese training, indexed by the ``(a, b, is_same)`` tuples of a ``PairSampler``.

    Item ``(a, b, same)`` is ``(image_a, image_b, person_id_a, person_id_b, same)``; each image is
    augmented independently.

    Args:
        images: The underlying image dataset (its transform augments both images).
    """

    def __init__(self, images: ReidImageDataset) -> None:
        self.images = images

    @property
    def person_ids(self) -> list[int]:
        return self.images.person_ids

    @property
    def camera_ids(self) -> list[int]:
        return self.images.camera_ids

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, pair: PairIndex) -> tuple[Tensor, Tensor, int, int, bool]:
        index_a, index_b, is_same = pair
        image_a, pid_a, _, _ = self.images[int(index_a)]
        image_b, pid_b, _, _ = self.images[int(index_b)]
        if bool(is_same) != (pid_a == pid_b):
            raise ValueError(
                f"pair ({index_a}, {index_b}) is labelled same={bool(is_same)} but has person ids "
                f"{pid_a} and {pid_b}"
            )
        return image_a, image_b, pid_a, pid_b, bool(is_same)
