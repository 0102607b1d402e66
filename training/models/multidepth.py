"""Multi-depth smoothed discriminative features (Sezavar, Farsi & Mohamadzadeh 2022, paper ``001_…``).

A VGG-16 is trained as an identity classifier (GAP + linear over the training identities). Afterwards, the
feature maps of several layers are smoothed by an ``l×l`` box filter (Eq. 1, weights ``1/l²``, ``l = 20``);
:func:`explore_filters` measures per filter (channel) ``i`` of each layer the mean Euclidean distances
``d_s,i`` (query vs same person) and ``d_d,i`` (query vs another person) over triplets and keeps
``argmax_i (d_d,i − d_s,i)`` (Eq. 2–4), optionally the top-k. The descriptor is the concatenation of the
selected smoothed maps, flattened; the gallery is ranked by Euclidean distance.

Choices where the paper is silent:

* **Borders.** The smoothed map keeps the size of the feature map ("same" output; for an even ``l`` the
  window reaches ``l//2 − 1`` pixels up / left and ``l//2`` down / right) and each output is the mean of the
  window's pixels *inside* the map (zero padding, divided by the in-map count rather than by ``l²``), so a
  constant map stays constant instead of darkening towards the borders.
* **Resolution.** The paper sums Eq. 2 over "the frame" and smooths "visualised" maps with ``l = 20``,
  i.e. at image resolution; ``map_size`` (e.g. the input size) bilinearly resizes each map before
  smoothing. ``None`` (default) smooths at the layer's native resolution, where a 20×20 window spans most of
  a deep layer's map.
* **Layers.** ``("pool3", "pool4", "pool5")`` by default (VGG-16 block outputs, see
  :mod:`training.models.backbones.vgg`); the paper only says "multiple layers".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.checks import at_least
from training.models.backbones import Backbone, build_backbone

DEFAULT_LAYERS: tuple[str, ...] = ("pool3", "pool4", "pool5")
Triplet = tuple[Tensor, Tensor, Tensor]


def box_smooth(maps: Tensor, filter_size: int) -> Tensor:
    """``l×l`` box filter with "same" output size, averaging only the in-map pixels of each window.

    Args:
        maps: Feature maps ``N × C × H × W``.
        filter_size: Window side ``l`` (>= 1).

    Returns:
        Smoothed maps of the same shape.
    """
    at_least("filter_size", filter_size, 1)
    if filter_size == 1:
        return maps
    before, after = (filter_size - 1) // 2, filter_size // 2

    def window_sum(x: Tensor, dim: int) -> Tensor:
        # Running sums: O(1) per pixel whatever l is (avg_pool2d costs l² per pixel, which dominates the
        # filter exploration at l = 20). A leading zero makes every window a difference of two running sums.
        pad = [0, 0, 0, 0]
        pad[2 * (3 - dim)] = before + 1
        pad[2 * (3 - dim) + 1] = after
        running = F.pad(x, pad).cumsum(dim=dim)
        size = x.shape[dim]
        return running.narrow(dim, filter_size, size) - running.narrow(dim, 0, size)

    def window_mean(x: Tensor) -> Tensor:
        return window_sum(window_sum(x, 2), 3)

    return window_mean(maps) / window_mean(torch.ones_like(maps[:1, :1]))


class MultiDepthVGG(nn.Module):
    """Identity-classifier backbone plus the multi-depth smoothed descriptor (see the module docstring).

    Args:
        num_classes: Number of training identities for the classifier.
        backbone: Registered backbone name (``"vgg16"``) or a :class:`Backbone` instance.
        layers: Backbone levels whose maps are smoothed (``backbone.level_names``).
        filter_size: Box filter side ``l`` (20 in the paper).
        selected: Per layer, the selected filter (channel) indices, e.g. from :func:`explore_filters`;
            required by :meth:`descriptor`, settable later with :meth:`set_selection`.
        map_size: ``(height, width)`` every map is resized to before smoothing, or ``None`` for native.
        pretrained: Local ImageNet weights file for a named backbone (see ``build_backbone``).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        backbone: str | Backbone = "vgg16",
        layers: Sequence[str] = DEFAULT_LAYERS,
        filter_size: int = 20,
        selected: Mapping[str, Sequence[int]] | None = None,
        map_size: tuple[int, int] | None = None,
        pretrained: str | None = None,
    ) -> None:
        super().__init__()
        at_least("num_classes", num_classes, 1)
        at_least("filter_size", filter_size, 1)
        if isinstance(backbone, str):
            backbone = build_backbone(backbone, pretrained=pretrained)
        self.backbone = backbone
        valid = backbone.level_names
        if not layers or any(layer not in valid for layer in layers):
            raise ValueError(f"layers must be a non-empty subset of {valid}, got {list(layers)}")
        self.layers = tuple(layers)
        self.filter_size = filter_size
        self.map_size = map_size
        self.classifier = nn.Linear(self.backbone.feature_dim, num_classes)
        self.selected: dict[str, list[int]] | None = None
        if selected is not None:
            self.set_selection(selected)

    def forward(self, images: Tensor) -> Tensor:
        """Identity logits ``N × num_classes`` (GAP of the final map → linear), for training."""
        return self.classifier(self.backbone(images).mean(dim=(2, 3)))

    def smooth(self, maps: Tensor) -> Tensor:
        """Resize (if ``map_size``) and box-smooth feature maps ``N × C × h × w``."""
        if self.map_size is not None and tuple(maps.shape[-2:]) != self.map_size:
            maps = F.interpolate(maps, size=self.map_size, mode="bilinear", align_corners=False)
        return box_smooth(maps, self.filter_size)

    def smoothed_maps(self, images: Tensor, layers: Sequence[str] | None = None) -> dict[str, Tensor]:
        """Smoothed feature maps of ``layers`` (default: :attr:`layers`), keyed by layer."""
        maps = self.backbone.forward_levels(images, list(layers or self.layers))
        return {layer: self.smooth(fmap) for layer, fmap in maps.items()}

    def set_selection(self, selected: Mapping[str, Sequence[int]]) -> None:
        """Set the selected filters per layer; every layer of :attr:`layers` needs at least one index."""
        channels = self._layer_channels()
        clean: dict[str, list[int]] = {}
        for layer in self.layers:
            indices = [int(i) for i in selected.get(layer, [])]
            if not indices or any(not 0 <= i < channels[layer] for i in indices):
                raise ValueError(
                    f"selected[{layer!r}] must be a non-empty list of channels in [0, {channels[layer]}), "
                    f"got {indices}"
                )
            clean[layer] = indices
        extra = sorted(set(selected) - set(self.layers))
        if extra:
            raise ValueError(f"selected names layers {extra} that are not among {list(self.layers)}")
        self.selected = clean

    def descriptor(self, images: Tensor) -> Tensor:
        """Concatenated, flattened selected smoothed maps ``N × D`` (layers in :attr:`layers` order)."""
        if self.selected is None:
            raise ValueError("no filters selected: run explore_filters and set_selection first")
        # Smoothing is per channel, so select first: only the kept maps are resized and smoothed.
        maps = self.backbone.forward_levels(images, list(self.layers))
        pieces = [self.smooth(maps[layer][:, self.selected[layer]]).flatten(1) for layer in self.layers]
        return torch.cat(pieces, dim=1)

    def embed(self, images: Tensor) -> Tensor:
        """The ranking features: :meth:`descriptor` once filters are selected, else the GAP feature.

        Before ``explore_filters`` has run (validation during training) the descriptor does not exist yet, so
        the pooled final map — the classifier's input — stands in for it.
        """
        if self.selected is None:
            return self.backbone(images).mean(dim=(2, 3))
        return self.descriptor(images)

    def _layer_channels(self) -> dict[str, int]:
        was_training = self.backbone.training
        self.backbone.eval()
        with torch.no_grad():
            probe = torch.zeros(1, 3, 64, 32, device=next(self.parameters()).device)
            maps = self.backbone.forward_levels(probe, list(self.layers))
        self.backbone.train(was_training)
        return {layer: fmap.shape[1] for layer, fmap in maps.items()}


