"""Building blocks of the Convolution Similarity Network (CSN) of Guo & Cheung, "Efficient and Deep Person
Re-Identification using Multi-Level Similarity" (CVPR 2018, paper ``002_…``).

* :class:`StripeSTN` — a spatial transformer shared over three overlapping horizontal stripes of a feature
  map: a small localisation net predicts a *constrained* affine transform per stripe and a bilinear sampler
  extracts one ``f×f`` part per stripe.
* :class:`DepthwiseCorrelation` — each extracted part slid as a depth-wise filter over the other image's
  feature map (zero padded, output of the same size as the map).

Both are ``nn.Module`` s so that :mod:`training.models.flops` can count them with forward hooks, and both
avoid operators that would pin the batch size or need a recent ONNX opset: the affine grid is a matmul with
a constant base grid (``affine_grid`` only exports from opset 20), and the correlation has two export-safe
implementations, ``"padded"`` and ``"unfold"``, next to the grouped-convolution one used in training (a
grouped conv's ``group`` is an ONNX attribute, so ``groups = N·C`` would freeze the batch size).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.checks import at_least

CORRELATION_METHODS: tuple[str, ...] = ("grouped", "padded", "unfold")

# The constrained affine transform: scales in (MIN_SCALE, 1], |shear / rotation| < MAX_ROTATION, and a
# translation bounded by (1 − scale) so that an unrotated window never leaves its stripe.
MIN_SCALE = 0.1
MAX_ROTATION = 0.5


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, *, pool: bool) -> nn.Sequential:
    """``conv (same padding) → BN → ReLU`` followed by a 2×2 max-pool (ceil mode) when ``pool``.

    Ceil mode reproduces TensorFlow's ``SAME`` pooling of the paper (15 columns → 8, not 7).
    """
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
    return nn.Sequential(*layers)


class STNOutput(NamedTuple):
    """What :class:`StripeSTN` returns.

    Attributes:
        parts: The extracted parts, ``N × S × C × f × f`` (S stripes, top to bottom).
        theta: The constrained affine transforms, ``N × S × 2 × 3``, rows ``(s_w, r_w, t_w)`` and
            ``(r_h, s_h, t_h)`` in normalised stripe coordinates (Eq. 1 of the paper).
        rotation_l1: ``|r_w| + |r_h|`` averaged over the stripes, per image (``N``); the L1 prior on the
            rotation / shear terms.
    """

    parts: Tensor
    theta: Tensor
    rotation_l1: Tensor


class LocalizationNet(nn.Module):
    """Localisation net of Table 1: loc conv1 3×3→32 (+pool), loc conv2 3×3→32 (+pool), loc conv3 1×1→128,
    GAP, linear → 6, tanh.

    Args:
        in_channels: Channels of the stripe (96 in the paper).
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn_relu(in_channels, 32, 3, pool=True),
            conv_bn_relu(32, 32, 3, pool=True),
            nn.Conv2d(32, 128, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(128, 6)

    def forward(self, stripes: Tensor) -> Tensor:
        """Raw transform parameters in (−1, 1), ``B × 6``, ordered ``(s_w, r_w, t_w, r_h, s_h, t_h)``."""
        return torch.tanh(self.fc(self.features(stripes)))


class StripeSTN(nn.Module):
    """Spatial transformer shared over overlapping horizontal stripes, one ``f×f`` part per stripe.

    The tanh outputs ``a`` of the localisation net are mapped to a constrained affine transform:
    ``s = MIN_SCALE + (1 − MIN_SCALE)·(a_s + 1)/2`` (always > 0: no mirrored or upside-down parts),
    ``r = MAX_ROTATION·a_r`` (L1-penalised through :attr:`STNOutput.rotation_l1`) and ``t = (1 − s)·a_t``.
    The last layer starts at zero weights with a bias giving the centred window whose size matches the part
    (``f`` rows × ``f`` columns of the stripe), the usual identity-like STN initialisation.

    Args:
        in_channels: Channels of the feature map.
        stripe_rows: ``(start, stop)`` row ranges of the stripes (0-based, stop exclusive); all stripes must
            have the same height so the shared localisation net runs once on the stacked stripes.
        part_size: Side ``f`` of the square sampled parts.
        map_size: ``(height, width)`` of the feature map the stripes are cut from.
    """

    def __init__(
        self,
        in_channels: int,
        *,
        stripe_rows: Sequence[tuple[int, int]],
        part_size: int,
        map_size: tuple[int, int],
    ) -> None:
        super().__init__()
        height, width = map_size
        heights = {stop - start for start, stop in stripe_rows}
        if len(heights) != 1 or any(start < 0 or stop > height for start, stop in stripe_rows):
            raise ValueError(
                f"stripe_rows must be equal-height row ranges inside [0, {height}), got {list(stripe_rows)}"
            )
        at_least("part_size", part_size, 1)
        self.stripe_rows = tuple(stripe_rows)
        self.part_size = part_size
        self.localization = LocalizationNet(in_channels)
        stripe_height = heights.pop()
        init_scale = (min(part_size / width, 1.0), min(part_size / stripe_height, 1.0))
        bias = torch.zeros(6)
        for index, scale in zip((0, 4), init_scale, strict=True):
            unit = (scale - MIN_SCALE) / (1.0 - MIN_SCALE) * 2.0 - 1.0
            bias[index] = math.atanh(max(min(unit, 0.999), -0.999))
        nn.init.zeros_(self.localization.fc.weight)
        with torch.no_grad():
            self.localization.fc.bias.copy_(bias)
        self.sampler = PartSampler(part_size)

    def forward(self, feature_map: Tensor) -> STNOutput:
        """Extract one part per stripe of ``feature_map`` (``N × C × H × W``)."""
        n, c = feature_map.shape[:2]
        stripes = torch.cat([feature_map[:, :, start:stop] for start, stop in self.stripe_rows], dim=0)
        raw = self.localization(stripes)  # (S·N) × 6, stripe-major
        theta = constrain_affine(raw)
        parts = self.sampler(stripes, theta)  # (S·N) × C × f × f
        num_stripes = len(self.stripe_rows)
        f = self.part_size
        parts = parts.reshape(num_stripes, n, c, f, f).transpose(0, 1)
        theta = theta.reshape(num_stripes, n, 2, 3).transpose(0, 1)
        rotation_l1 = (theta[:, :, 0, 1].abs() + theta[:, :, 1, 0].abs()).mean(dim=1)
        return STNOutput(parts=parts, theta=theta, rotation_l1=rotation_l1)


def constrain_affine(raw: Tensor) -> Tensor:
    """Map tanh outputs ``B × 6`` ``(s_w, r_w, t_w, r_h, s_h, t_h)`` to constrained ``B×2×3`` transforms."""
    a_sw, a_rw, a_tw, a_rh, a_sh, a_th = raw.unbind(dim=1)
    s_w = MIN_SCALE + (1.0 - MIN_SCALE) * (a_sw + 1.0) / 2.0
    s_h = MIN_SCALE + (1.0 - MIN_SCALE) * (a_sh + 1.0) / 2.0
    r_w = MAX_ROTATION * a_rw
    r_h = MAX_ROTATION * a_rh
    t_w = (1.0 - s_w) * a_tw
    t_h = (1.0 - s_h) * a_th
    return torch.stack([s_w, r_w, t_w, r_h, s_h, t_h], dim=1).reshape(-1, 2, 3)


class PartSampler(nn.Module):
    """Bilinear sampler: an ``f×f`` output grid mapped through ``theta`` into the input (zeros outside).

    Equivalent to ``grid_sample(x, affine_grid(theta, (B, C, f, f), align_corners=False))``, but the grid is
    a matmul with a constant base grid so the module exports to ONNX opset < 20 with a dynamic batch.

    Args:
        part_size: Side ``f`` of the sampled square.
    """

    base_grid: Tensor

    def __init__(self, part_size: int) -> None:
        super().__init__()
        self.part_size = part_size
        coords = (torch.arange(part_size, dtype=torch.float32) * 2.0 + 1.0) / part_size - 1.0  # pixel centres
        ys, xs = torch.meshgrid(coords, coords, indexing="ij")
        base = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).reshape(1, part_size * part_size, 3)
        self.register_buffer("base_grid", base, persistent=False)

    def forward(self, x: Tensor, theta: Tensor) -> Tensor:
        """Sample ``B×C×f×f`` parts from ``x`` (``B×C×H×W``) with the transforms ``theta`` (``B×2×3``)."""
        f = self.part_size
        grid = torch.matmul(self.base_grid, theta.transpose(1, 2)).reshape(-1, f, f, 2)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class DepthwiseCorrelation(nn.Module):
    """Slide each part over the other map as a depth-wise filter: ``out[n,s,c] = signal[n,c] ⋆ parts[n,s,c]``.

    Cross-correlation (no kernel flip, like a conv layer), zero padding ``((f−1)//2, f//2)`` on each axis so
    the output has the size of the signal (Eq. 2 of the paper). All methods give the same numbers.

    Args:
        method: ``"grouped"`` — one grouped convolution over the batch folded into channels (input
            ``1 × (N·C) × H × W``, weight ``(N·C·S) × 1 × f × f``, ``groups = N·C``): fast and lean, for
            training; but ``group`` is an ONNX attribute, so an export would freeze the batch size.
            ``"padded"`` — the same grouped convolution on the batch zero-padded to ``max_batch`` inside the
            graph, then cut back to ``N``: exports with a dynamic batch ``N <= max_batch`` (larger batches
            fail in onnxruntime, callers chunk) and is the fastest of the three in onnxruntime at a full
            batch, but always costs ``max_batch`` pairs.
            ``"unfold"`` — im2col by ``f²`` shifted slices of the padded signal, then one batched matmul with
            the parts: exports with any batch size, but is several times slower than ``"padded"`` at a full
            batch and needs an ``N × C × f² × H·W`` buffer.
        max_batch: Batch size the ``"padded"`` method pads to (ignored otherwise).
    """

    def __init__(self, method: str = "grouped", *, max_batch: int = 16) -> None:
        super().__init__()
        if method not in CORRELATION_METHODS:
            raise ValueError(f"unknown correlation method {method!r}; valid methods: {CORRELATION_METHODS}")
        at_least("max_batch", max_batch, 1)
        self.method = method
        self.max_batch = max_batch

    def forward(self, signal: Tensor, parts: Tensor) -> Tensor:
        """Correlate ``signal`` (``N×C×H×W``) with ``parts`` (``N×S×C×f×f``) → ``N × (S·C) × H × W``.

        Output channels are stripe-major: channels ``[s·C, (s+1)·C)`` belong to part ``s``.
        """
        n = signal.shape[0]
        # Static sizes: only the batch may stay symbolic in a traced (exported) graph, so the other sizes
        # are frozen into it on purpose (the tracer warns about exactly that).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            c, h, w = (int(size) for size in signal.shape[1:])
            num_parts, f = int(parts.shape[1]), int(parts.shape[-1])
        padded = F.pad(signal, ((f - 1) // 2, f // 2, (f - 1) // 2, f // 2))
        if self.method == "unfold":
            columns = torch.stack(
                [padded[:, :, i : i + h, j : j + w] for i in range(f) for j in range(f)], dim=2
            ).reshape(-1, c, f * f, h * w)
            out = torch.matmul(parts.transpose(1, 2).reshape(-1, c, num_parts, f * f), columns)
            return out.reshape(-1, c, num_parts, h, w).transpose(1, 2).reshape(-1, num_parts * c, h, w)
        batch = n
        if self.method == "padded":
            batch = self.max_batch
            padded = torch.cat([padded, padded.new_zeros((batch - n, c, h + f - 1, w + f - 1))])
            parts = torch.cat([parts, parts.new_zeros((batch - n, num_parts, c, f, f))])
        weight = parts.transpose(1, 2).reshape(batch * c * num_parts, 1, f, f)  # (n, c, s) order
        out = F.conv2d(padded.reshape(1, batch * c, h + f - 1, w + f - 1), weight, groups=batch * c)
        out = out.reshape(batch, c, num_parts, h, w).transpose(1, 2).reshape(batch, num_parts * c, h, w)
        return out[:n] if self.method == "padded" else out
