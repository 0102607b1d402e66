"""The torch datasets decode through the shared preprocessing, unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from service.contract.preprocess import PreprocessSpec, preprocess_file
from training.data.dataset import ReidImageDataset, ReidPairDataset
from training.data.datasets.base import ImageRecord

SPEC = PreprocessSpec(height=16, width=8)


@pytest.fixture
def records(tmp_path: Path) -> list[ImageRecord]:
    rng = np.random.default_rng(0)
    out = []
    for i, (pid, cam) in enumerate([(0, 1), (0, 2), (1, 1)]):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (20, 10, 3), dtype=np.uint8)).save(path)
        out.append(ImageRecord(path, pid, cam))
    return out


@pytest.mark.parametrize("cache", [False, True])
def test_items_equal_the_service_preprocessing(records: list[ImageRecord], cache: bool) -> None:
    dataset = ReidImageDataset(records, SPEC, cache=cache)
    assert len(dataset) == 3 and dataset.person_ids == [0, 0, 1] and dataset.camera_ids == [1, 2, 1]
    for _ in range(2):  # the second pass comes from the cache when enabled
        image, pid, cam, index = dataset[1]
        assert (pid, cam, index) == (0, 2, 1)
        assert image.dtype == torch.float32 and image.shape == (3, 16, 8)
        np.testing.assert_array_equal(image.numpy(), preprocess_file(records[1].path, SPEC))


def test_transform_cannot_corrupt_the_cache(records: list[ImageRecord]) -> None:
    def erase(img: torch.Tensor) -> torch.Tensor:
        return img.zero_()  # an in-place augmentation

    dataset = ReidImageDataset(records, SPEC, erase, cache=True)
    assert float(dataset[0][0].abs().sum()) == 0.0
    np.testing.assert_array_equal(dataset.load_image(0).numpy(), preprocess_file(records[0].path, SPEC))


def test_pair_dataset(records: list[ImageRecord]) -> None:
    pairs = ReidPairDataset(ReidImageDataset(records, SPEC))
    image_a, image_b, pid_a, pid_b, same = pairs[(0, 1, True)]
    assert (pid_a, pid_b, same) == (0, 0, True) and image_a.shape == image_b.shape == (3, 16, 8)
    assert pairs[(0, 2, False)][4] is False
    with pytest.raises(ValueError, match="labelled same=True but has person ids 0 and 1"):
        pairs[(0, 2, True)]


def test_empty_and_out_of_range(records: list[ImageRecord]) -> None:
    with pytest.raises(ValueError, match="at least one image record"):
        ReidImageDataset([], SPEC)
    with pytest.raises(IndexError, match="index 3 out of range for 3 images"):
        ReidImageDataset(records, SPEC)[3]
