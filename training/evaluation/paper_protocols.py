"""Named paper evaluation protocols: the dataset, split options and number of splits behind each paper's
table, with the published rows a user with the real data compares against.

``reid eval --protocol NAME --checkpoint 'runs/x/split{split}/checkpoint.pt'`` evaluates one checkpoint per
split (each trained on that split's training identities: ``reid train --protocol NAME --split K``) and
aggregates mean ± std over the splits; ``reid eval --list-protocols`` prints this registry.

The published rows are the papers' own tables (``papers/``; digest in ``shared/REFERENCE.md``), in
percent. Where a paper is ambiguous about its protocol, the row's ``note`` says how it was read. Rows name
the recipe(s) that reproduce them and the ranking to compare with: ``default`` is the evaluator's headline
ranking (the embedding distance, or the comparator for pairwise models), ``softmax`` the verification head
of a Siamese model (paper 000 retrieves by the network's same / different output).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from service.contract.registry import Registry
from training.checks import at_least

#: The metrics aggregated over splits (fractions in our reports, percent in the papers' rows).
METRIC_KEYS: tuple[str, ...] = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")
#: Rankings the evaluator reports: headline, Siamese verification head, pairwise descriptor-only.
RANKINGS: tuple[str, ...] = ("default", "softmax", "descriptor")


@dataclass(frozen=True)
class PaperRow:
    """One published result to compare with.

    Attributes:
        paper: Paper id, the prefix of its file in ``papers/`` (``"002"``).
        model: The row's name in the paper's table.
        recipes: ``reid train`` recipes that reproduce it.
        metrics: Published numbers in percent, keyed by :data:`METRIC_KEYS` names.
        source: Where in the paper (``"Table 2"``).
        ranking: Which of our rankings to compare with (one of :data:`RANKINGS`).
        note: How the paper's setting differs from, or was mapped onto, the protocol.
    """

    paper: str
    model: str
    recipes: tuple[str, ...]
    metrics: Mapping[str, float]
    source: str
    ranking: str = "default"
    note: str = ""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.metrics) - set(METRIC_KEYS))
        if unknown or not self.metrics:
            raise ValueError(f"paper row {self.model!r}: metrics must be among {METRIC_KEYS}, got {unknown}")
        bad = {k: v for k, v in self.metrics.items() if not 0.0 <= v <= 100.0}
        if bad:
            raise ValueError(f"paper row {self.model!r}: metrics are percentages in [0, 100], got {bad}")
        if self.ranking not in RANKINGS:
            raise ValueError(f"paper row {self.model!r}: ranking must be in {RANKINGS}, got {self.ranking!r}")
        object.__setattr__(self, "metrics", MappingProxyType(dict(self.metrics)))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready copy."""
        return {
            "paper": self.paper, "model": self.model, "recipes": list(self.recipes),
            "metrics_percent": dict(self.metrics), "ranking": self.ranking, "source": self.source,
            "note": self.note,
        }


