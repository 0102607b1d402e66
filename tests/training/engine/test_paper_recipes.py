"""The five papers' recipes: registry (shapes, finite outputs), sizes vs the papers, short training runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from service.cli import main
from tests.training.engine.conftest import tiny_market  # noqa: F401  (fixture)
from training.data.samplers import RatioSchedule
from training.engine.checkpoint import build_model, load_model, read_checkpoint
from training.engine.config import TrainConfig
from training.engine.paper_recipes import PAPER_RECIPES
from training.engine.recipes import get_recipe, resolve_config
from training.engine.sizes import recipe_size
from training.evaluation.evaluator import Batching
from training.evaluation.report import verification_summary
from training.families.pairwise import comparator_scores, extract_encodings, shortlist_distances
from training.models.mls import MLSNet, MLSOutput
from training.models.multidepth import MultiDepthVGG
from training.models.reid_model import SiameseModel

#: Small inputs per recipe (MLS: 32×16 with 4 / 3 / 3 parts, as in tests/training/models/test_mls.py).
TINY: dict[str, dict[str, object]] = {
    "siamese-efficientnet-b0": {"height": 64, "width": 32},
    "fusion-resnet50": {"height": 64, "width": 32},
    "fusion-vgg16": {"height": 64, "width": 32},
    "mls-l2l3": {"height": 32, "width": 16, "pairwise.part_sizes": {"l2": 4, "l3": 3, "l4": 3}},
    "mls-l2l3l4": {"height": 32, "width": 16, "pairwise.part_sizes": {"l2": 4, "l3": 3, "l4": 3}},
    "multidepth-vgg16": {
        "height": 64, "width": 32, "multidepth.filter_size": 3, "multidepth.image_resolution": False,
    },
}
RUN_FLAGS = ["--threads", "1", "--num_workers", "0", "--epochs", "1", "--max_train_minutes", "none",
             "--no-progress"]


def tiny_flags(recipe: str) -> list[str]:
    flags: list[str] = []
    for key, value in TINY[recipe].items():
        text = ",".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else str(value)
        flags += [f"--{key}", text]
    return flags


def test_every_paper_recipe_is_registered_with_notes() -> None:
    assert set(PAPER_RECIPES) == set(TINY)
    kinds = {name: get_recipe(name).config().model_kind for name in PAPER_RECIPES}
    assert kinds == {
        "siamese-efficientnet-b0": "siamese", "fusion-resnet50": "siamese", "fusion-vgg16": "siamese",
        "mls-l2l3": "pairwise", "mls-l2l3l4": "pairwise", "multidepth-vgg16": "multidepth",
    }
    for name in PAPER_RECIPES:
        assert len(get_recipe(name).notes) > 200, name  # the choices made where the paper is vague
    with pytest.raises(ValueError, match="valid recipes"):
        get_recipe("idverif-resnet50")  # renamed to fusion-resnet50


@pytest.mark.parametrize("recipe", PAPER_RECIPES)
def test_registry_shapes_and_finite_outputs(recipe: str) -> None:
    cfg = resolve_config(recipe, TINY[recipe])
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=5)
    a, b = torch.randn(3, 3, cfg.height, cfg.width), torch.randn(3, 3, cfg.height, cfg.width)
    if isinstance(model, SiameseModel):
        out = model(a, b)
        assert out.verif_logits.shape == (3, 2)
        assert (out.id_logits1 is None) == (cfg.id_weight == 0)
        tensors = [out.verif_logits, out.f1]
    elif isinstance(model, MLSNet):
        out = model(a, b)
        assert isinstance(out, MLSOutput) and out.logits.shape == (3, 2)
        assert torch.allclose(out.descriptor_a.norm(dim=1), torch.ones(3), atol=1e-5)
        tensors = [out.logits, out.descriptor_a, out.stn_penalty]
    else:
        assert isinstance(model, MultiDepthVGG)
        logits = model(a)
        assert logits.shape == (3, 5)
        tensors = [logits]
    assert all(torch.isfinite(t).all() for t in tensors)
    model.eval()
    with torch.no_grad():
        embedding = model.embed(a)  # type: ignore[operator]
    assert embedding.shape[0] == 3 and torch.isfinite(embedding).all()


def test_backbone_is_selectable_b0_to_b5() -> None:
    cfg = resolve_config("siamese-efficientnet-b0", {"backbone": "efficientnet_b3"})
    assert cfg.backbone == "efficientnet_b3"


@pytest.mark.parametrize("recipe", ["mls-l2l3", "mls-l2l3l4"])
def test_mls_sizes_within_10_percent_of_paper(recipe: str) -> None:
    size = recipe_size(recipe)
    assert size.paper_params is not None and size.paper_gflops is not None
    assert abs(size.params / size.paper_params - 1) < 0.10, size
    assert abs(size.gflops / size.paper_gflops - 1) < 0.10, size
    assert size.flops_unit == "pair" and size.input_size == (160, 60)


def test_efficientnet_b0_counts_like_paper() -> None:
    """Paper 000's "B0 with 5.3 million parameters" is the ImageNet B0 with its 1000-way top (sizes.py)."""
    size = recipe_size("siamese-efficientnet-b0", flops=False)
    assert size.paper_counted_params is not None and size.paper_params == 5.3e6
    assert abs(size.paper_counted_params / 5.3e6 - 1) < 0.02
    # The Siamese model drops the 1.28 M ImageNet top and adds a 1280 → 2 layer.
    assert size.params == size.paper_counted_params - (1280 * 1000 + 1000) + (1280 * 2 + 2)


