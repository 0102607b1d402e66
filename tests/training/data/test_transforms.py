"""Tests for the tensor augmentations applied after the shared preprocessing."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from service.contract.preprocess import PreprocessSpec
from training.data.transforms import (
    AugmentConfig,
    TrainTransform,
    color_jitter,
    horizontal_flip,
    pad_random_crop,
    random_erasing,
    random_width_shift,
    random_zoom,
)

SPEC = PreprocessSpec(height=32, width=16)
ALL_OFF = AugmentConfig(flip=0.0, pad=0, erasing=0.0, zoom=0.0, width_shift=0.0, color_jitter=0.0)


def _image(seed: int = 0) -> torch.Tensor:
    return torch.randn(3, SPEC.height, SPEC.width, generator=torch.Generator().manual_seed(seed))


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_all_probabilities_zero_is_identity() -> None:
    img = _image()
    assert torch.equal(TrainTransform(ALL_OFF, SPEC)(img), img)


def test_flip_p1_is_exact_mirror() -> None:
    img = _image()
    out = horizontal_flip(img, 1.0, _gen())
    assert torch.equal(out[:, :, 0], img[:, :, -1])
    assert torch.equal(out, img[:, :, torch.arange(SPEC.width - 1, -1, -1)])
    assert torch.equal(horizontal_flip(img, 0.0, _gen()), img)


def test_pad_crop_is_a_shifted_window() -> None:
    img = _image()
    out = pad_random_crop(img, 4, _gen(3))
    assert out.shape == img.shape
    # the crop is one of the 9 × 9 windows of the zero-padded image (0 = the normalized mean colour)
    padded = torch.nn.functional.pad(img, (4, 4, 4, 4))
    windows = [padded[:, t : t + SPEC.height, s : s + SPEC.width] for t in range(9) for s in range(9)]
    assert sum(torch.equal(w, out) for w in windows) == 1
    assert pad_random_crop(img, 4, _gen(3), mode="reflect").shape == img.shape


def test_erasing_p1_zeroes_one_rectangle() -> None:
    img = _image() + 10.0  # no zeros anywhere
    out = random_erasing(img, 1.0, _gen(1))
    erased = (out == 0).all(dim=0)
    assert erased.any()
    rows = torch.nonzero(erased.any(dim=1)).flatten()
    cols = torch.nonzero(erased.any(dim=0)).flatten()
    block = erased[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    assert block.all()  # a filled rectangle
    area = float(block.numel()) / (SPEC.height * SPEC.width)
    assert 0.01 <= area <= 0.45
    assert torch.equal(out[:, ~erased], img[:, ~erased])
    assert torch.equal(random_erasing(img, 0.0, _gen(1)), img)


def test_erasing_random_fill() -> None:
    img = torch.full((3, 32, 16), 10.0)
    out = random_erasing(img, 1.0, _gen(2), fill="random")
    changed = (out != img).any(dim=0)
    assert changed.any() and float(out[:, changed].abs().max()) < 10.0


def test_zoom_and_width_shift_preserve_shape() -> None:
    img = _image()
    for seed in range(5):
        assert random_zoom(img, 0.3, _gen(seed)).shape == img.shape
        assert random_width_shift(img, 0.25, _gen(seed)).shape == img.shape
    assert torch.equal(random_zoom(img, 0.0, _gen()), img)


def test_width_shift_moves_columns() -> None:
    img = _image()
    padded = torch.nn.functional.pad(img, (8, 8))
    candidates = [padded[..., 8 - s : 24 - s] for s in range(-8, 9)]  # content moved right by s pixels
    moved = set()
    for seed in range(6):
        out = random_width_shift(img, 0.5, _gen(seed))
        matches = [s for s, c in zip(range(-8, 9), candidates, strict=True) if torch.equal(c, out)]
        assert len(matches) == 1
        moved.add(matches[0])
    assert len(moved) > 1


def test_zoom_in_keeps_centre() -> None:
    img = torch.zeros(1, 8, 8)
    img[:, 3:5, 3:5] = 1.0
    out = random_zoom(img, 0.5, _gen(0))
    assert out.shape == (1, 8, 8) and float(out[:, 3:5, 3:5].mean()) > 0.2


def test_color_jitter_stays_in_valid_range_and_changes_image() -> None:
    img = _image()
    out = color_jitter(img, 0.4, _gen(0), mean=SPEC.mean, std=SPEC.std)
    mean = torch.tensor(SPEC.mean).view(3, 1, 1)
    std = torch.tensor(SPEC.std).view(3, 1, 1)
    rgb = out * std + mean
    assert rgb.min() >= -1e-5 and rgb.max() <= 1 + 1e-5
    assert not torch.allclose(out, img)


def test_train_transform_shapes_and_determinism() -> None:
    config = AugmentConfig(flip=0.5, pad=4, erasing=0.5, zoom=0.2, width_shift=0.1, color_jitter=0.2)
    img = _image()
    first = TrainTransform(config, SPEC, seed=11)(img)
    t1, t2 = TrainTransform(config, SPEC, seed=11), TrainTransform(config, SPEC, seed=11)
    outs1 = [t1(img) for _ in range(4)]
    outs2 = [t2(img) for _ in range(4)]
    assert all(o.shape == img.shape for o in outs1)
    assert all(torch.equal(a, b) for a, b in zip(outs1, outs2, strict=True))
    assert torch.equal(first, outs1[0])
    assert not torch.equal(outs1[0], outs1[1])  # the generator advances
    other = TrainTransform(config, SPEC, seed=12)(img)
    assert not torch.equal(other, outs1[0])


def test_train_transform_uses_worker_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    config = AugmentConfig(flip=0.5, pad=4, erasing=1.0)
    img = _image()

    def run_in_worker(worker_id: int, worker_seed: int) -> torch.Tensor:
        info = SimpleNamespace(id=worker_id, seed=worker_seed)
        monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: info)
        return TrainTransform(config, SPEC, seed=0)(img)

    assert torch.equal(run_in_worker(0, 1234), run_in_worker(0, 1234))
    assert not torch.equal(run_in_worker(0, 1234), run_in_worker(1, 1235))


def test_train_transform_is_picklable_for_workers() -> None:
    import pickle

    transform = TrainTransform(AugmentConfig(), SPEC, seed=3)
    transform(_image())
    clone = pickle.loads(pickle.dumps(transform))
    assert np.isfinite(clone(_image()).numpy()).all()


def test_config_validation() -> None:
    with pytest.raises(ValueError, match=r"flip probability must be in \[0, 1\], got 1.5"):
        AugmentConfig(flip=1.5)
    with pytest.raises(ValueError, match="pad_mode"):
        AugmentConfig(pad_mode="edge")
    with pytest.raises(ValueError, match="reflect padding 16"):
        TrainTransform(AugmentConfig(pad=16, pad_mode="reflect"), SPEC)
    with pytest.raises(ValueError, match="C×H×W"):
        TrainTransform(ALL_OFF, SPEC)(torch.zeros(1, 3, 32, 16))