@dataclass(frozen=True, kw_only=True)
class PaperProtocol:
    """A named evaluation protocol.

    Attributes:
        name: Registry key (``reid eval --protocol NAME``).
        dataset: Dataset loader name.
        options: Loader options, without the split index.
        num_splits: Number of train / test splits the protocol averages over.
        single_shot: One gallery image per person (the evaluator then reports the single-shot mean).
        measures: One line: what the protocol measures.
        layout: What ``--root`` must hold.
        rows: Published results to compare with (may be empty).
        split_option: The loader option that selects the split; None when the dataset has one fixed split.
        notes: Choices made where the papers are vague (the number of splits, mostly).
    """

    name: str
    dataset: str
    options: Mapping[str, Any] = field(default_factory=dict)
    num_splits: int = 1
    single_shot: bool = False
    measures: str
    layout: str
    rows: tuple[PaperRow, ...] = ()
    split_option: str | None = "split_index"
    notes: str = ""

    def __post_init__(self) -> None:
        at_least(f"protocol {self.name!r}: num_splits", self.num_splits, 1)
        if self.split_option is None and self.num_splits != 1:
            raise ValueError(f"protocol {self.name!r}: a dataset without split_option has exactly 1 split")
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    @property
    def default_root(self) -> str:
        """``--root`` of ``reid train --protocol`` when none is given: ``data/DATASET``."""
        return f"data/{self.dataset}"

    @property
    def recipes(self) -> tuple[str, ...]:
        """The recipes of the published rows, in row order, without repeats."""
        return tuple(dict.fromkeys(r for row in self.rows for r in row.recipes))

    def dataset_options(self, split_index: int) -> dict[str, Any]:
        """Loader options of split ``split_index``.

        Raises:
            ValueError: ``split_index`` outside ``[0, num_splits - 1]``.
        """
        if not 0 <= split_index < self.num_splits:
            raise ValueError(
                f"protocol {self.name!r}: split must be in [0, {self.num_splits - 1}], got {split_index}"
            )
        options = dict(self.options)
        if self.split_option is not None:
            options[self.split_option] = split_index
        return options

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready description (``protocol.json`` and ``--list-protocols``)."""
        return {
            "name": self.name, "dataset": self.dataset, "dataset_options": dict(self.options),
            "num_splits": self.num_splits, "single_shot": self.single_shot, "measures": self.measures,
            "layout": self.layout, "notes": self.notes, "rows": [row.as_dict() for row in self.rows],
        }


_PROTOCOLS: Registry[PaperProtocol] = Registry("protocol")


def register_protocol(protocol: PaperProtocol) -> PaperProtocol:
    """Add ``protocol`` to the registry.

    Raises:
        ValueError: The name is taken.
    """
    return _PROTOCOLS.add(protocol)


#: Registered protocol names, in registration order.
protocol_names = _PROTOCOLS.names
#: The protocol called ``name``; an unknown name raises ``ValueError`` listing the valid ones.
get_protocol = _PROTOCOLS.get


_STEPWISE_004 = (
    "paper 004 trains stepwise (ImageNet → large → general → small datasets), so its CUHK01 / CUHK03 / VIPeR "
    "models were fine-tuned from models trained on the larger sets"
)
_GARBLED_002 = (
    "read from the text of Table 2, whose last rows are garbled: numbers come in column triples "
    "JLML, Ours-(L2, L3), Ours-(L2, L3, L4) (checked on CUHK03, where the JLML values are JLML's own)"
)


def _row(
    paper: str, model: str, recipe: str, source: str, *, ranking: str = "default", note: str = "",
    **metrics: float,
) -> PaperRow:
    return PaperRow(paper, model, (recipe,), metrics, source, ranking=ranking, note=note)


def _cmc_rows(
    paper: str, source: str, note: str, rows: tuple[tuple[str, str, tuple[float, ...]], ...]
) -> tuple[PaperRow, ...]:
    """Rows of one table given as (model, recipe, (rank-1, rank-5, rank-10) as far as published)."""
    keys = ("rank1", "rank5", "rank10")
    return tuple(
        PaperRow(paper, model, (recipe,), dict(zip(keys, numbers, strict=False)), source, note=note)
        for model, recipe, numbers in rows
    )


def _mls(source: str, note: str, l2l3: tuple[float, ...], l2l3l4: tuple[float, ...]) -> tuple[PaperRow, ...]:
    """Paper 002's two multi-level similarity rows."""
    rows = (("Ours-(L2, L3)", "mls-l2l3", l2l3), ("Ours-(L2, L3, L4)", "mls-l2l3l4", l2l3l4))
    return _cmc_rows("002", source, note, rows)


def _fusion(source: str, resnet50: tuple[float, ...], vgg16: tuple[float, ...]) -> tuple[PaperRow, ...]:
    """Paper 004's two fusion rows, trained stepwise."""
    rows = (("Ours (ResNet-50)", "fusion-resnet50", resnet50), ("Ours (VGG16)", "fusion-vgg16", vgg16))
    return _cmc_rows("004", source, _STEPWISE_004, rows)


#: What the repeated-split, single-shot protocols of one dataset share.
_CUHK01: dict[str, Any] = {
    "dataset": "cuhk01", "num_splits": 10, "single_shot": True, "layout": "campus/NNNNIII.png",
}
_CUHK03_CLASSIC: dict[str, Any] = {"dataset": "cuhk03", "num_splits": 20, "single_shot": True}