def test_fusion_pair_ratio_grows_negatives() -> None:
    cfg = get_recipe("fusion-resnet50").config()
    schedule = RatioSchedule(start=cfg.pair_ratio_start, growth=cfg.pair_ratio_growth, cap=cfg.pair_ratio_cap)
    assert schedule.ratio(0) == 1.0
    assert schedule.ratio(1) == pytest.approx(1 / 1.01)
    assert schedule.ratio(74) == pytest.approx(1.01**-74)  # 1 : 2.09 after the paper's 75 epochs
    assert schedule.ratio(500) == pytest.approx(1 / 3)  # floored at 1 positive : 3 negatives
    settings = (cfg.milestones, cfg.epochs, cfg.lr, cfg.verification_weight, cfg.id_weight)
    assert settings == ((65,), 75, 1e-3, 3, 1)
    assert get_recipe("fusion-vgg16").config().batch_size == 48


def test_config_rejects_kind_mismatches() -> None:
    base = get_recipe("mls-l2l3").config().to_dict()
    with pytest.raises(ValueError, match="id_weight needs model_kind 'embedding' or 'siamese' or"):
        TrainConfig.from_dict({**base, "id_weight": 1.0})
    with pytest.raises(ValueError, match="builds its own network 'mls'; backbone 'vgg16' does not apply"):
        TrainConfig.from_dict({**base, "backbone": "vgg16"})
    with pytest.raises(ValueError, match=r"pairwise.levels must be one of"):
        TrainConfig.from_dict({**base, "pairwise": {"levels": ("l2",)}})
    with pytest.raises(ValueError, match=r"pairwise.levels must be one of"):  # the old flat name
        TrainConfig.from_dict({**base, "mls_levels": ("l2",)})
    md = get_recipe("multidepth-vgg16").config().to_dict()
    with pytest.raises(ValueError, match="stn_weight needs model_kind 'pairwise'"):
        TrainConfig.from_dict({**md, "stn_weight": 0.1})


