"""Upstream reference code, read from PyPI source distributions at test time (downloaded once, cached).

torchreid's package ``__init__`` imports torchvision, which does not work here, so its model files are loaded
one by one (``importlib.util.spec_from_file_location``); they import only torch. Nothing is copied into the
project: the sdist is fetched with pip into ``$REID_TEST_CACHE`` (default ``~/.cache/reid-tests``).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tarfile
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

from service.contract.preprocess import PreprocessSpec, preprocess_file, stack_batch

TORCHREID = "torchreid==0.2.5"
#: fast-reid's PyPI sdist; its model code loads here with termcolor and yacs installed (the dev extra).
FASTREID = "fastreid==1.4.0"


def cache_dir() -> Path:
    """Where downloaded sdists are kept between test runs (never inside the repository)."""
    return Path(os.environ.get("REID_TEST_CACHE", Path.home() / ".cache" / "reid-tests"))


def sdist_tree(requirement: str) -> Path:
    """The extracted source tree of ``name==version`` (downloaded with pip on first use)."""
    name, version = requirement.split("==")
    target = cache_dir() / f"{name}-{version}"
    if (target / "PKG-INFO").is_file():
        return target
    cache_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet",
             requirement, "-d", tmp],
            check=True, timeout=300,
        )
        archive = next(Path(tmp).glob(f"{name}-{version}.tar.gz"))
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        extracted = Path(tmp) / f"{name}-{version}"
        if not target.exists():
            extracted.rename(target)  # atomic: a concurrent run sees all or nothing
    return target


def torchreid_module(name: str, package: str = "models") -> ModuleType:
    """``torchreid/reid/<package>/<name>.py`` of the torchreid 0.2.5 sdist, loaded as a standalone module."""
    path = sdist_tree(TORCHREID) / "torchreid" / "reid" / package / f"{name}.py"
    key = f"_upstream_torchreid_{package}_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():  # rank.py warns that its Cython evaluation is not built
        warnings.simplefilter("ignore")
        spec.loader.exec_module(module)
    sys.modules[key] = module
    return module


@torch.no_grad()
def torchreid_features(model: nn.Module, paths: list[Path], spec: PreprocessSpec) -> np.ndarray:
    """Eval-mode outputs of a torchreid model on image files preprocessed as the service does."""
    return model.eval()(torch.from_numpy(stack_batch([preprocess_file(p, spec) for p in paths]))).numpy()


def torchreid_rank(
    query: np.ndarray, gallery: np.ndarray, ids: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
) -> tuple[float, float]:
    """(rank-1, mAP) as torchreid evaluates: ``compute_distance_matrix`` (euclidean) + ``eval_market1501``."""
    distance = torchreid_module("distance", "metrics")
    rank = torchreid_module("rank", "metrics")
    distmat = distance.compute_distance_matrix(torch.from_numpy(query), torch.from_numpy(gallery)).numpy()
    q_pids, g_pids, q_cams, g_cams = ids
    cmc, mean_ap = rank.eval_market1501(distmat, q_pids, g_pids, q_cams, g_cams, min(50, len(gallery)))
    return float(cmc[0]), float(mean_ap)


#: torchreid arch → the model file that defines it.
TORCHREID_FILES: dict[str, str] = {
    **{a: "osnet" for a in ("osnet_x1_0", "osnet_x0_75", "osnet_x0_5", "osnet_x0_25", "osnet_ibn_x1_0")},
    **{a: "osnet_ain" for a in ("osnet_ain_x1_0", "osnet_ain_x0_75", "osnet_ain_x0_5", "osnet_ain_x0_25")},
    "resnet50": "resnet",
    "resnet50_fc512": "resnet",
}


def torchreid_model(arch: str, num_classes: int = 10) -> nn.Module:
    """torchreid's own model for ``arch`` (no pretrained download)."""
    return getattr(torchreid_module(TORCHREID_FILES[arch]), arch)(num_classes=num_classes, pretrained=False)


def fastreid_model(config: Path, num_classes: int = 10) -> nn.Module:
    """fast-reid's own ``Baseline`` built from a config file by its own ``get_cfg`` / ``build_model``."""
    root = str(sdist_tree(FASTREID))
    if root not in sys.path:
        sys.path.insert(0, root)
    from fastreid.config import get_cfg
    from fastreid.modeling.meta_arch import build_model

    cfg = get_cfg()
    cfg.merge_from_file(str(config))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.HEADS.NUM_CLASSES = num_classes
    return build_model(cfg)


@torch.no_grad()
def randomise(
    model: nn.Module, seed: int, images: torch.Tensor, forward: Callable[[torch.Tensor], Any] | None = None
) -> nn.Module:
    """Random weights and random BN / IN parameters, with BN running statistics at a trained model's scale.

    Running statistics that ignore the activations they normalise make a deep random network's outputs
    explode (nothing like a trained model); so they are first measured on ``images`` (preprocessed
    pedestrians, one train-mode pass of ``forward``, default the model) and then randomised around those
    values (mean shifted by N(0, 0.2 σ), variance scaled by U(0.5, 2)), so eval-mode BN is not the identity
    of the measured statistics.
    """
    g = torch.Generator().manual_seed(seed)

    def uniform(shape: torch.Size, lo: float, hi: float) -> torch.Tensor:
        return torch.rand(shape, generator=g) * (hi - lo) + lo

    norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.InstanceNorm2d)
    for m in model.modules():
        if isinstance(m, norms) and m.weight is not None:
            m.weight.copy_(uniform(m.weight.shape, 0.5, 1.5))
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
        elif isinstance(m, (nn.Conv2d, nn.Linear)):
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / m.weight[0].numel()) ** 0.5)
            if m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.05)
    batchnorms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    for m in batchnorms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train()
    (forward or model)(images)
    for m in batchnorms:
        std = m.running_var.sqrt()
        m.running_mean.add_(torch.randn(m.running_mean.shape, generator=g) * 0.2 * std)
        m.running_var.mul_(uniform(m.running_var.shape, 0.5, 2.0))
    return model.eval()


if __name__ == "__main__":
    # `make reference-sdists` (a step of `make test`): fetch the peers' sdists with the package installs,
    # so the tests themselves make no network call.
    for requirement in (TORCHREID, FASTREID):
        print(f"reference-sdists: {requirement} in {sdist_tree(requirement)}")