register_protocol(PaperProtocol(
    name="market1501",
    dataset="market1501",
    split_option=None,
    measures="Market-1501 single query: 3,368 queries vs 15,913 gallery images, same-camera matches removed",
    layout="bounding_box_train/, bounding_box_test/, query/",
    rows=(
        _row("003", "BoT baseline (ResNet-50)", "bot-resnet50", "Table I", rank1=89.4, mAP=75.5),
        _row("003", "OSNet x0.25", "osnet-x0_25", "Table I", rank1=77.3, mAP=56.3),
        _row("003", "custom MobileNetV3", "mobilenetv3-large", "Table I", rank1=77.0, mAP=56.3),
        _row("004", "Ours (ResNet-50)", "fusion-resnet50", "Table II", rank1=78.03, mAP=58.34),
        _row("004", "Ours (VGG16)", "fusion-vgg16", "Table II", rank1=68.73, mAP=46.43),
    ),
))
register_protocol(PaperProtocol(
    name="cuhk01",
    **_CUHK01,
    options={"protocol": "871/100"},
    measures="CUHK01 871 / 100: 100 test ids, camera A queries vs one camera-B image per id (single shot)",
    notes=(
        "10 random splits: the papers do not give their number of repetitions; 10 is the usual practice "
        "and all the loader offers"
    ),
    rows=(
        _row("000", "EfficientNet-B0 Siamese", "siamese-efficientnet-b0", "Table 1", ranking="softmax",
             note="the paper does not state its split; its table compares with 100-test-id results",
             rank1=70.1, rank5=95.2, rank10=99.1, rank20=99.2),
        *_mls("Table 2", _GARBLED_002, (86.55, 97.70, 98.70), (88.20, 98.20, 99.35)),
        *_fusion("Table I, CUHK01 (p=100)", (74.10, 93.53, 98.12), (70.13, 88.42, 92.12)),
    ),
))
register_protocol(PaperProtocol(
    name="cuhk01-485",
    **_CUHK01,
    options={"protocol": "485/486"},
    measures="CUHK01 485 / 486: 486 test ids, camera A queries vs one camera-B image per id (single shot)",
    notes="10 random splits (the usual practice; paper 001 reports an 'average accuracy' without the count)",
    rows=(
        _row("001", "multi-depth smoothed features (VGG16)", "multidepth-vgg16", "Table 1",
             note="the paper trains on 487 ids and tests on the other 484; 485 / 486 is the nearest standard "
                  "split",
             rank1=55.2, rank10=89.01, rank20=94.0),
    ),
))
register_protocol(PaperProtocol(
    name="cuhk03-classic",
    **_CUHK03_CLASSIC,
    options={"variant": "detected", "protocol": "classic"},
    measures="CUHK03 detected, classic: the release's 20 splits of 100 test ids, view-1 queries vs one "
             "view-2 image per id (single shot)",
    layout="cuhk-03.mat (images extracted once to images_detected/)",
    rows=(
        *_mls("Table 2", "rank-5 / rank-10 " + _GARBLED_002, (79.45, 94.70, 97.90), (86.45, 97.50, 99.10)),
        *_fusion("Table I", (80.80, 95.03, 98.06), (71.56, 90.65, 94.70)),
    ),
))
register_protocol(PaperProtocol(
    name="cuhk03-classic-labeled",
    **_CUHK03_CLASSIC,
    options={"variant": "labeled", "protocol": "classic"},
    measures="CUHK03 labeled (hand-drawn boxes), classic: 20 splits of 100 test ids, single shot",
    layout="cuhk-03.mat (images extracted once to images_labeled/)",
    rows=(
        *_mls("Table 2", _GARBLED_002, (80.30, 97.10, 98.35), (87.50, 97.85, 99.45)),
    ),
))
register_protocol(PaperProtocol(
    name="viper",
    dataset="viper",
    num_splits=10,
    single_shot=True,
    measures="VIPeR 316 / 316: 316 test ids, cam_a queries vs their cam_b images (single shot)",
    layout="cam_a/, cam_b/",
    rows=(
        *_mls("Table 2", "rank-1 only; " + _GARBLED_002, (48.03,), (50.10,)),
        *_fusion("Table I", (51.30, 82.32, 90.24), (46.89, 76.49, 85.84)),
    ),
))


def compare_with_papers(
    protocol: PaperProtocol, aggregate: Mapping[str, Mapping[str, Mapping[str, float]]]
) -> list[dict[str, Any]]:
    """Every published row next to our mean ± std (in percent) on the same metrics and ranking.

    Args:
        protocol: The protocol.
        aggregate: ``{ranking: {metric: {"mean", "std"}}}`` in fractions, over the evaluated splits.

    Returns:
        One dict per row: the row's fields and ``ours_percent`` (None when our model has no such ranking,
        e.g. ``softmax`` for a model without a verification head).
    """
    rows = []
    for row in protocol.rows:
        ours = aggregate.get(row.ranking)
        rows.append({
            **row.as_dict(),
            "ours_percent": None if ours is None else {
                key: {"mean": round(100 * ours[key]["mean"], 2), "std": round(100 * ours[key]["std"], 2)}
                for key in row.metrics
            },
        })
    return rows


def format_protocols(protocols: Sequence[PaperProtocol] | None = None) -> str:
    """The registry as text: one block per protocol with its published rows."""
    lines: list[str] = []
    for protocol in protocols if protocols is not None else list(_PROTOCOLS.values()):
        options = ", ".join(f"{k}={v}" for k, v in protocol.options.items()) or "-"
        shot = "single shot" if protocol.single_shot else "multi shot"
        lines.append(
            f"{protocol.name}: dataset {protocol.dataset} ({options}), {protocol.num_splits} split(s), {shot}"
        )
        lines.append(f"    {protocol.measures}")
        lines.append(f"    --root holds: {protocol.layout}")
        if protocol.notes:
            lines.append(f"    notes: {protocol.notes}")
        if not protocol.rows:
            lines.append("    published rows: none")
        for row in protocol.rows:
            numbers = " ".join(f"{k} {v:.2f}" for k, v in row.metrics.items())
            ranking = "" if row.ranking == "default" else f", {row.ranking} ranking"
            recipes = ", ".join(row.recipes)
            lines.append(f"    paper {row.paper} {row.model} [{recipes}{ranking}]: {numbers} ({row.source})")
    return "\n".join(lines)

