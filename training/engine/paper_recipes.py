"""The recipes of the five papers in ``papers/`` (:data:`PAPER_RECIPE_LIST`, registered by
:mod:`training.engine.recipes`).

Each recipe keeps the paper's architecture, loss, optimizer, batch, schedule and input size; where a paper is
vague, the choice made is written in the recipe's ``notes`` (``reid recipes -v`` prints them). Pretrained
ImageNet weights, which the papers start from, are never downloaded: pass a local file with ``--pretrained``.

* ``siamese-efficientnet-b0`` — paper ``000_…`` (EfficientNet Siamese + square-layer verification, CUHK01).
* ``fusion-resnet50`` / ``fusion-vgg16`` — paper ``004_…`` (identification + verification fusion, Market).
* ``mls-l2l3`` / ``mls-l2l3l4`` — paper ``002_…`` (multi-level similarity, CUHK03-detected).
* ``multidepth-vgg16`` — paper ``001_…`` (multi-depth smoothed features, CUHK01 485 / 486); after training,
  ``reid explore-filters --checkpoint RUN/checkpoint.pt`` selects the filters and stores them in the run.
"""

from __future__ import annotations

from typing import Any

from training.engine.recipe import Recipe

#: Every recipe of this module, in definition order.
PAPER_RECIPE_LIST: list[Recipe] = []
_add = PAPER_RECIPE_LIST.append

PAPER_000 = "000 EfficientNet Siamese, square-layer verification"
PAPER_001 = "001 multi-depth smoothed discriminative features"
PAPER_002 = "002 multi-level similarity (CSN)"
PAPER_004 = "004 identification + verification fusion"

#: No warm-up, a constant learning rate (a step schedule without milestones).
_CONSTANT_LR: dict[str, Any] = {"warmup_epochs": 0.0, "scheduler": "step", "milestones": ()}


def _cuhk01(protocol: str) -> dict[str, Any]:
    """The dataset fields of a CUHK01 recipe (``protocol``: ``871/100`` or ``485/486``)."""
    return {"dataset": "cuhk01", "root": "data/cuhk01", "dataset_options": {"protocol": protocol}}


def _sgd_steps(*milestones: int) -> dict[str, Any]:
    """SGD lr 1e-3, momentum 0.9, weight decay 5e-4, no warm-up, ÷10 at each milestone epoch."""
    return {
        "optimizer": "sgd", "lr": 1e-3, "momentum": 0.9, "weight_decay": 5e-4, "warmup_epochs": 0.0,
        "scheduler": "step", "milestones": milestones, "gamma": 0.1,
    }


_add(Recipe(
    name="siamese-efficientnet-b0",
    paper=PAPER_000,
    description="Siamese EfficientNet-B0 (B1–B5 via --backbone), (f1 − f2)² → dropout → 2-way softmax, "
                "160×80, RMSprop 1e-4, batch 48, 18 epochs, CUHK01 camera A → B",
    notes=(
        "Verification only (cross-entropy on same / different), as in the paper: id_weight 0. "
        "Pairs: balanced 1:1 (the paper balances its scarce positives by augmenting them; here every pair, "
        "positive or negative, is augmented independently on each side with flip p=0.5, zoom ±10 % and "
        "width shift ±10 % — the paper gives no magnitudes). Dropout 0.5 on the squared difference (rate not "
        "given). RMSprop without momentum or weight decay (Keras defaults), constant lr. 20,000 pairs per "
        "epoch (the paper does not say how many pairs an epoch holds). CUHK01 871/100 split: the dataset "
        "loader makes camera A the queries and camera B the single-shot gallery; `reid eval` reports the "
        "10-draw single-shot mean. ImageNet init in the paper: pass --pretrained FILE."
    ),
    defaults={
        **_cuhk01("871/100"),
        "model_kind": "siamese",
        "backbone": "efficientnet_b0",
        "height": 160,
        "width": 80,
        "siamese.dropout": 0.5,
        "id_weight": 0.0,
        "triplet_weight": 0.0,
        "verification_weight": 1.0,
        "sampler": "pairs",
        "batch_size": 48,
        "pairs_per_epoch": 20000,
        "pair_ratio_start": 1.0,
        "optimizer": "rmsprop",
        "momentum": 0.0,
        "lr": 1e-4,
        "weight_decay": 0.0,
        **_CONSTANT_LR,
        "epochs": 18,
        "flip": 0.5,
        "pad": 0,
        "erasing": 0.0,
        "zoom": 0.1,
        "width_shift": 0.1,
        "eval_every": 3,
        "output_dir": "runs/siamese-efficientnet-b0",
    },
))

