"""Training augmentation on preprocessed tensors (C × H × W float32, already decoded, resized and normalized).

Augmentation runs AFTER :mod:`service.contract.preprocess`, so training and serving share one decode → resize
→ normalize implementation. Because the tensor is normalized with the ImageNet mean / std, a value of 0 is the
mean colour: padding, shifts, zoom-out borders and erasing fill with 0 (BoT erases with the mean too). Colour
jitter un-normalizes with the spec's mean / std, jitters in [0, 1], clamps and re-normalizes.

Every random draw comes from a ``torch.Generator``. :class:`TrainTransform` seeds it with ``seed`` in the main
process and, inside a ``DataLoader`` worker, with the worker's seed (``get_worker_info().seed``: distinct per
worker and per epoch, and reproducible once ``torch.manual_seed`` is set), so workers never repeat each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from training.checks import at_least, unit_interval
from service.contract.preprocess import PreprocessSpec

PAD_MODES: tuple[str, ...] = ("constant", "reflect")
ERASING_FILLS: tuple[str, ...] = ("zero", "random")


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _randint(generator: torch.Generator, low: int, high: int) -> int:
    """Uniform integer in [low, high] (inclusive)."""
    return int(torch.randint(low, high + 1, (), generator=generator))


def _check_image(img: Tensor) -> None:
    if img.dim() != 3:
        raise ValueError(f"expected an image tensor C×H×W, got shape {tuple(img.shape)}")


def horizontal_flip(img: Tensor, p: float, generator: torch.Generator) -> Tensor:
    """Mirror left ↔ right with probability ``p``."""
    if p > 0 and float(torch.rand((), generator=generator)) < p:
        return img.flip(-1)
    return img


def pad_random_crop(img: Tensor, padding: int, generator: torch.Generator, mode: str = "constant") -> Tensor:
    """Pad each side by ``padding`` (0 = mean colour, or reflect), crop a random window of the input size."""
    if padding <= 0:
        return img
    _, height, width = img.shape
    padded = F.pad(img.unsqueeze(0), (padding, padding, padding, padding), mode=mode).squeeze(0)
    top = _randint(generator, 0, 2 * padding)
    left = _randint(generator, 0, 2 * padding)
    return padded[:, top : top + height, left : left + width]


def random_erasing(
    img: Tensor,
    p: float,
    generator: torch.Generator,
    *,
    area: tuple[float, float] = (0.02, 0.4),
    aspect: tuple[float, float] = (0.3, 3.3),
    fill: str = "zero",
) -> Tensor:
    """Random erasing (Zhong et al.): with probability ``p`` replace one rectangle by 0 or by noise.

    The rectangle covers a uniform fraction ``area`` of the image with a log-uniform aspect ratio (h / w) in
    ``aspect``; up to 10 placements are tried, and the image is left unchanged if none fits.
    """
    if p <= 0 or float(torch.rand((), generator=generator)) >= p:
        return img
    channels, height, width = img.shape
    log_low, log_high = math.log(aspect[0]), math.log(aspect[1])
    for _ in range(10):
        target = _uniform(generator, area[0], area[1]) * height * width
        ratio = math.exp(_uniform(generator, log_low, log_high))
        h = round(math.sqrt(target * ratio))
        w = round(math.sqrt(target / ratio))
        if 0 < h < height and 0 < w < width:
            top = _randint(generator, 0, height - h)
            left = _randint(generator, 0, width - w)
            out = img.clone()
            if fill == "random":
                noise = torch.randn((channels, h, w), generator=generator, dtype=img.dtype)
                out[:, top : top + h, left : left + w] = noise.to(img.device)
            else:
                out[:, top : top + h, left : left + w] = 0.0
            return out
    return img


def _fit_to_size(img: Tensor, height: int, width: int) -> Tensor:
    """Center-crop or zero-pad (mean colour) to height × width."""
    _, h, w = img.shape
    if h > height:
        top = (h - height) // 2
        img = img[:, top : top + height, :]
    if w > width:
        left = (w - width) // 2
        img = img[:, :, left : left + width]
    _, h, w = img.shape
    if h < height or w < width:
        top, left = (height - h) // 2, (width - w) // 2
        img = F.pad(img, (left, width - w - left, top, height - h - top))
    return img


def random_zoom(img: Tensor, zoom: float, generator: torch.Generator) -> Tensor:
    """Scale by a uniform factor in [1 − zoom, 1 + zoom] (bilinear), then center-crop or pad back to size."""
    if zoom <= 0:
        return img
    _, height, width = img.shape
    scale = _uniform(generator, 1.0 - zoom, 1.0 + zoom)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    if (new_h, new_w) == (height, width):
        return img
    resized = F.interpolate(img.unsqueeze(0), size=(new_h, new_w), mode="bilinear", align_corners=False)
    return _fit_to_size(resized.squeeze(0), height, width)


def random_width_shift(img: Tensor, fraction: float, generator: torch.Generator) -> Tensor:
    """Shift horizontally by a uniform integer in [−fraction·W, fraction·W] pixels, filling with 0."""
    if fraction <= 0:
        return img
    width = img.shape[-1]
    max_shift = int(fraction * width)
    shift = _randint(generator, -max_shift, max_shift)
    if shift == 0:
        return img
    out = torch.zeros_like(img)
    if shift > 0:
        out[..., shift:] = img[..., : width - shift]
    else:
        out[..., :shift] = img[..., -shift:]
    return out


def color_jitter(
    img: Tensor,
    strength: float,
    generator: torch.Generator,
    *,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> Tensor:
    """Brightness, contrast and saturation factors uniform in [1 − strength, 1 + strength], in RGB [0, 1].

    The tensor is un-normalized with ``mean`` / ``std``, jittered, clamped to [0, 1] and re-normalized.
    """
    if strength <= 0:
        return img
    mean_t = torch.tensor(mean, dtype=img.dtype, device=img.device).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=img.dtype, device=img.device).view(3, 1, 1)
    rgb = img * std_t + mean_t
    low, high = max(0.0, 1.0 - strength), 1.0 + strength
    rgb = (rgb * _uniform(generator, low, high)).clamp(0.0, 1.0)
    gray = _grayscale(rgb)
    rgb = ((rgb - gray.mean()) * _uniform(generator, low, high) + gray.mean()).clamp(0.0, 1.0)
    gray = _grayscale(rgb)
    rgb = ((rgb - gray) * _uniform(generator, low, high) + gray).clamp(0.0, 1.0)
    return (rgb - mean_t) / std_t


def _grayscale(rgb: Tensor) -> Tensor:
    return (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]).unsqueeze(0)


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation settings (defaults: the BoT recipe — flip, pad 10 + crop, random erasing).

    Attributes:
        flip: Horizontal flip probability.
        pad: Padding in pixels before the random crop back to size (0 disables).
        pad_mode: ``constant`` (0 = mean colour) or ``reflect``.
        erasing: Random erasing probability.
        erasing_fill: ``zero`` (mean colour) or ``random`` (standard-normal noise).
        zoom: Zoom range: scale uniform in [1 − zoom, 1 + zoom] (0 disables; the EfficientNet Siamese paper).
        width_shift: Horizontal shift as a fraction of the width (0 disables).
        color_jitter: Brightness / contrast / saturation strength (0 disables).
    """

    flip: float = 0.5
    pad: int = 10
    pad_mode: str = "constant"
    erasing: float = 0.5
    erasing_fill: str = "zero"
    zoom: float = 0.0
    width_shift: float = 0.0
    color_jitter: float = 0.0

    def __post_init__(self) -> None:
        for name in ("flip", "erasing"):
            unit_interval(f"{name} probability", getattr(self, name), include_one=True)
        at_least("pad", self.pad, 0)
        if self.pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of {', '.join(PAD_MODES)}, got {self.pad_mode!r}")
        if self.erasing_fill not in ERASING_FILLS:
            raise ValueError(
                f"erasing_fill must be one of {', '.join(ERASING_FILLS)}, got {self.erasing_fill!r}"
            )
        unit_interval("zoom", self.zoom)
        unit_interval("width_shift", self.width_shift)
        unit_interval("color_jitter", self.color_jitter)