def filter_margins(
    model: MultiDepthVGG,
    triplets: Iterable[Triplet] | Triplet,
    *,
    layers: Sequence[str] | None = None,
) -> dict[str, tuple[Tensor, Tensor]]:
    """Mean same-person and different-person distances per filter, ``{layer: (d_s, d_d)}`` (each ``C``).

    Args:
        model: The trained model (run in eval mode, without gradients; its mode is restored afterwards).
        triplets: Batches ``(query, same, different)`` of images, each ``N × 3 × H × W``, where ``same[k]``
            shows the person of ``query[k]`` and ``different[k]`` another person; or a single such tuple.
        layers: Layers to explore (default: ``model.layers``).

    Returns:
        Per layer, ``d_s`` and ``d_d``: the Euclidean distances (Eq. 2–3) between smoothed maps, averaged over
        all triplets.

    Raises:
        ValueError: If no triplet is given or the three batches of a triplet differ in shape.
    """
    batches: Iterable[Triplet]
    if isinstance(triplets, tuple) and len(triplets) == 3 and all(isinstance(t, Tensor) for t in triplets):
        batches = [triplets]  # type: ignore[list-item]
    else:
        batches = triplets  # type: ignore[assignment]
    layers = list(layers or model.layers)
    was_training = model.training
    model.eval()
    sums: dict[str, list[Tensor]] = {}
    count = 0
    device = next(model.parameters()).device
    with torch.no_grad():
        for query, same, different in batches:
            if not query.shape == same.shape == different.shape:
                raise ValueError(
                    f"triplet batches differ in shape: {tuple(query.shape)}, {tuple(same.shape)}, "
                    f"{tuple(different.shape)}"
                )
            n = query.shape[0]
            batch = torch.cat([query, same, different]).to(device)
            for layer, smoothed in model.smoothed_maps(batch, layers).items():
                q, s, d = smoothed.flatten(2).split(n)
                d_s = (q - s).norm(dim=2).sum(dim=0)
                d_d = (q - d).norm(dim=2).sum(dim=0)
                if layer in sums:
                    sums[layer][0] += d_s
                    sums[layer][1] += d_d
                else:
                    sums[layer] = [d_s, d_d]
            count += n
    model.train(was_training)
    if count == 0:
        raise ValueError("triplets is empty: need at least one (query, same, different) triplet")
    return {layer: (d_s / count, d_d / count) for layer, (d_s, d_d) in sums.items()}