#: Paper 004 for both backbones: 3·verification + identification, SGD 1e-3 → 1e-4 for the last 10 of 75.
_FUSION: dict[str, Any] = {
    "dataset": "market1501",
    "root": "data/market1501",
    "model_kind": "siamese",
    "height": 224,
    "width": 224,
    "siamese.dropout": 0.5,
    "siamese.relu": True,
    "id_weight": 1.0,
    "label_smoothing": 0.0,
    "triplet_weight": 0.0,
    "verification_weight": 3.0,
    "sampler": "pairs",
    "pairs_per_epoch": 12800,
    # Positives per negative: 1 → ÷1.01 per epoch, floor 1/3 (see notes).
    "pair_ratio_start": 1.0,
    "pair_ratio_growth": 1.0 / 1.01,
    "pair_ratio_cap": 1.0 / 3.0,
    **_sgd_steps(65),
    "epochs": 75,
    "flip": 0.5,
    "pad": 16,
    "erasing": 0.0,
    "eval_every": 5,
}
_FUSION_NOTES = (
    "Loss = 3 · verification + identification (no label smoothing); dropout 0.5 (rate not given) on the "
    "squared difference before the 2-way FC and before each branch's identity classifier; the ReLU after "
    "the square layer is kept as drawn (an identity on a square). Pair ratio: the paper multiplies 'the "
    "ratio between positive and negative pairs' by 1.01 per epoch up to 3:1 'for fear of over-fitting since "
    "the positive pairs are so limited' — we read it as the negatives growing: positives per negative start "
    "at 1 and are divided by 1.01 per epoch, floored at 1/3 (1 positive : 3 negatives). Growing the scarce "
    "positives would repeat them more and over-fit, the opposite of the stated aim. After 75 epochs the "
    f"ratio is 1 : {1.01 ** 74:.2f}, so the 3:1 cap is never reached in the paper's schedule. Input: the "
    "paper resizes to 256×256 and takes random 224×224 crops; the network (and the service, which has one "
    "resize and no crop) sees 224×224, and training takes the same random 32-pixel translations by padding "
    "16 px and cropping 224×224 back. 12,800 pairs per epoch (not given)."
)
_add(Recipe(
    name="fusion-resnet50",
    paper=PAPER_004,
    description="Siamese ResNet-50, 3·verification + identification, SGD 1e-3 (1e-4 last 10 of 75 epochs), "
                "batch 64, negatives growing ×1.01 per epoch, 224×224",
    notes=_FUSION_NOTES,
    defaults={**_FUSION, "backbone": "resnet50", "batch_size": 64, "output_dir": "runs/fusion-resnet50"},
))
_add(Recipe(
    name="fusion-vgg16",
    paper=PAPER_004,
    description="Siamese VGG-16, 3·verification + identification, SGD 1e-3 (1e-4 last 10 of 75 epochs), "
                "batch 48, negatives growing ×1.01 per epoch, 224×224",
    notes=_FUSION_NOTES + " VGG-16 here is the 13-conv feature extractor + GAP (512-d), without fc6 / fc7.",
    defaults={**_FUSION, "backbone": "vgg16", "batch_size": 48, "output_dir": "runs/fusion-vgg16"},
))

_MLS: dict[str, Any] = {
    "dataset": "cuhk03",
    "root": "data/cuhk03",
    "dataset_options": {"variant": "detected", "protocol": "classic"},
    "model_kind": "pairwise",
    "height": 160,
    "width": 60,
    "id_weight": 0.0,
    "triplet_weight": 0.0,
    "verification_weight": 1.0,
    "contrastive_weight": 1.0,
    "contrastive_margin": 1.0,
    "stn_weight": 0.01,
    "sampler": "pairs",
    "batch_size": 128,
    "pairs_per_epoch": 60000,
    "pair_ratio_start": 0.5,  # 2 negatives per positive
    "optimizer": "adam",
    "lr": 5e-4,
    "weight_decay": 5e-4,
    **_CONSTANT_LR,
    "epochs": 5,
    "flip": 0.5,
    "pad": 0,
    "erasing": 0.0,
    "eval_every": 0,
    "pairwise.shortlist": 100,
}
_MLS_NOTES = (
    "Loss = verification cross-entropy + contrastive (margin 1) on the 256-d ranking descriptors + 0.01 · "
    "the L1 prior on the STN rotation / shear terms (the paper names the prior, not its weight). Adam 5e-4, "
    "weight decay 5e-4, constant lr, batch 128 pairs, 2 negatives per positive, 5 epochs of 60,000 pairs "
    "(the epoch size is not given), flip p=0.5 as the only augmentation. Architecture choices (ranking net, "
    "L4 placement, stripes) and the FLOP convention (2 × MACs of one pair) are documented in "
    "training.models.mls and training.models.flops. Evaluation and serving: descriptor shortlist of 100 "
    "re-ranked by the comparator score p_same + 0.2 / (d + 1e-4). Smaller inputs need smaller parts: "
    "--pairwise.part_sizes l2=5,l3=3,l4=3 at 80×32."
)
_add(Recipe(
    name="mls-l2l3",
    paper=PAPER_002,
    description="Multi-level similarity net, CSNs at conv2 + conv3, cls + contrastive, Adam 5e-4, batch 128, "
                "160×60, 5 epochs (0.5 M params, 0.96 GFLOPs per pair)",
    notes=_MLS_NOTES,
    defaults={**_MLS, "pairwise.levels": ("l2", "l3"), "output_dir": "runs/mls-l2l3"},
))
_add(Recipe(
    name="mls-l2l3l4",
    paper=PAPER_002,
    description="Multi-level similarity net, CSNs at conv2 + conv3 + L4, cls + contrastive, Adam 5e-4, "
                "batch 128, 160×60, 5 epochs (0.8 M params, 1.31 GFLOPs per pair)",
    notes=_MLS_NOTES,
    defaults={**_MLS, "pairwise.levels": ("l2", "l3", "l4"), "output_dir": "runs/mls-l2l3l4"},
))