class TrainTransform:
    """Applies the configured augmentations to one preprocessed C × H × W tensor.

    Order: zoom → width shift → flip → pad + crop → colour jitter → random erasing (erasing last, as in BoT).

    Args:
        config: Which augmentations, how strong.
        spec: The preprocessing spec (its mean / std are needed by colour jitter; reflect padding needs
            ``pad`` smaller than the image side).
        seed: Seed of the generator in the main process (workers use their DataLoader worker seed).
    """

    def __init__(self, config: AugmentConfig, spec: PreprocessSpec, *, seed: int = 0) -> None:
        if config.pad_mode == "reflect" and config.pad >= min(spec.height, spec.width):
            raise ValueError(
                f"reflect padding {config.pad} must be smaller than the image side "
                f"{min(spec.height, spec.width)}"
            )
        self.config = config
        self.spec = spec
        self.seed = seed
        self._generator: torch.Generator | None = None
        self._generator_key: tuple[int, int] | None = None

    def _current_generator(self) -> torch.Generator:
        info = torch.utils.data.get_worker_info()
        key = (-1, self.seed) if info is None else (info.id, info.seed)
        if self._generator is None or self._generator_key != key:
            self._generator = torch.Generator().manual_seed(key[1] % (2**63))
            self._generator_key = key
        return self._generator

    def __getstate__(self) -> dict[str, Any]:
        # Generators are per process: a worker re-creates its own from its worker seed.
        state = self.__dict__.copy()
        state["_generator"] = None
        state["_generator_key"] = None
        return state

    def __call__(self, img: Tensor) -> Tensor:
        _check_image(img)
        gen = self._current_generator()
        cfg = self.config
        img = random_zoom(img, cfg.zoom, gen)
        img = random_width_shift(img, cfg.width_shift, gen)
        img = horizontal_flip(img, cfg.flip, gen)
        img = pad_random_crop(img, cfg.pad, gen, mode=cfg.pad_mode)
        img = color_jitter(img, cfg.color_jitter, gen, mean=self.spec.mean, std=self.spec.std)
        img = random_erasing(img, cfg.erasing, gen, fill=cfg.erasing_fill)
        return img.contiguous()
