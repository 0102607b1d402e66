"""Checkpoints: build a model from a config, save it with everything needed to rebuild it, load it back.

A checkpoint is a ``torch.save`` dict holding the model weights, the resolved :class:`TrainConfig` as a dict,
``num_classes`` and an *architecture* string (see :func:`architecture_name`). :func:`load_model` rebuilds the
model from the stored config alone — the export step and ``reid eval`` use exactly this — and loading weights
into a model of another architecture fails with a message naming both.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.checks import at_least
from training.engine.config import TrainConfig

CHECKPOINT_FORMAT = "reid-checkpoint/1"


def architecture_name(cfg: TrainConfig) -> str:
    """A short string that differs whenever the parameter layout differs (the family decides).

    Examples: ``embedding:osnet_x0_25``, ``embedding:resnet50+reduce512``, ``siamese:efficientnet_b0+bnneck``,
    ``pairwise:mls+l2+l3``, ``multidepth:vgg16+pool3+pool4+pool5``.
    """
    return cfg.family.architecture(cfg)


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """The model a config describes (built by its family), randomly initialised except for
    ``cfg.pretrained`` backbone weights, in training mode.

    Args:
        cfg: The run configuration (family, backbone, the family's section).
        num_classes: Number of training identities (size of the identity classifier, where there is one).

    Raises:
        ValueError: Unknown backbone (lists the valid ones), an option the backbone does not take, or
            ``num_classes`` < 1.
    """
    at_least("num_classes", num_classes, 1)
    return cfg.family.build(cfg, num_classes)


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DistributedDataParallel / DataParallel wrapper."""
    return getattr(model, "module", model)


def save_checkpoint(
    path: str | Path,
    *,
    model: nn.Module,
    cfg: TrainConfig,
    num_classes: int,
    epoch: int,
    optimizer: torch.optim.Optimizer | None = None,
    center_loss: nn.Module | None = None,
    center_optimizer: torch.optim.Optimizer | None = None,
    scaler: Any = None,
    metrics: dict[str, float] | None = None,
    best_score: float | None = None,
) -> Path:
    """Write a checkpoint atomically (temporary file, then rename).

    Args:
        path: Target file (``RUN/last.pt`` or ``RUN/checkpoint.pt``).
        model: The model (a DDP wrapper is unwrapped).
        cfg: The resolved run config.
        num_classes: Training identities.
        epoch: Index of the last completed epoch (0-based).
        optimizer: Model optimizer, stored for ``--resume``.
        center_loss: Center-loss module (its centers), if used.
        center_optimizer: The centers' optimizer, if used.
        scaler: AMP grad scaler, if used.
        metrics: Validation metrics at this epoch.
        best_score: Best validation score so far (for ``--resume``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "architecture": architecture_name(cfg),
        "config": cfg.to_dict(),
        "num_classes": int(num_classes),
        "epoch": int(epoch),
        "model": unwrap(model).state_dict(),
        "metrics": dict(metrics or {}),
        "best_score": best_score,
        "torch_version": torch.__version__,
    }
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    if center_loss is not None:
        state["center_loss"] = center_loss.state_dict()
    if center_optimizer is not None:
        state["center_optimizer"] = center_optimizer.state_dict()
    if scaler is not None:
        state["scaler"] = scaler.state_dict()
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint dict.

    Raises:
        FileNotFoundError: No such file.
        ValueError: The file is not a checkpoint written by :func:`save_checkpoint`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # pickle / zip errors surface as many types
        raise ValueError(f"{path}: not a readable torch checkpoint: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint (written by `reid train`)")
    return ckpt


def load_weights(
    model: nn.Module, ckpt: dict[str, Any], *, architecture: str, source: str = "checkpoint"
) -> None:
    """Copy a checkpoint's weights into ``model`` (strict), after checking both have the same architecture.

    Args:
        model: Target model (a DDP wrapper is unwrapped).
        ckpt: Checkpoint dict from :func:`read_checkpoint`.
        architecture: The target model's :func:`architecture_name`.
        source: What to call the checkpoint in error messages (its path).

    Raises:
        ValueError: Architectures differ (both are named), or a key / shape mismatch (the first is named).
    """
    stored = ckpt.get("architecture")
    if stored != architecture:
        raise ValueError(
            f"{source} holds architecture {stored!r} but the model is {architecture!r}; "
            "they cannot share weights"
        )
    target = unwrap(model)
    expected, given = target.state_dict(), ckpt["model"]
    for key in given:
        if key not in expected:
            raise ValueError(f"{source}: unexpected key {key!r} for architecture {architecture!r}")
        if tuple(given[key].shape) != tuple(expected[key].shape):
            raise ValueError(
                f"{source}: shape mismatch for {key!r}: checkpoint has {tuple(given[key].shape)}, "
                f"model expects {tuple(expected[key].shape)}"
            )
    missing = [key for key in expected if key not in given]
    if missing:
        raise ValueError(f"{source}: missing key {missing[0]!r} for architecture {architecture!r}")
    target.load_state_dict(given, strict=True)


def load_model(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, TrainConfig, dict[str, Any]]:
    """Rebuild the model stored in a checkpoint, from its own config, in eval mode.

    The stored ``pretrained`` path is ignored: the checkpoint already holds every weight. The family then
    applies what else the checkpoint stores (a multidepth model: the filter selection of
    ``reid explore-filters``).

    Returns:
        ``(model in eval mode, the run's TrainConfig, the raw checkpoint dict)``.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not a checkpoint, or its weights do not fit the architecture it names.
    """
    ckpt = read_checkpoint(path, map_location=map_location)
    cfg = TrainConfig.from_dict(ckpt["config"])
    cfg.pretrained = None
    model = build_model(cfg, int(ckpt["num_classes"]))
    load_weights(model, ckpt, architecture=architecture_name(cfg), source=str(path))
    cfg.family.load_extras(model, ckpt)
    model.to(map_location)
    model.eval()
    return model, cfg, ckpt
