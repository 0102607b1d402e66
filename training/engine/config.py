"""The training configuration: flat common fields plus the section of the run's model family.

A run is fully described by a :class:`TrainConfig`. A recipe (:mod:`training.engine.recipes`) sets the
defaults of a method; ``reid train --field value`` overrides single fields and ``--FAMILY.FIELD value`` a
field of the family's section (:mod:`training.engine.overrides` parses the strings by the field's type). The
family (``model_kind``, see :mod:`training.families`) owns its section: a typed dataclass, flat inside
(``cfg.section``, also ``cfg.siamese`` when the family is ``siamese``). The resolved config is written to
``RUN/config.json`` (the section under the family's name) and stored in every checkpoint, so a run can be
rebuilt from its checkpoint alone; files written before the sections existed (flat ``siamese_dropout``,
``mls_levels`` …) still load.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.contract.scoring import EMBEDDING_METRICS
from training.checks import at_least, one_of, positive, unit_interval

if TYPE_CHECKING:
    from training.families.registry import Family

SAMPLERS: tuple[str, ...] = ("pk", "pairs")
OPTIMIZERS: tuple[str, ...] = ("adam", "sgd", "rmsprop")
SCHEDULERS: tuple[str, ...] = ("step", "cosine")
DEFAULT_BACKBONE = "osnet_x0_25"
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
POOLINGS: tuple[str, ...] = ("avg", "gem", "max")
_NON_NEGATIVE: tuple[str, ...] = (
    "weight_decay", "momentum", "warmup_epochs", "id_weight", "triplet_weight", "center_weight",
    "verification_weight", "contrastive_weight", "stn_weight", "pad", "zoom", "width_shift", "color_jitter",
)


@dataclass
class TrainConfig:
    """Everything a training run needs. Field names are the ``reid train --<field>`` flags.

    Sizes are pixels, rates are per optimizer step, epochs count passes of the sampler. Loss weights of 0
    switch a loss off (its module is not even built).
    """

    # --- what to train on
    recipe: str = ""
    dataset: str = "market1501"
    root: str = "data/market1501"
    dataset_options: dict[str, Any] = field(default_factory=dict)
    # --- model: the family (training.families) and its section, then the backbone options
    model_kind: str = "embedding"
    section: Any = None  # the family's options (a dataclass; a dict is converted); None: its defaults
    backbone: str = DEFAULT_BACKBONE
    pretrained: str | None = None
    last_stride: int | None = None  # only for backbones that take it (ResNet); None keeps their default
    embedding_dim: int | None = None  # None: the embedding is the pooled backbone feature
    pooling: str = "avg"
    # --- input (the preprocessing contract the export step writes into the manifest)
    height: int = 256
    width: int = 128
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    # --- losses
    id_weight: float = 1.0
    triplet_weight: float = 1.0
    center_weight: float = 0.0
    verification_weight: float = 0.0
    contrastive_weight: float = 0.0
    stn_weight: float = 0.0  # L1 prior on the STN rotation / shear terms (pairwise)
    label_smoothing: float = 0.1
    triplet_margin: float | None = 0.3  # None: soft-margin triplet
    contrastive_margin: float = 1.0
    center_lr: float = 0.5
    # --- batches
    sampler: str = "pk"
    p: int = 16
    k: int = 4
    batch_size: int = 64  # pairs per batch (sampler "pairs") and the evaluation batch size
    pairs_per_epoch: int = 4096
    pair_ratio_start: float = 1.0  # positives per negative in the first epoch
    pair_ratio_growth: float = 1.0  # multiplied in every epoch ...
    pair_ratio_cap: float = 3.0  # ... up to this ratio
    # --- optimization
    optimizer: str = "adam"
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    momentum: float = 0.9
    warmup_epochs: float = 10.0
    warmup_factor: float = 0.1  # the warm-up starts at lr × warmup_factor
    scheduler: str = "step"
    milestones: tuple[int, ...] = (40, 70)
    gamma: float = 0.1
    epochs: int = 120
    amp: bool = True  # mixed precision, used on CUDA only
    grad_clip: float | None = None  # max global gradient norm; None: no clipping
    max_train_minutes: float | None = None  # stop training (then evaluate) after this wall-clock budget
    # --- augmentation (tensors after the shared decode/resize; see training.data.transforms)
    flip: float = 0.5  # horizontal flip probability
    pad: int = 10  # pad, then random crop back to size
    pad_mode: str = "constant"
    erasing: float = 0.5  # random erasing probability
    erasing_fill: str = "zero"
    zoom: float = 0.0
    width_shift: float = 0.0
    color_jitter: float = 0.0
    # --- evaluation and calibration
    eval_every: int = 10  # epochs between validations (0: only at the end)
    eval_metric: str = "cosine"
    flip_test: bool = False
    rerank: bool = False
    target_fmr: float = 1e-3  # the calibrated default threshold's false-match rate
    # --- runtime
    seed: int = 0
    device: str = "auto"
    num_workers: int = 2
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    cache_images: bool = False  # keep decoded training images in memory (≈ 12·H·W bytes each)
    output_dir: str = "runs/default"

    def __post_init__(self) -> None:
        self.mean = tuple(float(v) for v in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(v) for v in self.std)  # type: ignore[assignment]
        self.milestones = tuple(int(v) for v in self.milestones)
        family = self.family  # raises for an unknown model_kind, listing the valid ones
        self.section = _make_section(family, self.section)
        if family.network is not None:  # a family with its own network (MLS): the backbone field names it
            if self.backbone not in (family.network, DEFAULT_BACKBONE):
                raise ValueError(
                    f"model_kind {self.model_kind!r} builds its own network {family.network!r}; backbone "
                    f"{self.backbone!r} does not apply"
                )
            self.backbone = family.network
        self.validate()

    @property
    def family(self) -> Family:
        """The registered :class:`~training.families.Family` named by ``model_kind``."""
        from training.families import get_family

        return get_family(self.model_kind)

    def __getattr__(self, name: str) -> Any:
        # cfg.siamese → the section, when the run's family is "siamese" (only called for unknown attributes)
        if name != "model_kind" and name == self.__dict__.get("model_kind"):
            return self.__dict__["section"]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def validate(self) -> None:
        """Check every field against its allowed values (the family's section checks its own).

        Raises:
            ValueError: The first bad field, naming its value and the allowed range.
        """
        one_of("sampler", self.sampler, SAMPLERS)
        one_of("optimizer", self.optimizer, OPTIMIZERS)
        one_of("scheduler", self.scheduler, SCHEDULERS)
        one_of("device", self.device, DEVICES)
        one_of("pooling", self.pooling, POOLINGS)
        one_of("eval_metric", self.eval_metric, EMBEDDING_METRICS)
        for name in ("height", "width"):
            at_least(name, getattr(self, name), 8)
        for name in ("p", "epochs", "batch_size", "pairs_per_epoch"):
            at_least(name, getattr(self, name), 1)
        at_least("k", self.k, 2 if self.triplet_weight > 0 else 1)
        for name in ("num_workers", "threads", "eval_every", "seed", *_NON_NEGATIVE):
            at_least(name, getattr(self, name), 0)
        for name in ("lr", "center_lr", "gamma", "contrastive_margin", "warmup_factor", "pair_ratio_start"):
            positive(name, getattr(self, name))
        unit_interval("label_smoothing", self.label_smoothing)
        for name in ("flip", "erasing"):
            unit_interval(name, getattr(self, name), include_one=True)
        if self.warmup_factor > 1:
            raise ValueError(f"warmup_factor must be in (0, 1], got {self.warmup_factor}")
        if self.pair_ratio_growth <= 0 or self.pair_ratio_cap <= 0:
            raise ValueError(
                f"pair_ratio_growth and pair_ratio_cap must be > 0, got {self.pair_ratio_growth} and "
                f"{self.pair_ratio_cap}"
            )
        if self.triplet_margin is not None and self.triplet_margin <= 0:
            raise ValueError(f"triplet_margin must be > 0 or None (soft margin), got {self.triplet_margin}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if self.max_train_minutes is not None and self.max_train_minutes <= 0:
            raise ValueError(f"max_train_minutes must be > 0 or None, got {self.max_train_minutes}")
        if not 0.0 < self.target_fmr < 1.0:
            raise ValueError(f"target_fmr must be in (0, 1), got {self.target_fmr}")
        if list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"milestones must be increasing, got {list(self.milestones)}")
        self._validate_family()
        if not self.loss_weights():
            raise ValueError("at least one loss weight must be > 0")

    def _validate_family(self) -> None:
        """The losses and the sampler the run's family trains with, then the family's own checks."""
        from training.families import families_with_loss

        family = self.family
        for loss in self.loss_weights():
            if loss not in family.losses:
                allowed = " or ".join(repr(name) for name in families_with_loss(loss))
                raise ValueError(
                    f"{loss}_weight needs model_kind {allowed}, got model_kind {self.model_kind!r}"
                )
        if self.sampler != family.sampler:
            raise ValueError(
                f"model_kind {self.model_kind!r} needs sampler {family.sampler!r}, got {self.sampler!r}"
            )
        family.validate(self)

    def loss_weights(self) -> dict[str, float]:
        """The non-zero loss weights by loss name (``id``, ``triplet``, ``center``, ``verification``, …)."""
        from training.families import LOSS_NAMES

        weights = {name: float(getattr(self, f"{name}_weight")) for name in LOSS_NAMES}
        return {name: w for name, w in weights.items() if w > 0}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the common fields, then the family's section under the family's name."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "section"}
        out = json.loads(json.dumps(out))  # deep copy; tuples become lists
        if self.section is not None:
            out[self.model_kind] = dataclasses.asdict(self.section)
        return out

    def save(self, path: str | Path) -> Path:
        """Write the config as indented JSON to ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Rebuild a config from :meth:`to_dict` output (old flat family fields are mapped to the section).

        Raises:
            ValueError: An unknown field (the message lists the valid ones) or an invalid value.
        """
        kind = str(data.get("model_kind", cls.model_kind))
        values, section = _split_sections(data, kind=kind, strict=False)
        return cls(**values, section=section or None)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Read a ``config.json`` written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def _make_section(family: Family, given: Any) -> Any:
    """The family's section from None (defaults), a dict or an instance.

    Raises:
        ValueError: A section for a family without options, an unknown section field (the valid ones are
            listed) or a bad value (the section's own check).
    """
    kind = family.options_type
    if kind is None:
        if given:
            raise ValueError(f"model_kind {family.name!r} has no options, got {given!r}")
        return None
    if given is None:
        return kind()
    if isinstance(given, kind):
        return dataclasses.replace(given)  # type: ignore[type-var]  # runs the section's checks again
    if not isinstance(given, Mapping):
        raise ValueError(f"the {family.name} section must be a mapping or {kind.__name__}, got {given!r}")
    valid = [f.name for f in dataclasses.fields(kind)]
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ValueError(f"unknown {family.name} field(s) {unknown}; valid fields: {', '.join(valid)}")
    return kind(**dict(given))


def _split_sections(
    data: Mapping[str, Any], *, kind: str, strict: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Common fields and the run family's section fields of a flat or sectioned dict.

    Keys are common fields, a family name holding its section (``"siamese": {...}``), dotted section fields
    (``"siamese.dropout"``) or old flat names (``siamese_dropout``). ``strict``: fields of another family's
    section are an error (command-line overrides) rather than dropped (old config files held every
    family's defaults).

    Raises:
        ValueError: An unknown key (lists the valid ones), or with ``strict`` a field of another family.
    """
    from training.families import family_names, legacy_field

    common = set(field_names()) - {"section"}
    values = {k: v for k, v in data.items() if k in common}
    section: dict[str, Any] = {}
    for key, value in data.items():
        if key in common:
            continue
        owner = key.partition(".")[0]
        if key in family_names() and isinstance(value, Mapping):
            entries = {f"{key}.{k}": v for k, v in value.items()}
        elif "." in key and owner in family_names():
            entries = {key: value}
        elif (legacy := legacy_field(key)) is not None:
            entries = {f"{legacy[0]}.{legacy[1]}": value}
        else:
            from training.engine.overrides import all_field_names

            raise ValueError(f"unknown config field {key!r}; valid fields: {', '.join(all_field_names())}")
        for dotted, item in entries.items():
            owner, name = dotted.split(".", 1)
            if owner == kind:
                section[name] = item
            elif strict:
                raise ValueError(f"{dotted} is an option of model_kind {owner!r}, but the run's is {kind!r}")
    return values, section


def field_names() -> list[str]:
    """All :class:`TrainConfig` field names, in declaration order (``section`` included)."""
    return [f.name for f in dataclasses.fields(TrainConfig)]
