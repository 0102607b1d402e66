"""Multi-level similarity network (MLS) of Guo & Cheung, CVPR 2018 (paper ``002_…``), and its ONNX wrappers.

Architecture for a 160×60 (H×W) input (Table 1 and Sec. 3.1 of the paper); every conv is followed by BN and
ReLU, "(pool)" is a 2×2 max-pool in ceil mode (TensorFlow ``SAME``: 15 columns → 8):

* trunk, shared by both images: conv1 5×5×3→32 (pool) → conv2 3×3→96 (pool) = x² (40×15) → conv3 3×3→96
  (pool) = x³ (20×8) [and, for the (L2, L3, L4) variant, conv L4 3×3→96 (pool) on conv3's output before
  its pool = x⁴ (20×8)];
* one CSN per level (:mod:`training.models.stn`): an STN shared over three half-overlapping horizontal
  stripes (rows 0–20 / 10–30 / 20–40 of x², 0–10 / 5–15 / 10–20 of x³ and x⁴; the paper's 1-based
  "1–20 / 10–30 / 20–40" made equal-height so one loc-net call serves all three) samples f×f parts
  (f = 10, 5, 5); each part of one image is slid depth-wise over the other image's map, both directions
  → 6 × 96 channels per level; level 2 is 2×2 max-pooled to the 20×8 of level 3;
* comparison head on the concatenation (1152 channels for (L2, L3)): conv4 1×1→32 → conv5 3×3→32 (pool,
  10×4) → conv6 1×1→500 → GAP → linear → 2 logits ``(different, same)`` (index 1 = same, like
  :data:`training.models.heads.SAME_INDEX`);
* ranking net on the parts: per level conv 3×3→96 (pool) on each part, the three parts stacked vertically,
  a conv 3×3→96 shared by the levels, then the positions of all levels pooled together (GAP over the
  concatenated positions), linear → 256, L2-normalised descriptor (for the contrastive loss, margin 1).

Choices where the paper is vague, made so that the sizes match its Table 5 (checked in
``tests/training/models/test_mls.py``; FLOPs of one pair at 160×60 counted as 2 × multiply-accumulates, see
:mod:`training.models.flops`): (L2, L3) 0.536 M parameters / 0.950 GFLOPs (paper 0.5 M / 0.96 G);
(L2, L3, L4) 0.763 M / 1.223 G (paper 0.8 M / 1.31 G).

* The ranking net's first conv is per level and its second conv is shared by the levels (the paper's "only
  3 convolutional layers" for two levels); per-level second convs would give 0.62 M for (L2, L3).
* The extra conv L4 follows conv3 and, like every trunk conv of Table 1, is followed by a 2×2 max-pool: it
  reads conv3's output before conv3's own pool, so x⁴ has x³'s 20×8 size (the paper pools only the level-2
  similarities to fit the others). Reading the pooled x³ instead would give 1.08 G, 18 % under the paper.
* The paper's "10×4×1152" similarity size is our 20×8×1152 concatenation after conv5's pool (10×4).
* The affine parameters are constrained as documented in :class:`training.models.stn.StripeSTN`; the
  L1 prior on rotation / shear is returned as :attr:`MLSOutput.stn_penalty` for the recipe to weight.

The final score is Eq. 7: ``p_same + 0.2 / (d + 1e-4)`` with ``d`` the Euclidean distance of the two
descriptors.

Image-specific work lives in :meth:`MLSNet.encode`; :meth:`MLSNet.compare` only takes two encodings, so a
gallery's encodings can be computed once and cached (``encoder.onnx`` / ``comparator.onnx``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.models.flops import FlopCount, count_flops
from training.models.heads import SAME_INDEX
from training.models.stn import DepthwiseCorrelation, StripeSTN, conv_bn_relu

LEVEL_NAMES: tuple[str, ...] = ("l2", "l3", "l4")
DEFAULT_PART_SIZES: dict[str, int] = {"l2": 10, "l3": 5, "l4": 5}
CHANNELS = 96
DESCRIPTOR_DIM = 256
SCORE_WEIGHT = 0.2  # λ of Eq. 7
SCORE_EPS = 1e-4  # ε of Eq. 7
#: Table 5 of the paper: levels → (parameters, GFLOPs of one pair).
PAPER_SIZES: dict[tuple[str, ...], tuple[float, float]] = {
    ("l2", "l3"): (0.5e6, 0.96),
    ("l2", "l3", "l4"): (0.8e6, 1.31),
}


@dataclass
class MLSEncoding:
    """Everything image-specific the comparator needs, for a batch of N images.

    Attributes:
        maps: Per level, the feature map ``N × 96 × h × w`` the other image's parts are slid over.
        parts: Per level, the STN parts ``N × 3 × 96 × f × f`` (stripes top to bottom).
        descriptor: L2-normalised ranking descriptor ``N × 256``.
        rotation_l1: L1 of the STN rotation / shear terms, averaged over levels and stripes, per image (N).
    """

    maps: dict[str, Tensor]
    parts: dict[str, Tensor]
    descriptor: Tensor
    rotation_l1: Tensor


class MLSOutput(NamedTuple):
    """What :meth:`MLSNet.forward` returns for a batch of pairs.

    Attributes:
        logits: Verification logits ``N × 2``, ordered ``(different, same)``.
        descriptor_a: Ranking descriptors of the first images, ``N × 256``, unit norm.
        descriptor_b: Ranking descriptors of the second images, ``N × 256``, unit norm.
        stn_penalty: Scalar L1 penalty on the STN rotation / shear terms (mean over images); the training
            recipe adds it to the loss with its own weight.
    """

    logits: Tensor
    descriptor_a: Tensor
    descriptor_b: Tensor
    stn_penalty: Tensor


def similarity_score(
    p_same: Tensor, distance: Tensor, *, weight: float = SCORE_WEIGHT, eps: float = SCORE_EPS
) -> Tensor:
    """Eq. 7 of the paper: ``p_same + weight / (distance + eps)``; higher = more likely the same person."""
    return p_same + weight / (distance + eps)


def _pooled(size: int) -> int:
    """Side after a 2×2 max-pool in ceil mode."""
    return math.ceil(size / 2)


def _stripe_rows(height: int) -> list[tuple[int, int]]:
    """Three half-overlapping stripes of height ``height // 2`` starting at 0, h/4 and h/2."""
    stripe, step = height // 2, height // 4
    if stripe < 1 or step < 1:
        raise ValueError(f"feature map height {height} too small for three overlapping stripes (need >= 4)")
    return [(0, stripe), (step, step + stripe), (2 * step, 2 * step + stripe)]


