"""The backbone registry: ``@register_backbone(name)`` beside each factory; ``build_backbone(name)``.

Pretrained weights come only from local files (no downloads): a torchvision-format ImageNet state dict
(``.pth``) for the torchvision families, a torchreid-format one for OSNet. Classifier keys (``fc.*``,
``classifier.*``) are dropped, then every remaining key and shape must match the backbone exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch

from training.models.backbones.base import Backbone

BackboneFactory = Callable[..., Backbone]
F = TypeVar("F", bound=BackboneFactory)

# Classifier parameters of the ImageNet checkpoints: torchvision ResNet ``fc``, VGG / MobileNet / EfficientNet
# ``classifier``; torchreid OSNet has both (``fc`` is its 512-d feature layer, not part of the backbone).
CLASSIFIER_PREFIXES: tuple[str, ...] = ("fc.", "classifier.")
_MAX_LISTED_PROBLEMS = 5

_REGISTRY: dict[str, BackboneFactory] = {}


def register_backbone(name: str) -> Callable[[F], F]:
    """Decorator registering a backbone factory ``factory(**options) -> Backbone`` under ``name``."""

    def deco(factory: F) -> F:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} is registered twice")
        _REGISTRY[name] = factory
        return factory

    return deco


def list_backbones() -> list[str]:
    """Names of all registered backbones, sorted."""
    return sorted(_REGISTRY)


def build_backbone(name: str, *, pretrained: str | Path | None = None, **kwargs: Any) -> Backbone:
    """Build a registered backbone, optionally loading ImageNet weights from a local file.

    Args:
        name: Registered backbone name, one of :func:`list_backbones`.
        pretrained: Path of a local state-dict file (torchvision format; torchreid format for OSNet), or
            ``None`` for random initialisation.
        **kwargs: Family options, e.g. ``last_stride=1`` for ``resnet50``.

    Returns:
        The backbone, in training mode.

    Raises:
        ValueError: If ``name`` is unknown or the pretrained file does not match the backbone.
        FileNotFoundError: If ``pretrained`` does not exist.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown backbone {name!r}; valid backbones: {list_backbones()}")
    backbone = _REGISTRY[name](**kwargs)
    if pretrained is not None:
        load_pretrained(backbone, pretrained, name=name)
    return backbone


def load_pretrained(backbone: Backbone, path: str | Path, *, name: str = "") -> None:
    """Load a local ImageNet state dict into ``backbone`` with ``strict=True`` after dropping the classifier.

    Accepts a bare state dict or a checkpoint dict holding one under ``"state_dict"``; a DataParallel
    ``module.`` prefix is removed. BatchNorm ``num_batches_tracked`` buffers may be absent (old torchvision
    files lack them).

    Args:
        backbone: The backbone to fill.
        path: The ``.pth`` file.
        name: Backbone name used in error messages.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If a key is missing or unexpected or a shape differs; the message names the first
            offending key (and the shapes for a mismatch).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {path}")
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    state_dict = backbone_state_dict(loaded)
    problems = state_dict_problems(backbone.state_dict(), state_dict)
    if problems:
        listed = "; ".join(problems[:_MAX_LISTED_PROBLEMS])
        more = (
            f" (+{len(problems) - _MAX_LISTED_PROBLEMS} more)" if len(problems) > _MAX_LISTED_PROBLEMS else ""
        )
        what = name or type(backbone).__name__
        raise ValueError(f"pretrained file {path} does not match backbone {what!r}: {listed}{more}")
    backbone.load_state_dict(state_dict, strict=True)


def backbone_state_dict(loaded: Any) -> dict[str, torch.Tensor]:
    """The backbone part of a checkpoint: unwrap ``"state_dict"``, strip ``module.``, drop the classifier."""
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping):
        raise ValueError(f"expected a state dict (mapping of name -> tensor), got {type(loaded).__name__}")
    out: dict[str, torch.Tensor] = {}
    for key, value in loaded.items():
        key = key.removeprefix("module.")
        if key.startswith(CLASSIFIER_PREFIXES):
            continue
        out[key] = value
    return out


def state_dict_problems(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> list[str]:
    """Human-readable differences between two state dicts, unexpected / missing keys first, then shapes.

    Keys are reported in state-dict order; a missing ``num_batches_tracked`` buffer is not a problem.
    """
    problems = [f"unexpected key {key!r}" for key in given if key not in expected]
    problems += [
        f"missing key {key!r}"
        for key in expected
        if key not in given and not key.endswith("num_batches_tracked")
    ]
    for key, value in given.items():
        if key in expected and tuple(value.shape) != tuple(expected[key].shape):
            problems.append(
                f"shape mismatch for {key!r}: file has {tuple(value.shape)}, "
                f"model expects {tuple(expected[key].shape)}"
            )
    return problems
