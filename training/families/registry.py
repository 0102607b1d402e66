"""The model-family registry: one registered object per family, asked instead of comparing family names.

A *family* is the whole shape of a model beyond its backbone: how it is built from a :class:`TrainConfig`,
which batches and losses train it, how it embeds and scores a query × gallery set, and which ONNX graphs and
manifest it exports. Each family lives in one module of :mod:`training.families` and registers a
:class:`Family` subclass with :func:`register_family` (the timm ``@register_model`` / fast-reid
meta-architecture pattern). ``TrainConfig.model_kind`` names the family; the trainer, evaluator, exporter,
model sizes and checkpoint loading call :func:`get_family` and then the family's methods.

A family with options of its own declares them as a dataclass (``options_type``): ``TrainConfig`` holds one
such *section* for the run's family (``cfg.section``; ``reid train --siamese.dropout 0.2``; ``"siamese":
{...}`` in ``config.json``). A section dataclass validates its own fields in ``__post_init__``; a field
that older versions held flat in ``TrainConfig`` gives its old name with :func:`formerly`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, get_args, get_origin

from service.contract.registry import Registry

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import Tensor, nn

    from service.contract.manifest import ScoringMode
    from service.contract.preprocess import PreprocessSpec
    from training.data.datasets import ImageRecord
    from training.engine.config import TrainConfig
    from training.evaluation.evaluator import EvalSettings, EvaluationResult
    from training.export.exporter import ExportOptions
    from training.export.graphs import WrittenGraphs

#: Section field metadata key: the field's old flat ``TrainConfig`` name.
FORMERLY = "formerly"


def formerly(
    old_name: str, default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING
) -> Any:
    """A section field that earlier versions held flat in ``TrainConfig`` as ``old_name``.

    Old ``config.json`` files and checkpoints still load and the old flag (``--siamese_dropout``) still works:
    the config loader and ``reid train`` map ``old_name`` to the section field.
    """
    return dataclasses.field(default=default, default_factory=default_factory, metadata={FORMERLY: old_name})


#: Every loss the trainer knows: ``TrainConfig.<name>_weight`` switches it on.
LOSS_NAMES: tuple[str, ...] = ("id", "triplet", "center", "verification", "contrastive", "stn")


#: The section dataclass of a family (``Family[SiameseOptions]``), ``None`` for a family without options.
OptionsT = TypeVar("OptionsT")


class Family(Generic[OptionsT]):
    """A model family. Subclass it, set the class attributes, implement the methods, register it.

    The type argument of the base names the family's section (``class SiameseFamily(Family[SiameseOptions])``)
    and types :meth:`options`.

    Attributes:
        name: Registry key and the value of ``TrainConfig.model_kind``.
        description: One line for ``reid train --help``; :func:`register_family` takes the summary line of
            the class docstring when it is not set.
        options_type: Dataclass of the family's config section, or None (no options of its own);
            :func:`register_family` takes the base's type argument when it is not set.
        pairs: Trained on image pairs (sampler ``pairs``); otherwise on P × K identity batches (``pk``).
        losses: The losses (:data:`LOSS_NAMES`) the family can train with.
        network: The name of the family's own network when it has no backbone (``cfg.backbone`` is then set
            to it), else None.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    options_type: ClassVar[type | None] = None
    pairs: ClassVar[bool] = False
    losses: ClassVar[tuple[str, ...]] = ()
    network: ClassVar[str | None] = None

    # ------------------------------------------------------------------ config
    @property
    def legacy_fields(self) -> dict[str, str]:
        """Old flat ``TrainConfig`` field → field of this family's section (see :func:`formerly`)."""
        if self.options_type is None:
            return {}
        fields = dataclasses.fields(self.options_type)
        return {f.metadata[FORMERLY]: f.name for f in fields if FORMERLY in f.metadata}

    @property
    def sampler(self) -> str:
        """The batch sampler the family trains with."""
        return "pairs" if self.pairs else "pk"

    def options(self, cfg: TrainConfig) -> OptionsT:
        """The run's section of this family (an ``options_type`` instance), or None."""
        return cfg.section

    def validate(self, cfg: TrainConfig) -> None:
        """Checks beyond the section's own and the common ones (raise ValueError naming the field)."""

    def architecture(self, cfg: TrainConfig) -> str:
        """A short string that differs whenever the parameter layout differs (checked when loading)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ model and training
    def build(self, cfg: TrainConfig, num_classes: int) -> nn.Module:
        """The model, randomly initialised except for ``cfg.pretrained`` backbone weights, in train mode."""
        raise NotImplementedError

    def build_losses(self, cfg: TrainConfig, num_classes: int, model: nn.Module) -> dict[str, nn.Module]:
        """The loss modules of the non-zero loss weights (see :func:`training.losses.build_loss`)."""
        from training.losses import build_loss

        return {
            name: build_loss(name, cfg, num_classes, model) for name in cfg.loss_weights()
        }

    def loss_terms(
        self, net: nn.Module, batch: list[Any], losses: dict[str, nn.Module], device: torch.device
    ) -> tuple[dict[str, Tensor], int]:
        """One batch through ``net``: each loss in ``losses`` (unweighted) and the image count."""
        raise NotImplementedError

    def load_extras(self, model: nn.Module, ckpt: dict[str, Any]) -> None:
        """Apply what a checkpoint stores beside the weights (e.g. a filter selection) to a loaded model."""

    # ------------------------------------------------------------------ sizes
    def flops_inputs(self, images: Tensor) -> tuple[Tensor, ...]:
        """The forward arguments FLOPs are counted for: one pair for pair families, one image otherwise."""
        return (images, images) if self.pairs else (images,)

    def paper_counted_params(self, cfg: TrainConfig, model: nn.Module) -> int | None:
        """The parameter count under a paper's own counting, where it differs from ours."""
        return None

    # ------------------------------------------------------------------ evaluation
    def evaluate(
        self, model: nn.Module, query: list[ImageRecord], gallery: list[ImageRecord], settings: EvalSettings
    ) -> EvaluationResult:
        """Rank the gallery for every query (CMC / mAP / mINP) and keep the features and score matrices."""
        raise NotImplementedError

    # ------------------------------------------------------------------ export
    def held_out_limit(self, opts: ExportOptions) -> int:
        """How many held-out images the export calibrates on."""
        return opts.max_calibration_images

    def export(
        self, model: nn.Module, folder: Path, images: np.ndarray, *, fp16: bool, opset: int
    ) -> WrittenGraphs:
        """Write the ONNX graphs into ``folder``, each through the parity gate."""
        raise NotImplementedError

    def calibrate(
        self, written: WrittenGraphs, folder: Path, held_out: list[ImageRecord], spec: PreprocessSpec,
        opts: ExportOptions,
    ) -> tuple[dict[str, ScoringMode], dict[str, int]]:
        """Every scoring mode of the export, calibrated with the written graphs; plus the pair counts."""
        raise NotImplementedError

    def manifest_fields(self, cfg: TrainConfig, written: WrittenGraphs, fp16: bool) -> dict[str, Any]:
        """The manifest fields the family decides: ``kind``, ``description``, ``default_metric`` and, where
        they apply, ``normalize_embeddings``, ``verification`` and ``pairwise``."""
        raise NotImplementedError