class MLSNet(nn.Module):
    """The multi-level similarity Siamese network (see the module docstring).

    Args:
        levels: CSN levels, ``("l2", "l3")`` (the paper's main model) or ``("l2", "l3", "l4")``.
        input_size: Image ``(height, width)``; 160×60 in the paper; at least 32×8.
        part_sizes: Side ``f`` of the STN parts per level (10 / 5 / 5 by default).
        correlation: ``"grouped"`` (training), ``"padded"`` or ``"unfold"`` (ONNX export with a dynamic
            batch); see :class:`training.models.stn.DepthwiseCorrelation` and :meth:`set_correlation_method`.
    """

    def __init__(
        self,
        *,
        levels: Sequence[str] = ("l2", "l3"),
        input_size: tuple[int, int] = (160, 60),
        part_sizes: dict[str, int] | None = None,
        correlation: str = "grouped",
    ) -> None:
        super().__init__()
        levels = tuple(levels)
        if levels not in (("l2", "l3"), ("l2", "l3", "l4")):
            raise ValueError(f"levels must be ('l2', 'l3') or ('l2', 'l3', 'l4'), got {levels}")
        height, width = input_size
        if height < 32 or width < 8:
            raise ValueError(f"input_size must be (H, W) with H >= 32 and W >= 8, got {input_size}")
        self.levels = levels
        self.input_size = (height, width)
        sizes = {**DEFAULT_PART_SIZES, **(part_sizes or {})}
        if set(sizes) != set(LEVEL_NAMES) or any(size < 1 for size in sizes.values()):
            raise ValueError(f"part_sizes must map levels of {LEVEL_NAMES} to sizes >= 1, got {part_sizes}")
        self.part_sizes = {level: sizes[level] for level in levels}
        l2_size = (_pooled(_pooled(height)), _pooled(_pooled(width)))
        self.map_sizes = {"l2": l2_size, "l3": (_pooled(l2_size[0]), _pooled(l2_size[1]))}
        self.map_sizes["l4"] = self.map_sizes["l3"]

        self.conv1 = conv_bn_relu(3, 32, 5, pool=True)
        self.conv2 = conv_bn_relu(32, CHANNELS, 3, pool=True)
        self.conv3 = conv_bn_relu(CHANNELS, CHANNELS, 3, pool=False)
        self.pool3 = nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)
        self.conv_l4 = conv_bn_relu(CHANNELS, CHANNELS, 3, pool=True) if "l4" in levels else None
        self.stn = nn.ModuleDict(
            {
                level: StripeSTN(
                    CHANNELS,
                    stripe_rows=_stripe_rows(self.map_sizes[level][0]),
                    part_size=self.part_sizes[level],
                    map_size=self.map_sizes[level],
                )
                for level in levels
            }
        )
        self.correlation = DepthwiseCorrelation(correlation)
        self.sim_pool = nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)
        self.comparison = nn.Sequential(
            conv_bn_relu(6 * CHANNELS * len(levels), 32, 1, pool=False),
            conv_bn_relu(32, 32, 3, pool=True),
            conv_bn_relu(32, 500, 1, pool=False),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(500, 2),
        )
        self.ranking_part_convs = nn.ModuleDict(
            {level: conv_bn_relu(CHANNELS, CHANNELS, 3, pool=True) for level in levels}
        )
        self.ranking_stripe_conv = conv_bn_relu(CHANNELS, CHANNELS, 3, pool=False)
        self.ranking_fc = nn.Linear(CHANNELS, DESCRIPTOR_DIM)

    # ---------------------------------------------------------------- image side
    def encode(self, images: Tensor) -> MLSEncoding:
        """Feature maps, STN parts and ranking descriptor of an image batch ``N × 3 × H × W``."""
        if not torch.jit.is_tracing() and tuple(images.shape[-2:]) != self.input_size:
            raise ValueError(f"expected images of size {self.input_size}, got {tuple(images.shape[-2:])}")
        x2 = self.conv2(self.conv1(images))
        conv3 = self.conv3(x2)
        maps = {"l2": x2, "l3": self.pool3(conv3)}
        if self.conv_l4 is not None:
            maps["l4"] = self.conv_l4(conv3)
        maps = {level: maps[level] for level in self.levels}
        parts: dict[str, Tensor] = {}
        rotation = []
        for level in self.levels:
            out = self.stn[level](maps[level])
            parts[level] = out.parts
            rotation.append(out.rotation_l1)
        return MLSEncoding(
            maps=maps,
            parts=parts,
            descriptor=self._rank_descriptor(parts),
            rotation_l1=torch.stack(rotation, dim=1).mean(dim=1),
        )

    def embed(self, images: Tensor) -> Tensor:
        """The L2-normalised ranking descriptors ``N × 256`` (what the service shortlists with)."""
        return self.encode(images).descriptor

    def _rank_descriptor(self, parts: dict[str, Tensor]) -> Tensor:
        positions = []
        for level, level_parts in parts.items():
            n, s, c, f, _ = level_parts.shape
            pooled = self.ranking_part_convs[level](level_parts.reshape(n * s, c, f, f))
            p = pooled.shape[-1]
            # Stack the stripes' parts vertically: N × C × (S·p) × p.
            stacked = pooled.reshape(n, s, c, p, p).transpose(1, 2).reshape(n, c, s * p, p)
            positions.append(self.ranking_stripe_conv(stacked).flatten(2))
        pooled_descriptor = torch.cat(positions, dim=2).mean(dim=2)
        return F.normalize(self.ranking_fc(pooled_descriptor), dim=1)

    # ---------------------------------------------------------------- pair side
    def compare(self, enc_a: MLSEncoding, enc_b: MLSEncoding) -> Tensor:
        """Verification logits ``N × 2`` ``(different, same)`` of pairs given their two encodings."""
        similarity_maps = []
        for level in self.levels:
            # Eq. 2: the map of one image correlated with the parts of the other, both directions.
            sim = torch.cat(
                [
                    self.correlation(enc_a.maps[level], enc_b.parts[level]),
                    self.correlation(enc_b.maps[level], enc_a.parts[level]),
                ],
                dim=1,
            )
            similarity_maps.append(self.sim_pool(sim) if level == "l2" else sim)
        return self.comparison(torch.cat(similarity_maps, dim=1))

    def forward(self, images_a: Tensor, images_b: Tensor) -> MLSOutput:
        """Logits, both descriptors and the STN penalty of a batch of pairs (both sides encoded together)."""
        if images_a.shape != images_b.shape:
            raise ValueError(
                f"pair batches differ in shape: {tuple(images_a.shape)} vs {tuple(images_b.shape)}"
            )
        n = images_a.shape[0]
        enc = self.encode(torch.cat([images_a, images_b], dim=0))
        enc_a, enc_b = split_encoding(enc, n)
        return MLSOutput(
            logits=self.compare(enc_a, enc_b),
            descriptor_a=enc_a.descriptor,
            descriptor_b=enc_b.descriptor,
            stn_penalty=enc.rotation_l1.mean(),
        )

    def score_encodings(self, enc_a: MLSEncoding, enc_b: MLSEncoding) -> Tensor:
        """Final similarity score (Eq. 7) per pair, ``N``; higher = more likely the same person."""
        p_same = self.compare(enc_a, enc_b).softmax(dim=1)[:, SAME_INDEX]
        return similarity_score(p_same, (enc_a.descriptor - enc_b.descriptor).norm(dim=1))

    def score(self, images_a: Tensor, images_b: Tensor) -> Tensor:
        """Final similarity score (Eq. 7) of image pairs, ``N``."""
        return self.score_encodings(self.encode(images_a), self.encode(images_b))

    # ---------------------------------------------------------------- flat encodings
    def encoding_layout(self) -> list[tuple[str, tuple[int, ...]]]:
        """Names and per-image shapes of the pieces of a flat encoding, in order."""
        layout: list[tuple[str, tuple[int, ...]]] = []
        for level in self.levels:
            layout.append((f"map_{level}", (CHANNELS, *self.map_sizes[level])))
        for level in self.levels:
            f = self.part_sizes[level]
            layout.append((f"parts_{level}", (3, CHANNELS, f, f)))
        layout.append(("descriptor", (DESCRIPTOR_DIM,)))
        return layout

    @property
    def encoding_dim(self) -> int:
        """Length of a flat encoding (one image)."""
        return sum(math.prod(shape) for _, shape in self.encoding_layout())

    def flatten_encoding(self, enc: MLSEncoding) -> Tensor:
        """Concatenate an encoding into ``N × encoding_dim`` (layout: :meth:`encoding_layout`)."""
        pieces = [enc.maps[level] for level in self.levels] + [enc.parts[level] for level in self.levels]
        pieces.append(enc.descriptor)
        return torch.cat([piece.flatten(1) for piece in pieces], dim=1)

    def unflatten_encoding(self, flat: Tensor) -> MLSEncoding:
        """Inverse of :meth:`flatten_encoding` (``rotation_l1`` is not stored and comes back as zeros)."""
        if not torch.jit.is_tracing() and (flat.dim() != 2 or flat.shape[1] != self.encoding_dim):
            raise ValueError(f"expected a N × {self.encoding_dim} flat encoding, got {tuple(flat.shape)}")
        pieces: dict[str, Tensor] = {}
        offset = 0
        for name, shape in self.encoding_layout():
            size = math.prod(shape)
            pieces[name] = flat[:, offset : offset + size].reshape(-1, *shape)
            offset += size
        return MLSEncoding(
            maps={level: pieces[f"map_{level}"] for level in self.levels},
            parts={level: pieces[f"parts_{level}"] for level in self.levels},
            descriptor=pieces["descriptor"],
            rotation_l1=torch.zeros_like(pieces["descriptor"][:, 0]),
        )

    def set_correlation_method(self, method: str, *, max_batch: int = 16) -> None:
        """Switch the depth-wise correlation implementation; see :class:`DepthwiseCorrelation`.

        Use ``"padded"`` (comparator batches of at most ``max_batch`` pairs) or ``"unfold"`` (any batch)
        before exporting :class:`MLSComparatorExport`, ``"grouped"`` for training.
        """
        self.correlation = DepthwiseCorrelation(method, max_batch=max_batch)