@pytest.mark.parametrize("recipe", ["siamese-efficientnet-b0", "fusion-vgg16", "mls-l2l3l4"])
def test_pair_recipes_train_a_few_steps(recipe: str, tiny_market: Path, tmp_path: Path,  # noqa: F811
                                        capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / recipe
    argv = ["train", "--recipe", recipe, "--root", str(tiny_market), "--dataset", "market1501",
            "--dataset_options", "{}", "--output", str(run), *RUN_FLAGS, *tiny_flags(recipe),
            "--batch_size", "4", "--pairs_per_epoch", "12", "--eval_every", "0"]
    skip_eval = recipe != "mls-l2l3l4"  # one pair recipe runs the full evaluation (shortlist re-ranking)
    assert main(argv + (["--skip-eval"] if skip_eval else [])) == 0
    summary = json.loads(capsys.readouterr().out)
    ckpt = read_checkpoint(run / "checkpoint.pt")
    assert ckpt["epoch"] == 0 and all(torch.isfinite(v).all() for v in ckpt["model"].values()
                                      if v.is_floating_point())
    with (run / "log.csv").open() as f:
        header = f.readline().strip().split(",")
    if recipe.startswith("mls"):
        assert {"verification", "contrastive", "stn"} <= set(header)
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["metric"] == "pairwise" and metrics["shortlist"] == metrics["num_gallery"]
        assert 0.0 <= summary["mAP"] <= 1.0 and "descriptor" in summary
    else:
        assert "verification" in header


def test_multidepth_trains_explores_and_evaluates(tiny_market: Path, tmp_path: Path,  # noqa: F811
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "md"
    argv = ["train", "--recipe", "multidepth-vgg16", "--root", str(tiny_market), "--dataset", "market1501",
            "--dataset_options", "{}", "--output", str(run), *RUN_FLAGS, *tiny_flags("multidepth-vgg16"),
            "--p", "4", "--k", "2", "--skip-eval"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["explore-filters", "--checkpoint", str(run / "checkpoint.pt"), "--triplets", "6",
                 "--top-k", "2", "--batch-size", "3"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary["layers"]) == {"pool3", "pool4", "pool5"}
    for layer in summary["layers"].values():
        assert len(layer["selected"]) == 2 and layer["margin"][0] >= layer["margin"][1]
    model, _, ckpt = load_model(run / "checkpoint.pt")
    assert isinstance(model, MultiDepthVGG) and model.selected == ckpt["selected_filters"]
    assert json.loads((run / "filters.json").read_text())["layers"] == summary["layers"]
    assert main(["eval", "--checkpoint", str(run / "checkpoint.pt"), "--output", str(tmp_path / "ev")]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["metric"] == "euclidean" and 0.0 <= evaluated["mAP"] <= 1.0
    # 2 filters per layer, maps of a 64×32 input: pool3 8×4, pool4 4×2, pool5 2×1.
    assert metrics["embedding_dim"] == 2 * (32 + 8 + 2)


def test_shortlist_of_whole_gallery_is_exhaustive_comparator_ranking(tiny_market: Path) -> None:  # noqa: F811
    from training.data.datasets import build_dataset
    from training.engine.trainer import preprocess_spec

    cfg = resolve_config("mls-l2l3", TINY["mls-l2l3"])
    torch.manual_seed(0)
    model = build_model(cfg, 1).eval()
    split = build_dataset("market1501", tiny_market)
    spec = preprocess_spec(cfg)
    q_enc, qf = extract_encodings(model, split.query[:4], Batching(spec))
    g_enc, gf = extract_encodings(model, split.gallery, Batching(spec))
    descriptor = 1.0 - qf @ gf.T
    full = shortlist_distances(model, q_enc, g_enc, descriptor, shortlist=len(gf))
    rows = torch.arange(4).repeat_interleave(len(gf))
    cols = torch.arange(len(gf)).repeat(4)
    exhaustive = comparator_scores(model, q_enc[rows], g_enc[cols]).reshape(4, len(gf))
    np.testing.assert_allclose(full, -exhaustive, rtol=1e-6)
    short = shortlist_distances(model, q_enc, g_enc, descriptor, shortlist=3)
    assert (np.sort(short, axis=1)[:, :3] <= 0).all() and (np.sort(short, axis=1)[:, 3:] >= 10).all()


def test_verification_summary_known_values() -> None:
    same, diff = np.array([0.9, 0.8, 0.4]), np.array([0.1, 0.5, 0.2, 0.3])
    # 11 of the 12 (same, different) orderings are right: AUC = 11/12.
    summary = verification_summary(same, diff, higher_is_better=True)
    assert summary["roc_auc"] == pytest.approx(11 / 12)
    assert verification_summary(-same, -diff, higher_is_better=False)["roc_auc"] == pytest.approx(11 / 12)
    perfect = verification_summary(np.array([2.0, 3.0]), np.array([0.0, 1.0]), higher_is_better=True)
    assert perfect["roc_auc"] == pytest.approx(1.0) and perfect["accuracy_eer"] == pytest.approx(1.0)
