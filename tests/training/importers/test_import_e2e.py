"""End to end: torchreid's OSNet x0.25 trained briefly on synthetic pedestrians with a plain torch loop, saved
as torchreid saves, imported, evaluated through the service runtime (against torchreid's own
``eval_market1501``), calibrated, and served; the calibrated threshold holds on people it never saw.

Slow (a couple of minutes of CPU training): ``make test-slow``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from service.cli import main
from service.config import Settings
from service.contract.manifest import load
from service.contract.preprocess import PreprocessSpec, preprocess_bytes, preprocess_file, stack_batch
from service.contract.scoring import pair_scores
from tests.service.conftest import running
from tests.training.importers.upstream import torchreid_features, torchreid_model, torchreid_rank
from training.data.datasets import build_dataset
from training.data.synthetic import SynthConfig, generate_market_dataset
from training.evaluation.recalibrate import labelled_records
from training.evaluation.served import embed_records, load_runtime
from training.importers.folder import IMAGENET_MEAN, IMAGENET_STD

pytestmark = [pytest.mark.slow, pytest.mark.anyio]
H, W = 64, 32
TARGET_FMR = 1e-2
EPOCHS = 25


def _ids(records: list) -> tuple[np.ndarray, np.ndarray]:
    return np.array([r.person_id for r in records]), np.array([r.camera_id for r in records])


def train_osnet(root: Path, spec: PreprocessSpec, seed: int = 0) -> tuple[torch.nn.Module, list[float]]:
    """torchreid's osnet_x0_25, softmax loss (label smoothing 0.1), Adam, random flips: a plain loop."""
    torch.manual_seed(seed)
    train = build_dataset("market1501", root).train
    images = torch.from_numpy(stack_batch([preprocess_file(r.path, spec) for r in train]))
    labels = torch.tensor([r.person_id for r in train])
    model = torchreid_model("osnet_x0_25", num_classes=int(labels.max()) + 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=5e-4)
    losses = []
    model.train()
    for _ in range(EPOCHS):
        order, total = torch.randperm(len(images)), 0.0
        for start in range(0, len(images), 32):
            index = order[start : start + 32]
            batch = images[index]
            flip = torch.rand(len(batch)) < 0.5
            batch[flip] = batch[flip].flip(-1)
            loss = F.cross_entropy(model(batch), labels[index], label_smoothing=0.1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss) * len(index)
        losses.append(total / len(images))
    return model.eval(), losses


async def test_trained_torchreid_osnet_imported_evaluated_calibrated_served(tmp_path: Path) -> None:
    benchmark, held_out = tmp_path / "synthetic", tmp_path / "held-out"
    generate_market_dataset(benchmark, SynthConfig(identities=60, train_identities=30, cameras=3,
                                                   images_per_camera=2, seed=11), workers=1)
    generate_market_dataset(held_out, SynthConfig(identities=61, train_identities=1, cameras=3,
                                                  images_per_camera=2, seed=12), workers=1)
    spec = PreprocessSpec(height=H, width=W, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    model, losses = train_osnet(benchmark, spec)
    assert losses[-1] < 0.6 * losses[0], losses
    weights = tmp_path / "osnet_x0_25_synthetic.pth.tar"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": EPOCHS,
                "rank1": 0.0, "optimizer": {"state": {}, "param_groups": [{"lr": 3e-3, "params": [0]}]}},
               weights)
    folder = tmp_path / "models" / "osnet"
    assert main(["models", "import", "--format", "torchreid", "--arch", "osnet_x0_25", "--weights",
                 str(weights), "--output", str(folder), "--height", str(H), "--width", str(W)]) == 0

    # reid eval --model (service runtime) vs torchreid's evaluation of torchreid's own features
    assert main(["eval", "--model", str(folder), "--root", str(benchmark), "--metric", "euclidean",
                 "--output", str(tmp_path / "report")]) == 0
    served = json.loads((tmp_path / "report" / "metrics.json").read_text())
    split = build_dataset("market1501", benchmark)
    qf, gf = (torchreid_features(model, [r.path for r in rs], spec) for rs in (split.query, split.gallery))
    (q_pids, q_cams), (g_pids, g_cams) = _ids(split.query), _ids(split.gallery)
    rank1, mean_ap = torchreid_rank(qf, gf, (q_pids, g_pids, q_cams, g_cams))
    print(f"e2e: reid eval --model rank-1 {served['rank1']:.4f} mAP {served['mAP']:.4f}; "
          f"torchreid eval_market1501 rank-1 {rank1:.4f} mAP {mean_ap:.4f}; "
          f"loss {losses[0]:.2f}→{losses[-1]:.2f}")
    assert abs(served["rank1"] - rank1) <= 1e-3 and abs(served["mAP"] - mean_ap) <= 1e-3
    assert rank1 > 0.2  # it learned: chance is ~1/30

    # reid calibrate on the benchmark's test people; the threshold's FMR on 60 people it never saw
    assert main(["calibrate", "--model", str(folder), "--root", str(benchmark), "--dataset", "market1501",
                 "--target-fmr", str(TARGET_FMR)]) == 0
    manifest = load(folder)
    threshold = manifest.scoring["cosine"].default_value()
    assert threshold is not None and manifest.version == "2"
    records = labelled_records(build_dataset("market1501", held_out))
    embeddings = embed_records(load_runtime(folder), records).embeddings
    pids = np.array([r.person_id for r in records])
    i, j = np.triu_indices(len(records), k=1)
    different = pids[i] != pids[j]
    scores = pair_scores("cosine", embeddings[i[different]], embeddings[j[different]])
    held_out_fmr = float(np.mean(scores >= threshold))
    print(f"e2e: cosine threshold {threshold:.4f} at FMR {TARGET_FMR:g} on the benchmark; held-out FMR "
          f"{held_out_fmr:.4f} over {different.sum()} different-person pairs")
    assert TARGET_FMR / 2 <= held_out_fmr <= 2 * TARGET_FMR

    # served: the same embeddings as torchreid's model, and /verify decides without a request threshold
    image = records[0].path.read_bytes()
    settings = Settings(models_dir=folder.parent, model="osnet", data_dir=tmp_path / "data", device="cpu",
                        max_wait_ms=2.0, intra_op_threads=1)  # type: ignore[call-arg]
    async with running(settings) as (_, client):
        assert (await client.get("/ready")).json()["calibration"] == "calibrated"
        r = await client.post("/embeddings", files=[("images", ("a.jpg", image, "image/jpeg"))])
        other = records[1].path.read_bytes()
        v = await client.post("/verify", files=[("image_a", ("a.jpg", image, "image/jpeg")),
                                                ("image_b", ("b.jpg", other, "image/jpeg"))])
    assert r.status_code == 200 and v.status_code == 200, (r.text, v.text)
    with torch.no_grad():
        expected = model(torch.from_numpy(preprocess_bytes(image, spec)[None])).numpy()[0]
    got = np.asarray(r.json()["embeddings"][0])
    assert float(got @ expected / (np.linalg.norm(got) * np.linalg.norm(expected))) >= 0.99999
    assert v.json()["same_person"] is not None and v.json()["threshold"] == pytest.approx(threshold)
