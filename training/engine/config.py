"""The flat training configuration: one dataclass, filled from a recipe, overridden on the command line.

A run is fully described by a :class:`TrainConfig`. A recipe (:mod:`training.engine.recipes`) sets the
defaults of a method; ``reid train --field value`` overrides single fields (:func:`apply_overrides` parses the
strings by the field's type); the resolved config is written to ``RUN/config.json`` and stored in every
checkpoint, so a run can be rebuilt from its checkpoint alone.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: embedding: backbone → BN neck (ID / triplet / center); siamese: shared backbone + square-layer verification
#: head (+ ID); pairwise: the multi-level similarity network (encoder + comparator, paper 002); multidepth: a
#: VGG identity classifier whose smoothed multi-depth maps become the descriptor (paper 001).
MODEL_KINDS: tuple[str, ...] = ("embedding", "siamese", "pairwise", "multidepth")
#: model kinds trained on image pairs (sampler "pairs"); the others use PK batches.
PAIR_KINDS: tuple[str, ...] = ("siamese", "pairwise")
MLS_LEVELS: tuple[tuple[str, ...], ...] = (("l2", "l3"), ("l2", "l3", "l4"))
SAMPLERS: tuple[str, ...] = ("pk", "pairs")
OPTIMIZERS: tuple[str, ...] = ("adam", "sgd", "rmsprop")
SCHEDULERS: tuple[str, ...] = ("step", "cosine")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
POOLINGS: tuple[str, ...] = ("avg", "gem", "max")
SIAMESE_EMBEDDINGS: tuple[str, ...] = ("pooled", "bnneck")
#: Metrics the evaluator accepts for ranking (see :mod:`training.evaluation.distances`).
EVAL_METRICS: tuple[str, ...] = ("cosine", "euclidean", "correlation", "cityblock", "minkowski")
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
    # --- model
    model_kind: str = "embedding"
    backbone: str = "osnet_x0_25"
    pretrained: str | None = None
    last_stride: int | None = None  # only for backbones that take it (ResNet); None keeps their default
    embedding_dim: int | None = None  # None: the embedding is the pooled backbone feature
    pooling: str = "avg"
    siamese_dropout: float = 0.5
    siamese_embedding: str = "pooled"
    siamese_relu: bool = False  # ReLU after the square layer (the fusion paper's layer list; an identity)
    # --- pairwise (MLS, model_kind "pairwise"; the backbone field must be "mls")
    mls_levels: tuple[str, ...] = ("l2", "l3")
    mls_part_sizes: dict[str, Any] = field(default_factory=dict)  # {} keeps 10 / 5 / 5 (l2 / l3 / l4)
    pairwise_shortlist: int = 100  # evaluation: gallery items re-ranked by the comparator per query
    # --- multidepth (model_kind "multidepth")
    multidepth_layers: tuple[str, ...] = ("pool3", "pool4", "pool5")
    filter_size: int = 20  # box filter side l
    multidepth_image_resolution: bool = False  # resize maps to height × width before smoothing (else native)
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
    stn_weight: float = 0.0  # L1 prior on the STN rotation / shear terms (pairwise only)
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
        self.mls_levels = tuple(str(v) for v in self.mls_levels)
        self.multidepth_layers = tuple(str(v) for v in self.multidepth_layers)
        self.validate()

    def validate(self) -> None:
        """Check every field against its allowed values.

        Raises:
            ValueError: The first bad field, naming its value and the allowed range.
        """
        _choice("model_kind", self.model_kind, MODEL_KINDS)
        _choice("sampler", self.sampler, SAMPLERS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("scheduler", self.scheduler, SCHEDULERS)
        _choice("device", self.device, DEVICES)
        _choice("pooling", self.pooling, POOLINGS)
        _choice("siamese_embedding", self.siamese_embedding, SIAMESE_EMBEDDINGS)
        _choice("eval_metric", self.eval_metric, EVAL_METRICS)
        for name in ("height", "width"):
            _at_least(name, getattr(self, name), 8)
        for name in ("p", "epochs", "batch_size", "pairs_per_epoch", "pairwise_shortlist", "filter_size"):
            _at_least(name, getattr(self, name), 1)
        _at_least("k", self.k, 2 if self.triplet_weight > 0 else 1)
        for name in ("num_workers", "threads", "eval_every", "seed"):
            _at_least(name, getattr(self, name), 0)
        for name in ("lr", "center_lr", "gamma", "contrastive_margin", "warmup_factor", "pair_ratio_start"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in _NON_NEGATIVE:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("label_smoothing", "siamese_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("flip", "erasing"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
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
        self._validate_kind()
        weights = (self.id_weight, self.triplet_weight, self.center_weight, self.verification_weight,
                   self.contrastive_weight, self.stn_weight)
        if not any(w > 0 for w in weights):
            raise ValueError("at least one loss weight must be > 0")

    def _validate_kind(self) -> None:
        """The losses, sampler and kind-specific fields each model kind allows."""
        kind = self.model_kind
        if kind not in PAIR_KINDS and (self.verification_weight > 0 or self.contrastive_weight > 0):
            raise ValueError(
                f"verification_weight and contrastive_weight need model_kind {' or '.join(PAIR_KINDS)}, "
                f"got model_kind {kind!r}"
            )
        if kind != "embedding" and (self.triplet_weight > 0 or self.center_weight > 0):
            raise ValueError("triplet_weight and center_weight need model_kind 'embedding' (PK batches)")
        if kind != "pairwise" and self.stn_weight > 0:
            raise ValueError(f"stn_weight needs model_kind 'pairwise', got model_kind {kind!r}")
        if kind == "pairwise":
            if self.id_weight > 0:
                raise ValueError("model_kind 'pairwise' (MLS) has no identity classifier: set id_weight 0")
            if self.backbone != "mls":
                raise ValueError(f"model_kind 'pairwise' needs backbone 'mls', got {self.backbone!r}")
            if self.mls_levels not in MLS_LEVELS:
                raise ValueError(f"mls_levels must be one of {MLS_LEVELS}, got {self.mls_levels}")
        if kind == "multidepth" and self.id_weight <= 0:
            raise ValueError("model_kind 'multidepth' trains an identity classifier: id_weight must be > 0")
        expected_sampler = "pairs" if kind in PAIR_KINDS else "pk"
        if self.sampler != expected_sampler:
            raise ValueError(f"model_kind {kind!r} needs sampler {expected_sampler!r}, got {self.sampler!r}")

    def loss_weights(self) -> dict[str, float]:
        """The non-zero loss weights by loss name (``id``, ``triplet``, ``center``, ``verification``, …)."""
        weights = {
            "id": self.id_weight,
            "triplet": self.triplet_weight,
            "center": self.center_weight,
            "verification": self.verification_weight,
            "contrastive": self.contrastive_weight,
            "stn": self.stn_weight,
        }
        return {name: w for name, w in weights.items() if w > 0}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> Path:
        """Write the config as indented JSON to ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Rebuild a config from :meth:`to_dict` output.

        Raises:
            ValueError: An unknown field (the message lists the valid ones) or an invalid value.
        """
        valid = field_names()
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}; valid fields: {', '.join(valid)}")
        return cls(**dict(data))

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Read a ``config.json`` written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _at_least(name: str, value: int, low: int) -> None:
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")


def field_names() -> list[str]:
    """All :class:`TrainConfig` field names, in declaration order."""
    return [f.name for f in dataclasses.fields(TrainConfig)]


def field_types() -> dict[str, Any]:
    """Field name → resolved type annotation."""
    return typing.get_type_hints(TrainConfig)


def parse_field(name: str, text: str) -> Any:
    """Parse a command-line string into the type of config field ``name``.

    Booleans accept true/false/1/0/yes/no; ``none`` gives None for optional fields; tuples take
    comma-separated values (``--milestones 40,70``); ``dataset_options`` takes ``key=value`` pairs separated
    by commas, or a JSON object.

    Raises:
        ValueError: Unknown field, or a string that does not parse as the field's type.
    """
    types_ = field_types()
    if name not in types_:
        raise ValueError(f"unknown config field {name!r}; valid fields: {', '.join(field_names())}")
    return _parse(name, types_[name], text)


def _parse(name: str, tp: Any, text: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if text.strip().lower() in ("none", "null", ""):
            return None
        return _parse(name, inner[0], text)
    try:
        if tp is bool:
            lowered = text.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if tp in (int, float, str):
            return tp(text)
        if origin is tuple:
            parts = [t for t in text.replace(" ", ",").split(",") if t]
            return tuple(_parse(name, args[0], t) for t in parts)
        if origin is dict:
            text = text.strip()
            if text.startswith("{"):
                return dict(json.loads(text))
            out: dict[str, Any] = {}
            for item in filter(None, text.split(",")):
                key, sep, value = item.partition("=")
                if not sep:
                    raise ValueError(item)
                out[key.strip()] = _literal(value.strip())
            return out
    except (ValueError, json.JSONDecodeError) as exc:
        raise ValueError(f"--{name}: cannot parse {text!r} as {_type_name(tp)}") from exc
    raise ValueError(f"--{name}: unsupported field type {tp}")


def _literal(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def apply_overrides(cfg: TrainConfig, overrides: Mapping[str, Any]) -> TrainConfig:
    """A new config with ``overrides`` (field → value, or field → string to parse) applied and validated.

    Raises:
        ValueError: Unknown field (lists the valid ones), unparsable string or invalid resulting config.
    """
    values = cfg.to_dict()
    for name, value in overrides.items():
        if name not in values:
            raise ValueError(f"unknown config field {name!r}; valid fields: {', '.join(field_names())}")
        if isinstance(value, str) and field_types()[name] is not str:
            value = parse_field(name, value)
        values[name] = value
    return TrainConfig.from_dict(values)