_FAMILIES: Registry[Family] = Registry("model family", "families")
F = TypeVar("F", bound=type[Family])


def register_family(cls: F) -> F:
    """Class decorator: register one instance of the family under ``cls.name``.

    Sets ``description`` (the docstring's summary line) and ``options_type`` (the base's type argument)
    where the class leaves them out.

    Raises:
        ValueError: No name, a name already taken, no description, a loss outside :data:`LOSS_NAMES`, or an
            options type that is not a dataclass.
    """
    name = cls.name
    if not name or not name.isidentifier():
        raise ValueError(f"family {cls.__name__} needs a name that is an identifier, got {name!r}")
    if "description" not in vars(cls):
        cls.description = " ".join((cls.__doc__ or "").split("\n\n")[0].split()).rstrip(".")
    if not cls.description:
        raise ValueError(f"family {name!r} needs a description or a docstring (its --help line)")
    if cls.options_type is None:
        cls.options_type = _section_type(cls)
    unknown = sorted(set(cls.losses) - set(LOSS_NAMES))
    if unknown or not cls.losses:
        raise ValueError(
            f"family {name!r}: losses must be a non-empty subset of {LOSS_NAMES}, got {cls.losses}"
        )
    if cls.options_type is not None and not dataclasses.is_dataclass(cls.options_type):
        raise ValueError(f"family {name!r}: options_type must be a dataclass, got {cls.options_type!r}")
    _FAMILIES.add(cls())
    return cls


def _section_type(cls: type[Family]) -> type | None:
    """The type argument of the family's base (``Family[SiameseOptions]``): a class, else None."""
    for base in getattr(cls, "__orig_bases__", ()):
        origin = get_origin(base)
        if isinstance(origin, type) and issubclass(origin, Family):
            arg = get_args(base)[0]
            return arg if isinstance(arg, type) and arg is not type(None) else None
    return None


#: Registered family names, in registration order.
family_names = _FAMILIES.names
#: The registered family ``name``; an unknown name raises ``ValueError`` listing the valid ones.
get_family = _FAMILIES.get


def families_with_loss(loss: str) -> list[str]:
    """Names of the families that train with ``loss``."""
    return [name for name in family_names() if loss in _FAMILIES.get(name).losses]


def legacy_field(name: str) -> tuple[str, str] | None:
    """``(family, section field)`` of an old flat config field name, or None."""
    for family in map(get_family, family_names()):
        if name in family.legacy_fields:
            return family.name, family.legacy_fields[name]
    return None