def explore_filters(
    model: MultiDepthVGG,
    triplets: Iterable[Triplet] | Triplet,
    *,
    layers: Sequence[str] | None = None,
    top_k: int = 1,
) -> dict[str, list[int]]:
    """Per layer, the ``top_k`` filters maximising ``d_d,i − d_s,i`` (Eq. 4), best first.

    Args:
        model: The trained model.
        triplets: ``(query, same, different)`` batches, see :func:`filter_margins`.
        layers: Layers to explore (default: ``model.layers``).
        top_k: Filters kept per layer (1 in the paper).

    Returns:
        ``{layer: [channel, ...]}``, ready for :meth:`MultiDepthVGG.set_selection`.
    """
    at_least("top_k", top_k, 1)
    selected: dict[str, list[int]] = {}
    for layer, (d_s, d_d) in filter_margins(model, triplets, layers=layers).items():
        if top_k > d_s.numel():
            raise ValueError(f"top_k={top_k} exceeds the {d_s.numel()} filters of layer {layer!r}")
        margin = d_d - d_s
        # Stable descending order: ties keep the lower channel index first.
        order = sorted(range(margin.numel()), key=lambda i: (-float(margin[i]), i))
        selected[layer] = order[:top_k]
    return selected


class DescriptorExport(nn.Module):
    """``embedding.onnx``: images ``N × 3 × H × W`` → descriptor ``N × D`` (selection and smoothing inside).

    The wrapper (and so the model) is put in eval mode; the model must have a selection.
    """

    def __init__(self, model: MultiDepthVGG) -> None:
        super().__init__()
        if model.selected is None:
            raise ValueError("model has no selected filters: run explore_filters and set_selection first")
        self.model = model
        self.eval()

    def forward(self, images: Tensor) -> Tensor:
        return self.model.descriptor(images)


def descriptor_dim(model: MultiDepthVGG, input_size: tuple[int, int]) -> int:
    """Length of :meth:`MultiDepthVGG.descriptor` for images of ``input_size`` ``(height, width)``."""
    if model.selected is None:
        raise ValueError("model has no selected filters")
    was_training = model.training
    model.eval()
    with torch.no_grad():
        probe = torch.zeros(1, 3, *input_size, device=next(model.parameters()).device)
        maps = model.backbone.forward_levels(probe, list(model.layers))
    model.train(was_training)
    sizes = {layer: model.map_size or tuple(fmap.shape[-2:]) for layer, fmap in maps.items()}
    return sum(len(model.selected[layer]) * math.prod(sizes[layer]) for layer in model.layers)
