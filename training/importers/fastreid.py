"""fast-reid BoT / SBS checkpoints (He et al., JDAI-CV/fast-reid) as embedding models, with fast-reid's names.

A fast-reid ``Baseline`` is ``backbone`` (ResNet-50, optionally IBN-a and non-local blocks) → ``heads``
(``EmbeddingHead``: pooling → ``bottleneck`` = optional 1×1 reduction conv + BN neck; its eval-mode output is
the post-neck feature) — the checkpoint ``model_final.pth`` is ``{'model': state_dict, …}`` with
``backbone.*`` and ``heads.*`` keys. The classifier (``heads.weight``) is dropped. fast-reid normalises
0…255 pixels inside the model with ``MODEL.PIXEL_MEAN`` / ``PIXEL_STD``; the manifest's mean / std are those
divided by 255, which is the same arithmetic on the service's 0…1 pixels.

Supported config values (anything else is refused by name): ``MODEL.META_ARCHITECTURE`` Baseline,
``BACKBONE.NAME`` build_resnet_backbone, ``DEPTH`` 50x, ``NORM`` / ``HEADS.NORM`` BN, ``WITH_SE`` False,
``WITH_IBN`` / ``WITH_NL`` any, ``LAST_STRIDE`` 1 or 2, ``HEADS.NAME`` EmbeddingHead, ``POOL_LAYER``
GlobalAvgPool / FastGlobalAvgPool / GlobalMaxPool / GeneralizedMeanPooling / GeneralizedMeanPoolingP.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor, nn

from service.contract.manifest import ModelManifest
from training.importers.checkpoints import SourceError, first_mismatch, read_checkpoint, unwrap_state_dict
from training.importers.folder import ImportOptions, import_source, torch_graph_writer, write_imported_folder
from training.models.backbones.resnet import Bottleneck

#: fast-reid's defaults (fastreid/config/defaults.py) for the keys read here.
DEFAULTS: dict[str, Any] = {
    "MODEL.META_ARCHITECTURE": "Baseline",
    "MODEL.BACKBONE.NAME": "build_resnet_backbone",
    "MODEL.BACKBONE.DEPTH": "50x",
    "MODEL.BACKBONE.LAST_STRIDE": 1,
    "MODEL.BACKBONE.NORM": "BN",
    "MODEL.BACKBONE.WITH_IBN": False,
    "MODEL.BACKBONE.WITH_SE": False,
    "MODEL.BACKBONE.WITH_NL": False,
    "MODEL.HEADS.NAME": "EmbeddingHead",
    "MODEL.HEADS.NORM": "BN",
    "MODEL.HEADS.EMBEDDING_DIM": 0,
    "MODEL.HEADS.WITH_BNNECK": False,
    "MODEL.HEADS.POOL_LAYER": "GlobalAvgPool",
    "MODEL.PIXEL_MEAN": [0.485 * 255, 0.456 * 255, 0.406 * 255],
    "MODEL.PIXEL_STD": [0.229 * 255, 0.224 * 255, 0.225 * 255],
    "INPUT.SIZE_TEST": [256, 128],
}
_ALLOWED: dict[str, tuple[Any, ...]] = {
    "MODEL.META_ARCHITECTURE": ("Baseline",),
    "MODEL.BACKBONE.NAME": ("build_resnet_backbone",),
    "MODEL.BACKBONE.DEPTH": ("50x",),
    "MODEL.BACKBONE.LAST_STRIDE": (1, 2),
    "MODEL.BACKBONE.NORM": ("BN",),
    "MODEL.BACKBONE.WITH_SE": (False,),
    "MODEL.HEADS.NAME": ("EmbeddingHead",),
    "MODEL.HEADS.NORM": ("BN",),
    "MODEL.HEADS.POOL_LAYER": (
        "GlobalAvgPool",
        "FastGlobalAvgPool",
        "GlobalMaxPool",
        "GeneralizedMeanPooling",
        "GeneralizedMeanPoolingP",
    ),
}
#: Non-local blocks after the last 2 blocks of layer2 and the last 3 of layer3 (fast-reid, ResNet-50).
NON_LOCAL_BLOCKS: dict[str, int] = {"layer2": 2, "layer3": 3}
_DROPPED = ("heads.weight", "heads.cls_layer.", "pixel_mean", "pixel_std")
_GEM_P, _GEM_EPS = 3.0, 1e-6


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        out.update(_flatten(value, f"{name}.") if isinstance(value, dict) else {name: value})
    return out


def read_config(path: Path, _depth: int = 0) -> dict[str, Any]:
    """The flattened config (``MODEL.BACKBONE.WITH_IBN`` …), following ``_BASE_`` files, over the defaults.

    Raises:
        SourceError: Missing / invalid YAML, a ``_BASE_`` loop, or an unsupported value (named).
    """
    if not path.is_file():
        raise FileNotFoundError(f"fast-reid config not found: {path}")
    if _depth > 8:
        raise SourceError(f"{path}: _BASE_ chain deeper than 8 files (a loop?)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise SourceError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(raw, dict):
        raise SourceError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    base = raw.pop("_BASE_", None)
    values = read_config(path.parent / base, _depth + 1) if base else dict(DEFAULTS)
    values.update(_flatten(raw))
    if _depth == 0:
        for key, allowed in _ALLOWED.items():
            if values[key] not in allowed:
                raise SourceError(
                    f"{path}: {key} = {values[key]!r} is not supported (supported: {list(allowed)})"
                )
    return values


class NonLocal(nn.Module):
    """fast-reid's ``Non_local`` block: embedded-Gaussian-free (dot product / N) attention, residual ``W``.

    fast-reid sets ``inter_channels = reduc_ratio // reduc_ratio``, i.e. 1, and its checkpoints have that
    shape; so does this block.
    """

    def __init__(self, channels: int, inter_channels: int = 1) -> None:
        super().__init__()
        self.inter = inter_channels
        self.g = nn.Conv2d(channels, inter_channels, kernel_size=1)
        self.W = nn.Sequential(nn.Conv2d(inter_channels, channels, kernel_size=1), nn.BatchNorm2d(channels))
        self.theta = nn.Conv2d(channels, inter_channels, kernel_size=1)
        self.phi = nn.Conv2d(channels, inter_channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        g = self.g(x).flatten(2).transpose(1, 2)  # N × HW × C'
        theta = self.theta(x).flatten(2).transpose(1, 2)
        phi = self.phi(x).flatten(2)  # N × C' × HW
        affinity = theta @ phi
        y = (affinity / affinity.shape[-1]) @ g  # N × HW × C'
        y = y.transpose(1, 2).reshape(n, self.inter, *x.shape[2:])
        return self.W(y) + x


class FastreidResNet(nn.Module):
    """fast-reid's ResNet-50 (``backbone.*``).

    A 3×3/2 max-pool without padding (ceil mode) after the stem, IBN-a in layers 1-3 if asked, non-local
    blocks ``NL_2`` / ``NL_3`` after the last blocks of layers 2 / 3 if asked.
    """

    def __init__(self, *, last_stride: int, with_ibn: bool, with_nl: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
        in_channels = 64
        for index, (planes, blocks, stride) in enumerate(
            zip((64, 128, 256, 512), (3, 4, 6, 3), (1, 2, 2, last_stride), strict=True), start=1
        ):
            ibn = with_ibn and index < 4
            layer = [Bottleneck(in_channels, planes, stride=stride, ibn=ibn)]
            in_channels = planes * Bottleneck.expansion
            layer += [Bottleneck(in_channels, planes, ibn=ibn) for _ in range(blocks - 1)]
            setattr(self, f"layer{index}", nn.Sequential(*layer))
        self.non_local: dict[str, list[int]] = {}
        if with_nl:
            for name, count in NON_LOCAL_BLOCKS.items():
                stage = int(name[-1])
                channels = 64 * 2 ** (stage - 1) * Bottleneck.expansion
                setattr(self, f"NL_{stage}", nn.ModuleList(NonLocal(channels) for _ in range(count)))
                blocks = len(getattr(self, name))
                self.non_local[name] = list(range(blocks - count, blocks))
        self.feature_dim = in_channels

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in range(1, 5):
            name = f"layer{stage}"
            after = self.non_local.get(name, [])
            for i, block in enumerate(getattr(self, name)):
                x = block(x)
                if i in after:
                    x = getattr(self, f"NL_{stage}")[after.index(i)](x)
        return x


class GeneralizedMeanPooling(nn.Module):
    """GeM: ``(mean(clamp(x, eps)^p))^(1/p)``; ``learnable`` makes ``p`` a parameter (``pool_layer.p``)."""

    def __init__(self, *, learnable: bool) -> None:
        super().__init__()
        self.p: Tensor | float = nn.Parameter(torch.full((1,), _GEM_P)) if learnable else _GEM_P

    def forward(self, x: Tensor) -> Tensor:
        return x.clamp(min=_GEM_EPS).pow(self.p).mean(dim=(2, 3), keepdim=True).pow(1.0 / self.p)


class GlobalPool(nn.Module):
    """Global average or max pooling, keeping the 1×1 spatial dims (as fast-reid's head does)."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def forward(self, x: Tensor) -> Tensor:
        return x.amax(dim=(2, 3), keepdim=True) if self.mode == "max" else x.mean(dim=(2, 3), keepdim=True)


class FastreidHead(nn.Module):
    """fast-reid's ``EmbeddingHead`` at eval time (``heads.*``): ``pool_layer`` → ``bottleneck``."""

    def __init__(self, pool: str, in_dim: int, embedding_dim: int, bn_neck: bool) -> None:
        super().__init__()
        self.pool_layer: nn.Module = (
            GeneralizedMeanPooling(learnable=pool.endswith("P")) if pool.startswith("GeneralizedMean")
            else GlobalPool("max" if pool == "GlobalMaxPool" else "avg")
        )
        neck: list[nn.Module] = []
        if embedding_dim > 0:
            neck.append(nn.Conv2d(in_dim, embedding_dim, 1, bias=False))
            in_dim = embedding_dim
        if bn_neck:
            neck.append(nn.BatchNorm2d(in_dim))
        self.bottleneck = nn.Sequential(*neck)
        self.embedding_dim = in_dim

    def forward(self, feature_map: Tensor) -> Tensor:
        return self.bottleneck(self.pool_layer(feature_map))[..., 0, 0]


class FastreidModel(nn.Module):
    """``backbone`` → ``heads`` (pool → bottleneck) → post-neck embeddings N × D (fast-reid eval output)."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.backbone = FastreidResNet(
            last_stride=int(config["MODEL.BACKBONE.LAST_STRIDE"]),
            with_ibn=bool(config["MODEL.BACKBONE.WITH_IBN"]),
            with_nl=bool(config["MODEL.BACKBONE.WITH_NL"]),
        )
        self.heads = FastreidHead(
            str(config["MODEL.HEADS.POOL_LAYER"]),
            self.backbone.feature_dim,
            int(config["MODEL.HEADS.EMBEDDING_DIM"]),
            bool(config["MODEL.HEADS.WITH_BNNECK"]),
        )
        self.embedding_dim = self.heads.embedding_dim

    def forward(self, images: Tensor) -> Tensor:
        return self.heads(self.backbone(images))


def load_fastreid(config: dict[str, Any], weights: Path) -> FastreidModel:
    """Build the model the config describes and load a fast-reid checkpoint into it (every key checked)."""
    model = FastreidModel(config)
    given = unwrap_state_dict(read_checkpoint(weights), weights, keys=("model", "state_dict"))
    given = {k: v for k, v in given.items() if not k.startswith(_DROPPED)}
    problem = first_mismatch(model.state_dict(), given)
    if problem is not None:
        raise SourceError(f"{weights} does not match the model its config describes: {problem}")
    model.load_state_dict(given, strict=False)  # strictness checked above (num_batches_tracked optional)
    return model.eval()


def input_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """Height, width, mean and std (0…1 pixels) the checkpoint was evaluated with."""
    height, width = (int(v) for v in config["INPUT.SIZE_TEST"])
    mean = tuple(float(v) / 255.0 for v in config["MODEL.PIXEL_MEAN"])
    std = tuple(float(v) / 255.0 for v in config["MODEL.PIXEL_STD"])
    return {"height": height, "width": width, "mean": mean, "std": std}


def import_fastreid(config_path: Path, opts: ImportOptions) -> ModelManifest:
    """``reid models import --format fastreid``: config → model, load, export through the parity gate."""
    config = read_config(config_path)
    model = load_fastreid(config, opts.weights)
    parts = ["ResNet-50" + ("-IBN-a" if config["MODEL.BACKBONE.WITH_IBN"] else "")]
    if config["MODEL.BACKBONE.WITH_NL"]:
        parts.append("non-local")
    parts.append(str(config["MODEL.HEADS.POOL_LAYER"]))
    if config["MODEL.HEADS.WITH_BNNECK"]:
        parts.append("BN neck")
    description = (
        f"fast-reid {', '.join(parts)} ({model.embedding_dim}-d), imported from {opts.weights.name}, "
        f"{opts.height}×{opts.width}"
    )
    source = import_source("fastreid", opts.weights, config_path.name)
    return write_imported_folder(opts, source, description, torch_graph_writer(model))