def count_pair_flops(model: MLSNet) -> FlopCount:
    """FLOPs of scoring one pair at ``model.input_size`` (both encodings + comparison), in eval mode.

    Use ``.gflops`` to compare with :data:`PAPER_SIZES`; the model's train / eval mode is restored.
    """
    was_training = model.training
    model.eval()
    images = torch.zeros(1, 3, *model.input_size, device=next(model.parameters()).device)
    try:
        return count_flops(model, lambda: model(images, images))
    finally:
        model.train(was_training)


def split_encoding(enc: MLSEncoding, n: int) -> tuple[MLSEncoding, MLSEncoding]:
    """Split an encoding of ``2n`` images into the encodings of the first ``n`` and the last ``n``."""

    def part(lo: int, hi: int) -> MLSEncoding:
        return MLSEncoding(
            maps={k: v[lo:hi] for k, v in enc.maps.items()},
            parts={k: v[lo:hi] for k, v in enc.parts.items()},
            descriptor=enc.descriptor[lo:hi],
            rotation_l1=enc.rotation_l1[lo:hi],
        )

    return part(0, n), part(n, 2 * n)


class MLSEncoderExport(nn.Module):
    """``encoder.onnx``: images ``N×3×H×W`` → (``encoding`` ``N × encoding_dim``, ``descriptor`` ``N × 256``).

    The descriptor is also the last 256 values of the encoding; it is a separate output so the service can
    index it in FAISS without knowing the layout. The wrapper (and so the model) is put in eval mode.
    """

    def __init__(self, model: MLSNet) -> None:
        super().__init__()
        self.model = model
        self.eval()

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        enc = self.model.encode(images)
        return self.model.flatten_encoding(enc), enc.descriptor


class MLSComparatorExport(nn.Module):
    """``comparator.onnx``: (``encoding_a``, ``encoding_b``) → (``score``, ``probabilities``, ``distance``).

    ``score`` (``N``) is Eq. 7, ``probabilities`` (``N × 2``) the softmax ``(different, same)``, ``distance``
    (``N``) the Euclidean distance of the descriptors. Before exporting, switch the model to the ``"padded"``
    correlation (fastest; the graph then accepts at most ``max_batch`` pairs per call) or to ``"unfold"``
    (any batch) with :meth:`MLSNet.set_correlation_method`: the training-time grouped convolution would
    freeze the batch size.
    The wrapper (and so the model) is put in eval mode.
    """

    def __init__(self, model: MLSNet) -> None:
        super().__init__()
        self.model = model
        self.eval()

    def forward(self, encoding_a: Tensor, encoding_b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        enc_a = self.model.unflatten_encoding(encoding_a)
        enc_b = self.model.unflatten_encoding(encoding_b)
        probabilities = self.model.compare(enc_a, enc_b).softmax(dim=1)
        distance = (enc_a.descriptor - enc_b.descriptor).norm(dim=1)
        return similarity_score(probabilities[:, SAME_INDEX], distance), probabilities, distance
