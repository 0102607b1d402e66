"""The pairwise family: the multi-level similarity network (paper 002), encoder + comparator of encodings.

Trained on image pairs with the verification cross-entropy, a contrastive loss on the 256-d ranking
descriptors and an L1 prior on the STN rotation / shear terms; no identity classifier and no backbone (the
network is its own: ``cfg.backbone`` reads ``mls``).

Evaluated the way the service searches: for every query the gallery is shortlisted by the cosine distance of
the ranking descriptors (``shortlist`` items, 100 by default — the service's ``REID_SHORTLIST``), and the
shortlist is re-ranked by the comparator's score (Eq. 7 of paper 002), so a query costs ``shortlist``
comparator calls instead of one per gallery image. Gallery items outside the shortlist keep their descriptor
order behind the shortlisted ones. The encodings are held in float16 between the encoder and the comparator
(the service caches them in float16 too), which halves the memory of a gallery's encodings (≈ 0.2 MB per
image at 160×60).

Exported as ``encoder.onnx`` (``images`` → ``encoding`` N×E, ``descriptor`` N×256) + ``comparator.onnx``
(``encoding_a``, ``encoding_b`` → ``score``, ``probabilities``, ``distance``), the comparator with the
``"padded"`` correlation, so it takes at most :data:`COMPARATOR_MAX_BATCH` pairs per call; manifest kind
``pairwise`` scoring ``pairwise`` (calibrated on comparator outputs of held-out pairs; default) and ``cosine``
(the descriptor, used for the search shortlist).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from service.contract import tensors
from service.contract.manifest import PairwiseSpec, ScoringMode
from service.contract.parity import ParityReport
from service.contract.preprocess import PreprocessSpec
from service.contract.tensors import ENCODING_A, ENCODING_B, IMAGES
from training.checks import at_least
from training.engine.progress import track
from training.evaluation.distances import compute_distance
from training.evaluation.evaluator import Batching, EvalSettings, EvaluationResult, rank_metrics
from training.export.calibrate import calibrate_pairwise, calibrate_scoring, onnx_encodings
from training.export.graphs import WrittenGraphs, numpy_fn
from training.export.onnx_io import assert_eval_mode, export_onnx
from training.export.parity import check_parity, cpu_session, parity_rule
from training.families.embedding import held_out_arrays
from training.families.registry import Family, formerly, register_family
from training.families.siamese import pair_batch
from training.models.heads import SAME_INDEX
from training.models.mls import (
    LEVEL_NAMES,
    MLSComparatorExport,
    MLSEncoderExport,
    MLSNet,
)

if TYPE_CHECKING:
    from training.data.datasets import ImageRecord
    from training.engine.config import TrainConfig
    from training.export.exporter import ExportOptions

ENCODER_FILE = "encoder.onnx"
COMPARATOR_FILE = "comparator.onnx"
#: Pairs per ``comparator.onnx`` call ("padded" correlation: fastest in onnxruntime; callers chunk).
COMPARATOR_MAX_BATCH = 16
#: The level sets of paper 002 (Table 5).
MLS_LEVELS: tuple[tuple[str, ...], ...] = (("l2", "l3"), ("l2", "l3", "l4"))


@dataclass
class PairwiseOptions:
    """The pairwise section of a run config (``--pairwise.levels l2,l3,l4``).

    Attributes:
        levels: The CSN levels, one of :data:`MLS_LEVELS`.
        part_sizes: Stripe parts per level (``{}`` keeps 10 / 5 / 5 for l2 / l3 / l4).
        shortlist: Evaluation: gallery items re-ranked by the comparator per query.
    """

    levels: tuple[str, ...] = formerly("mls_levels", ("l2", "l3"))
    part_sizes: dict[str, Any] = formerly("mls_part_sizes", default_factory=dict)
    shortlist: int = formerly("pairwise_shortlist", 100)

    def __post_init__(self) -> None:
        self.levels = tuple(str(v) for v in self.levels)
        if self.levels not in MLS_LEVELS:
            raise ValueError(f"pairwise.levels must be one of {MLS_LEVELS}, got {self.levels}")
        unknown = sorted(set(self.part_sizes) - set(LEVEL_NAMES))
        if unknown:
            raise ValueError(
                f"pairwise.part_sizes: unknown levels {unknown}; valid: {', '.join(LEVEL_NAMES)}"
            )
        at_least("pairwise.shortlist", self.shortlist, 1)


@register_family
class PairwiseFamily(Family[PairwiseOptions]):
    """Multi-level similarity network: encoder + comparator of image pairs (paper 002).

    Scored by the comparator on a descriptor shortlist (the MLS network's own ranking).
    """

    name = "pairwise"
    pairs = True
    losses = ("verification", "contrastive", "stn")
    network = "mls"

    def architecture(self, cfg: TrainConfig) -> str:
        options = self.options(cfg)
        return f"{self.name}:{self.network}" + "".join(f"+{level}" for level in options.levels)

    def build(self, cfg: TrainConfig, num_classes: int) -> nn.Module:
        options = self.options(cfg)
        parts = {str(k): int(v) for k, v in options.part_sizes.items()} or None
        return MLSNet(levels=options.levels, input_size=(cfg.height, cfg.width), part_sizes=parts)

    def loss_terms(
        self, net: nn.Module, batch: list[Any], losses: dict[str, nn.Module], device: torch.device
    ) -> tuple[dict[str, Tensor], int]:
        images_a, images_b, same, _ = pair_batch(batch, device)
        out = net(images_a, images_b)  # MLSOutput: comparison logits, ranking descriptors, STN prior
        inputs = {
            "verification": (out.logits.float(), same),
            "contrastive": (out.descriptor_a.float(), out.descriptor_b.float(), same),
            "stn": (out.stn_penalty.float(),),
        }
        return {name: loss(*inputs[name]) for name, loss in losses.items()}, 2 * images_a.shape[0]

    def evaluate(
        self, model: nn.Module, query: list[ImageRecord], gallery: list[ImageRecord], settings: EvalSettings
    ) -> EvaluationResult:
        """Comparator ranking on the descriptor shortlist; the descriptor-only ranking goes to ``descriptor``.

        Raises:
            ValueError: ``rerank`` or ``flip`` (not supported for comparator ranking).
        """
        if settings.rerank or settings.flip:
            raise ValueError("rerank and flip are not supported for pairwise (comparator) models")
        options: PairwiseOptions | None = settings.options
        shortlist = settings.shortlist or (options.shortlist if options is not None else 100)
        q_enc, qf = extract_encodings(model, query, settings)
        g_enc, gf = extract_encodings(model, gallery, settings)
        descriptor_distmat = compute_distance(qf, gf, settings.metric, p=settings.p)
        distmat = shortlist_distances(
            model, q_enc, g_enc, descriptor_distmat, shortlist=shortlist, device=settings.device,
            batch_size=settings.batch_size,
        )
        result = EvaluationResult({}, distmat, qf, gf, query, gallery)
        metrics = rank_metrics(distmat, result.ids(), single_shot=settings.single_shot)
        metrics.update(
            metric="pairwise", shortlist=min(shortlist, len(gallery)), rerank=False, flip=False,
            num_query=len(query), num_gallery=len(gallery), embedding_dim=int(qf.shape[1]),
        )
        descriptor = rank_metrics(descriptor_distmat, result.ids(), single_shot=settings.single_shot)
        metrics["descriptor"] = {
            **{k: v for k, v in descriptor.items() if k != "cmc"}, "metric": settings.metric,
        }
        result.metrics = metrics
        return result

    def held_out_limit(self, opts: ExportOptions) -> int:
        """Every pair costs a comparator call: at most ``max_pairwise_images`` held-out images."""
        return min(opts.max_calibration_images, opts.max_pairwise_images)

    def export(
        self, model: nn.Module, folder: Path, images: np.ndarray, *, fp16: bool, opset: int
    ) -> WrittenGraphs:
        """``encoder.onnx`` + ``comparator.onnx``, each output through the parity gate at batch 1 and 7.

        Raises:
            ValueError: ``fp16`` (not supported for the comparator).
        """
        if fp16:
            raise ValueError("--fp16 is not supported for pairwise (MLS) models; export them in fp32")
        assert_eval_mode(model)
        folder.mkdir(parents=True, exist_ok=True)
        net: Any = model
        out = WrittenGraphs(parity=ParityReport(rule=parity_rule(fp16=False)))
        encoder = MLSEncoderExport(net).eval()
        export_onnx(
            encoder, (torch.from_numpy(images[:2]),), folder / ENCODER_FILE, input_names=[IMAGES],
            output_names=list(tensors.ENCODER_OUTPUTS), opset=opset,
        )
        for index, name in enumerate(tensors.ENCODER_OUTPUTS):
            out.parity.outputs[f"encoder_{name}"] = check_parity(
                folder / ENCODER_FILE, numpy_fn(encoder, index), {IMAGES: images}, fp16=False, output=index
            )
        session = cpu_session(folder / ENCODER_FILE)
        encoding, descriptor = session.run(list(tensors.ENCODER_OUTPUTS), {IMAGES: images})
        out.files["encoder"] = ENCODER_FILE
        out.embedding_dim, out.encoding_dim = int(descriptor.shape[1]), int(encoding.shape[1])

        # The training-time grouped correlation would freeze the batch into the graph; "padded" keeps it
        # dynamic up to COMPARATOR_MAX_BATCH pairs (same numbers, see DepthwiseCorrelation).
        net.set_correlation_method("padded", max_batch=COMPARATOR_MAX_BATCH)
        comparator = MLSComparatorExport(net).eval()
        example = torch.from_numpy(encoding[:2])
        export_onnx(
            comparator, (example, example.flip(0)), folder / COMPARATOR_FILE,
            input_names=list(tensors.COMPARATOR_INPUTS), output_names=list(tensors.COMPARATOR_OUTPUTS),
            opset=opset,
        )
        pairs = {ENCODING_A: encoding, ENCODING_B: np.roll(encoding, 1, axis=0)}
        for index, name in enumerate(tensors.COMPARATOR_OUTPUTS[:2]):  # score, probabilities
            out.parity.outputs[f"comparator_{name}"] = check_parity(
                folder / COMPARATOR_FILE, numpy_fn(comparator, index), pairs, fp16=False, output=index
            )
        out.files["comparator"] = COMPARATOR_FILE
        out.comparator_max_batch = COMPARATOR_MAX_BATCH
        return out

    def calibrate(
        self, written: WrittenGraphs, folder: Path, held_out: list[ImageRecord], spec: PreprocessSpec,
        opts: ExportOptions,
    ) -> tuple[dict[str, ScoringMode], dict[str, int]]:
        """``pairwise`` on comparator scores (pairs capped at ``max_pairwise_negatives``), ``cosine`` on the
        descriptors."""
        paths, person_ids, camera_ids = held_out_arrays(held_out)
        common: dict[str, Any] = {"target_fmr": opts.target_fmr, "seed": opts.seed}
        encodings, descriptors = onnx_encodings(folder / written.files["encoder"], paths, spec)
        scoring, counts = calibrate_scoring(
            descriptors, person_ids, camera_ids, ("cosine",), max_negatives=opts.max_negatives, **common
        )
        pairwise, pairwise_counts = calibrate_pairwise(
            encodings, person_ids, camera_ids, folder / written.files["comparator"],
            max_batch=written.comparator_max_batch, max_negatives=opts.max_pairwise_negatives, **common,
        )
        return {"pairwise": pairwise, "cosine": scoring["cosine"]}, {**counts, **pairwise_counts}

    def manifest_fields(self, cfg: TrainConfig, written: WrittenGraphs, fp16: bool) -> dict[str, Any]:
        options = self.options(cfg)
        levels = ", ".join(level.upper() for level in options.levels)
        description = (
            f"{cfg.recipe}: multi-level similarity network ({levels}), encoder + comparator, "
            f"{cfg.height}×{cfg.width}"
        )
        return {
            "kind": "pairwise", "description": description, "default_metric": "pairwise",
            "normalize_embeddings": True,  # the MLS descriptor is L2-normalised inside the graph
            "pairwise": PairwiseSpec(
                encoding_dim=written.encoding_dim or 1, comparator_max_batch=written.comparator_max_batch,
                same_index=SAME_INDEX, shortlist=options.shortlist,
            ),
        }


@torch.no_grad()
def extract_encodings(
    model: nn.Module, records: Sequence[ImageRecord], batching: Batching
) -> tuple[torch.Tensor, np.ndarray]:
    """Flat float16 encodings ``N × E`` (on CPU) and float32 descriptors ``N × D`` of a pairwise model."""
    net: Any = model
    encodings: list[torch.Tensor] = []
    descriptors: list[np.ndarray] = []
    for images in batching.batches(model, records, "encodings"):
        enc = net.encode(images)
        encodings.append(net.flatten_encoding(enc).half().cpu())
        descriptors.append(enc.descriptor.float().cpu().numpy())
    return torch.cat(encodings), np.concatenate(descriptors).astype(np.float32, copy=False)


@torch.no_grad()
def comparator_scores(
    model: nn.Module,
    encodings_a: torch.Tensor,
    encodings_b: torch.Tensor,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 128,
) -> np.ndarray:
    """Comparator scores (Eq. 7, higher = same) of the row pairs ``(encodings_a[i], encodings_b[i])``."""
    if encodings_a.shape != encodings_b.shape:
        raise ValueError(f"encoding batches differ: {tuple(encodings_a.shape)} vs {tuple(encodings_b.shape)}")
    net: Any = model
    was_training = model.training
    model.eval()
    out: list[np.ndarray] = []
    try:
        for start in range(0, len(encodings_a), batch_size):
            enc_a = net.unflatten_encoding(encodings_a[start : start + batch_size].float().to(device))
            enc_b = net.unflatten_encoding(encodings_b[start : start + batch_size].float().to(device))
            out.append(net.score_encodings(enc_a, enc_b).double().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0)


def shortlist_distances(
    model: nn.Module,
    query_encodings: torch.Tensor,
    gallery_encodings: torch.Tensor,
    descriptor_distmat: np.ndarray,
    *,
    shortlist: int,
    device: torch.device | str = "cpu",
    batch_size: int = 128,
) -> np.ndarray:
    """Q × G ranking distances: ``−score`` on each query's descriptor shortlist, ``10 + distance`` elsewhere.

    Comparator scores are positive (Eq. 7) and cosine distances lie in [0, 2], so every shortlisted item ranks
    before every other one; ``shortlist >= G`` scores the whole gallery (exhaustive comparator ranking).
    """
    at_least("shortlist", shortlist, 1)
    num_q, num_g = descriptor_distmat.shape
    k = min(shortlist, num_g)
    candidates = np.argsort(descriptor_distmat, axis=1, kind="stable")[:, :k]
    rows = np.repeat(np.arange(num_q), k)
    cols = candidates.ravel()
    scores = np.empty(len(rows), dtype=np.float64)
    starts = range(0, len(rows), batch_size)  # gather encodings per batch: Q·k of them would not fit
    for start in track(starts, "comparator", total=len(rows), size=lambda s: min(batch_size, len(rows) - s),
                       unit="pairs"):  # fmt: skip
        index = slice(start, start + batch_size)
        scores[index] = comparator_scores(
            model, query_encodings[torch.from_numpy(rows[index])],
            gallery_encodings[torch.from_numpy(cols[index])], device=device, batch_size=batch_size,
        )
    distmat = 10.0 + descriptor_distmat.astype(np.float64)
    distmat[rows, cols] = -scores
    return distmat


