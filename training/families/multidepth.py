"""The multidepth family (paper 001): a VGG identity classifier whose smoothed multi-depth maps describe.

Trained as an identity classifier on P × K batches (ID loss only). After training, ``reid explore-filters``
selects per layer the filters whose box-smoothed maps best separate same from different persons and stores
the selection in the checkpoint (:func:`store_selection`); loading applies it. Exported as an embedding model
(``embedding.onnx`` holds the selection and the smoothing), ranked by Euclidean distance as in the paper.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from training.checks import at_least
from training.export.onnx_io import ExportError, assert_eval_mode
from training.families.embedding import ImageEmbeddingFamily, identity_batch
from training.families.registry import formerly, register_family
from training.models.multidepth import DEFAULT_LAYERS, DescriptorExport, MultiDepthVGG

if TYPE_CHECKING:
    from training.engine.config import TrainConfig

#: Checkpoint key of a multidepth model's filter selection (written by ``reid explore-filters``).
SELECTION_KEY = "selected_filters"


@dataclass
class MultiDepthOptions:
    """The multidepth section of a run config (``--multidepth.filter_size 20``).

    Attributes:
        layers: Backbone levels whose maps are smoothed.
        filter_size: Box filter side ``l`` (20 in the paper), >= 1.
        image_resolution: Resize the maps to height × width before smoothing (else their native size).
    """

    layers: tuple[str, ...] = formerly("multidepth_layers", tuple(DEFAULT_LAYERS))
    filter_size: int = formerly("filter_size", 20)
    image_resolution: bool = formerly("multidepth_image_resolution", False)

    def __post_init__(self) -> None:
        self.layers = tuple(str(v) for v in self.layers)
        at_least("multidepth.filter_size", self.filter_size, 1)


@register_family
class MultiDepthFamily(ImageEmbeddingFamily[MultiDepthOptions]):
    """VGG identity classifier → smoothed multi-depth filter maps as the descriptor (paper 001).

    The descriptor holds the selected filters' maps at several depths, each box-smoothed.
    """

    name = "multidepth"
    losses = ("id",)
    default_metric = "euclidean"  # paper 001 ranks by Euclidean distance

    def validate(self, cfg: TrainConfig) -> None:
        if cfg.id_weight <= 0:
            raise ValueError("model_kind 'multidepth' trains an identity classifier: id_weight must be > 0")

    def architecture(self, cfg: TrainConfig) -> str:
        options = self.options(cfg)
        return f"{self.name}:{cfg.backbone}" + "".join(f"+{layer}" for layer in options.layers)

    def build(self, cfg: TrainConfig, num_classes: int) -> nn.Module:
        options = self.options(cfg)
        return MultiDepthVGG(
            num_classes=num_classes, backbone=cfg.backbone, layers=options.layers,
            filter_size=options.filter_size, pretrained=cfg.pretrained,
            map_size=(cfg.height, cfg.width) if options.image_resolution else None,
        )

    def loss_terms(
        self, net: nn.Module, batch: list[Any], losses: dict[str, nn.Module], device: torch.device
    ) -> tuple[dict[str, Tensor], int]:
        images, pids = identity_batch(batch, device)
        inputs = {"id": (net(images).float(), pids)}  # the forward pass returns the identity logits
        return {name: loss(*inputs[name]) for name, loss in losses.items()}, images.shape[0]

    def load_extras(self, model: nn.Module, ckpt: dict[str, Any]) -> None:
        if ckpt.get(SELECTION_KEY) is not None:
            model.set_selection(ckpt[SELECTION_KEY])  # type: ignore[operator]

    def embedder(self, model: nn.Module) -> nn.Module:
        """The descriptor with the filter selection and the box smoothing inside.

        Raises:
            ExportError: A module in training mode, or no filter selection yet.
        """
        assert_eval_mode(model)
        if getattr(model, "selected", None) is None:
            raise ExportError(
                "the multidepth model has no filter selection: run `reid explore-filters --checkpoint "
                "RUN/checkpoint.pt` first"
            )
        return DescriptorExport(model).eval()  # type: ignore[arg-type]

    def describe(self, cfg: TrainConfig) -> str:
        return f"{cfg.backbone} multi-depth smoothed descriptor"


def store_selection(path: str | Path, selected: dict[str, list[int]]) -> Path:
    """Add a multidepth filter selection to a checkpoint (atomically); loading the model applies it.

    Raises:
        FileNotFoundError / ValueError: See :func:`~training.engine.checkpoint.read_checkpoint`; or the
            checkpoint is not of this family.
    """
    from training.engine.checkpoint import read_checkpoint

    path = Path(path)
    ckpt = read_checkpoint(path)
    kind = ckpt["config"].get("model_kind")
    if kind != MultiDepthFamily.name:
        raise ValueError(f"{path}: filter selection needs a multidepth checkpoint, got model_kind {kind!r}")
    ckpt[SELECTION_KEY] = {str(layer): [int(i) for i in idx] for layer, idx in selected.items()}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)
    return path
