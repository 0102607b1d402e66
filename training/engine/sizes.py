"""Model sizes per recipe: parameters and FLOPs at the recipe's input size, beside the paper's figures.

``reid recipes --sizes`` prints these. FLOPs follow :mod:`training.models.flops` (2 × multiply-accumulates of
convolutions, linear layers, BN and pooling; activations not counted) — the convention that reproduces the
MLS paper's Table 5 — for **one pair** for pair models (Siamese: both images through the backbone plus the
head; MLS: both encodings plus the comparison) and for **one image** otherwise.

Parameter counts include the identity classifier when the recipe trains one; its size depends on the number
of training identities, taken from the recipe's dataset under its standard protocol
(:data:`TRAIN_IDENTITIES`).

Where the papers publish a size:

* MLS (paper 002, Table 5): (L2, L3) 0.5 M / 0.96 GFLOPs, (L2, L3, L4) 0.8 M / 1.31 GFLOPs — the model itself.
* EfficientNet Siamese (paper 000): "B0 with 5.3 million parameters" is the published size of the ImageNet
  EfficientNet-B0 *including its 1000-way classifier* (1280 × 1000 + 1000 = 1.28 M); the Siamese network
  drops that top for the square layer and a 2-way linear layer, so ours has ≈ 4.0 M. :func:`recipe_size`
  reports the paper-comparable count (backbone + the 1000-way ImageNet top) as ``paper_counted_params``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from training.engine.checkpoint import build_model
from training.engine.recipes import get_recipe
from training.models.flops import count_flops, count_parameters

#: Training identities of each dataset's standard protocol (sizes the identity classifier).
TRAIN_IDENTITIES: dict[str, int] = {
    "market1501": 751,
    "dukemtmc": 702,
    "msmt17": 1041,
    "cuhk03": 1160,  # classic: 1,160 train / 100 validation / 100 test identities
    "viper": 316,
}
#: CUHK01 by protocol.
CUHK01_TRAIN_IDENTITIES: dict[str, int] = {"871/100": 871, "485/486": 485}
#: Published sizes: recipe → (parameters, GFLOPs or None).
PAPER_SIZES: dict[str, tuple[float, float | None]] = {
    "siamese-efficientnet-b0": (5.3e6, None),
    "mls-l2l3": (0.5e6, 0.96),
    "mls-l2l3l4": (0.8e6, 1.31),
}


@dataclass(frozen=True)
class RecipeSize:
    """Size of a recipe's model.

    Attributes:
        recipe: Recipe name.
        params: Parameters of the model as trained (identity classifier included when trained).
        gflops: GFLOPs (2 × MACs) of one pair (pair models) or one image, at ``input_size``.
        flops_unit: ``"pair"`` or ``"image"``.
        input_size: ``(height, width)``.
        num_classes: Training identities assumed for the identity classifier.
        paper_params: The paper's parameter count, if published.
        paper_gflops: The paper's GFLOPs, if published.
        paper_counted_params: Our count under the paper's counting (see the module docstring).
    """

    recipe: str
    params: int
    gflops: float
    flops_unit: str
    input_size: tuple[int, int]
    num_classes: int
    paper_params: float | None = None
    paper_gflops: float | None = None
    paper_counted_params: int | None = None


def train_identities(dataset: str, options: dict[str, object]) -> int:
    """Training identities of ``dataset`` under the protocol in ``options`` (751 when unknown)."""
    if dataset == "cuhk01":
        return CUHK01_TRAIN_IDENTITIES.get(str(options.get("protocol", "871/100")), 871)
    return TRAIN_IDENTITIES.get(dataset, 751)


def recipe_size(name: str, *, flops: bool = True) -> RecipeSize:
    """Build the recipe's model (random weights) and count its parameters and, optionally, FLOPs.

    Raises:
        ValueError: Unknown recipe (lists the valid ones).
    """
    cfg = get_recipe(name).config()
    cfg.pretrained = None
    num_classes = train_identities(cfg.dataset, dict(cfg.dataset_options))
    torch.manual_seed(0)
    model = build_model(cfg, num_classes).eval()
    family = cfg.family
    inputs = family.flops_inputs(torch.zeros(1, 3, cfg.height, cfg.width))
    gflops = count_flops(model, lambda: model(*inputs)).gflops if flops else float("nan")
    paper_params, paper_gflops = PAPER_SIZES.get(name, (None, None))
    return RecipeSize(
        recipe=name, params=count_parameters(model), gflops=gflops,
        flops_unit="pair" if family.pairs else "image",
        input_size=(cfg.height, cfg.width), num_classes=num_classes, paper_params=paper_params,
        paper_gflops=paper_gflops, paper_counted_params=family.paper_counted_params(cfg, model),
    )


def format_size(size: RecipeSize) -> str:
    """One line: params, GFLOPs and the paper's figures when published."""
    text = (
        f"{size.params / 1e6:7.2f} M params  {size.gflops:7.2f} GFLOPs/{size.flops_unit}"
        f"  at {size.input_size[0]}×{size.input_size[1]}"
    )
    paper = []
    if size.paper_params is not None:
        ours = size.paper_counted_params or size.params
        paper.append(f"{size.paper_params / 1e6:.1f} M (ours counted alike: {ours / 1e6:.2f} M)")
    if size.paper_gflops is not None:
        paper.append(f"{size.paper_gflops:.2f} GFLOPs")
    return text + (f"  [paper: {', '.join(paper)}]" if paper else "")
