"""torchreid checkpoints (Zhou et al., deep-person-reid) as embedding models with torchreid's own numbers.

A torchreid image model is ``featuremaps`` → global average pool → ``fc`` (Linear → BatchNorm1d → ReLU, the
embedding it evaluates with; absent for ``resnet50``) → ``classifier`` (training only). Its eval-mode output,
and so our ``embedding.onnx``, is the ``fc`` output (or the pooled features without ``fc``). The backbones are
ours, written with torchreid's parameter names (:mod:`training.models.backbones`), so a torchreid state dict
loads key for key: ``fc.*`` into the embedding layer, ``classifier.*`` dropped, everything else into the
backbone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from service.contract.manifest import ModelManifest
from training.importers.checkpoints import SourceError, first_mismatch, read_checkpoint, unwrap_state_dict
from training.importers.folder import ImportOptions, import_source, torch_graph_writer, write_imported_folder
from training.models.backbones import build_backbone

#: torchreid's feature layer width (``fc``) for the archs that have one.
FC_DIM = 512


@dataclass(frozen=True)
class TorchreidArch:
    """How one torchreid arch is built here: our backbone (torchreid names) and its ``fc`` width."""

    backbone: str
    fc_dim: int | None = FC_DIM
    backbone_options: dict[str, Any] = field(default_factory=dict)


#: The torchreid archs ``reid models import --format torchreid`` accepts.
ARCHS: dict[str, TorchreidArch] = {
    **{
        name: TorchreidArch(name)
        for name in (
            "osnet_x1_0",
            "osnet_x0_75",
            "osnet_x0_5",
            "osnet_x0_25",
            "osnet_ibn_x1_0",
            "osnet_ain_x1_0",
            "osnet_ain_x0_75",
            "osnet_ain_x0_5",
            "osnet_ain_x0_25",
        )
    },
    "resnet50": TorchreidArch("resnet50", fc_dim=None, backbone_options={"last_stride": 2}),
    "resnet50_fc512": TorchreidArch("resnet50", backbone_options={"last_stride": 1}),
}
_DROPPED = ("classifier.",)


class TorchreidModel(nn.Module):
    """Backbone → global average pool → torchreid's ``fc`` embedding layer (if the arch has one).

    ``forward`` returns what torchreid's model returns in eval mode: the embeddings N × ``embedding_dim``.
    """

    def __init__(self, arch: str) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown torchreid arch {arch!r}; supported: {sorted(ARCHS)}")
        spec = ARCHS[arch]
        self.arch = arch
        self.backbone = build_backbone(spec.backbone, **spec.backbone_options)
        in_dim = self.backbone.feature_dim
        self.fc: nn.Sequential | None = None
        if spec.fc_dim is not None:
            self.fc = nn.Sequential(nn.Linear(in_dim, spec.fc_dim), nn.BatchNorm1d(spec.fc_dim), nn.ReLU())
        self.embedding_dim: int = spec.fc_dim or in_dim

    def forward(self, images: Tensor) -> Tensor:
        pooled = self.backbone(images).mean(dim=(2, 3))
        return pooled if self.fc is None else self.fc(pooled)

    def torchreid_state_dict(self) -> dict[str, Tensor]:
        """This model's state dict under torchreid's names (no ``backbone.`` prefix)."""
        return {k.removeprefix("backbone."): v for k, v in self.state_dict().items()}

    def load_torchreid(self, state_dict: dict[str, Tensor], source: Path) -> None:
        """Load a torchreid state dict (``classifier.*`` dropped) with every key and shape checked.

        Raises:
            SourceError: The first key that is missing, unexpected or of another shape, and which arch the
                file does match, if any.
        """
        given = {k: v for k, v in state_dict.items() if not k.startswith(_DROPPED)}
        problem = first_mismatch(self.torchreid_state_dict(), given)
        if problem is not None:
            match = matching_arch(given)
            hint = f"; the file matches --arch {match}" if match else ""
            raise SourceError(f"{source} is not a torchreid {self.arch} state dict: {problem}{hint}")
        mapped = {k if k.startswith("fc.") else f"backbone.{k}": v for k, v in given.items()}
        self.load_state_dict(mapped, strict=False)  # strictness checked above (num_batches_tracked optional)


def matching_arch(given: dict[str, Tensor]) -> str | None:
    """The supported arch whose keys and shapes ``given`` matches exactly, if any."""
    for arch in ARCHS:
        if first_mismatch(TorchreidModel(arch).torchreid_state_dict(), given) is None:
            return arch
    return None


def load_torchreid(arch: str, weights: Path) -> TorchreidModel:
    """Build ``arch`` and load a torchreid checkpoint file into it; returned in eval mode.

    Accepts what torchreid saves: ``{'state_dict': …, 'epoch': …}`` or a bare state dict, with or without
    DataParallel ``module.`` prefixes. The file is read with ``weights_only=True``.
    """
    model = TorchreidModel(arch)
    state_dict = unwrap_state_dict(read_checkpoint(weights), weights)
    model.load_torchreid(state_dict, weights)
    return model.eval()



def import_torchreid(arch: str, opts: ImportOptions) -> ModelManifest:
    """``reid models import --format torchreid``: load, export through the parity gate, write the folder."""
    if arch not in ARCHS:
        raise ValueError(f"unknown torchreid arch {arch!r}; supported: {sorted(ARCHS)}")
    model = load_torchreid(arch, opts.weights)
    what = "pooled features" if model.fc is None else f"fc {model.embedding_dim}-d (Linear → BN → ReLU)"
    description = f"torchreid {arch} ({what}), imported from {opts.weights.name}, {opts.height}×{opts.width}"
    source = import_source("torchreid", opts.weights, arch)
    return write_imported_folder(opts, source, description, torch_graph_writer(model))