_add(Recipe(
    name="demo-mls-cpu",
    paper=PAPER_002,
    description="CPU demo: mls-l2l3 at 80×32 (parts 5 / 3) on the synthetic benchmark; ~22 min on 2 cores",
    notes=(
        "The mls-l2l3 recipe (losses, Adam 5e-4, batch 128, 2 negatives per positive) scaled to a CPU: "
        "80×32 inputs with parts 5 / 3 (the paper's 10 / 5 at 160×60), 24 epochs of 2,000 pairs and a "
        "20-minute budget (the schedule is constant, so the budget only cuts the last epoch short), one "
        "intra-op thread + one loader worker. Default thresholds at FMR 1e-2 (target_fmr): at 1e-3 this "
        "small CPU-trained comparator accepts under a third of same-person pairs (TPR 0.29 vs 0.66 at 1e-2). "
        "Builds the shipped models/demo-mls (make demo-models)."
    ),
    defaults={
        **_MLS,
        "pairwise.levels": ("l2", "l3"),
        "dataset": "market1501",
        "root": "data/synth-default",
        "dataset_options": {},
        "height": 80,
        "width": 32,
        "pairwise.part_sizes": {"l2": 5, "l3": 3},
        "pairs_per_epoch": 2000,
        "epochs": 24,
        "max_train_minutes": 20.0,
        "target_fmr": 1e-2,
        "num_workers": 1,
        "threads": 1,
        "cache_images": True,
        "output_dir": "runs/demo-mls-cpu",
    },
))

_add(Recipe(
    name="multidepth-vgg16",
    paper=PAPER_001,
    description="VGG-16 identity classifier (SGD 1e-3, augmentation), then `reid explore-filters` picks per "
                "layer the filter maximising d_d − d_s of 20×20-smoothed maps; Euclidean ranking",
    notes=(
        "Classifier: VGG-16 conv layers + GAP + linear over the training identities (the paper does not give "
        "its head), cross-entropy without smoothing, SGD lr 1e-3 momentum 0.9, weight decay 5e-4, 60 epochs "
        "(not given), step to 1e-4 at epoch 45, PK batches 16 × 4 (CUHK01 has 4 images per person), flip + "
        "pad-crop + random erasing as 'augmentation'. Input 160×64 (CUHK01 images are 160×60; 64 keeps a "
        "2-column pool5). Split: CUHK01 485 / 486 (the paper's '487 for training'). Descriptor: layers "
        "pool3, pool4, pool5, each selected map bilinearly resized to the input size and smoothed there "
        "with the l = 20 box filter (the paper smooths the maps as 'visualised', at frame size; at a deep "
        "layer's native size a 20×20 window would flatten the map to its mean), 1 filter per layer "
        "(`reid explore-filters --top-k K` for more), ranked by Euclidean distance. Before the selection "
        "exists (validation during training) the GAP feature is ranked instead."
    ),
    defaults={
        **_cuhk01("485/486"),
        "model_kind": "multidepth",
        "backbone": "vgg16",
        "height": 160,
        "width": 64,
        "multidepth.layers": ("pool3", "pool4", "pool5"),
        "multidepth.filter_size": 20,
        "multidepth.image_resolution": True,
        "id_weight": 1.0,
        "label_smoothing": 0.0,
        "triplet_weight": 0.0,
        "center_weight": 0.0,
        "sampler": "pk",
        "p": 16,
        "k": 4,
        **_sgd_steps(45),
        "epochs": 60,
        "flip": 0.5,
        "pad": 10,
        "erasing": 0.5,
        "eval_metric": "euclidean",
        "eval_every": 10,
        "output_dir": "runs/multidepth-vgg16",
    },
))

#: Recipes of the five papers, in the order of the README table.
PAPER_RECIPES: tuple[str, ...] = (
    "siamese-efficientnet-b0", "fusion-resnet50", "fusion-vgg16", "mls-l2l3", "mls-l2l3l4",
    "multidepth-vgg16",
)
