"""The manifest's ``parity`` section: the rule an export was gated by, and what it measured.

An exported graph must reproduce PyTorch on real images before the folder is written
(:mod:`training.export.parity` runs the gate). The rule is scale-aware, so it means the same for every model:
for each graph output and each checked batch size,

* ``max|Δ| / max|ref| ≤ max_rel_diff`` — the largest difference between onnxruntime and torch, relative to
  the largest magnitude of the torch (reference) output, and
* ``min row cosine(onnxruntime, torch) ≥ min_cosine`` — every row points where torch's row points.

Manifests written before this rule (a flat ``{"embedding_max_abs_diff": …}`` mapping) still load: their
numbers go to ``measured`` and ``rule`` is None.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: The rule in words, as stored in manifests and stated in the README ("Parity gate").
RULE_TEXT = (
    "for every graph output and batch size: max|onnxruntime - torch| / max|torch| <= max_rel_diff and, "
    "for every row, cosine(onnxruntime, torch) >= min_cosine"
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ParityRule(_Strict):
    """The tolerances an export was gated by."""

    precision: Literal["fp32", "fp16"] = Field(description="Precision of the exported weights.")
    max_rel_diff: float = Field(
        gt=0.0, description="Largest allowed max|onnxruntime − torch| / max|torch| per output and batch."
    )
    min_cosine: float = Field(
        ge=-1.0, le=1.0, description="Smallest allowed per-row cosine(onnxruntime, torch)."
    )
    batches: list[int] = Field(description="Batch sizes the gate ran (1 and an odd size).")
    text: str = Field(default=RULE_TEXT, description="The rule in words.")


class OutputParity(_Strict):
    """Worst numbers of one graph output over the checked batches."""

    max_abs_diff: float = Field(ge=0.0, description="max|onnxruntime − torch|.")
    max_abs_reference: float = Field(ge=0.0, description="max|torch|: the output's scale.")
    max_rel_diff: float = Field(ge=0.0, description="max_abs_diff / max_abs_reference (worst batch).")
    min_cosine: float | None = Field(
        ge=-1.0, le=1.0,
        description="Smallest per-row cosine(onnxruntime, torch); None when a row is one number (a score).",
    )


class ParityReport(_Strict):
    """What the export's parity gate checked: its rule, each output's numbers, and other export checks."""

    rule: ParityRule | None = Field(
        default=None, description="The gate's rule; None for models exported before the scale-aware gate."
    )
    outputs: dict[str, OutputParity] = Field(
        default_factory=dict, description="'<graph>_<output>' (or 'embedding') → measured numbers."
    )
    measured: dict[str, float] = Field(
        default_factory=dict,
        description="Other export checks and counts (e.g. head_weights_max_abs_diff, calibration pair "
        "counts); for older manifests, their flat parity numbers.",
    )

    @model_validator(mode="before")
    @classmethod
    def _legacy_flat_mapping(cls, data: Any) -> Any:
        """An older manifest's flat ``{name: number}`` parity mapping becomes ``measured``."""
        if isinstance(data, dict) and not ({"rule", "outputs", "measured"} & set(data)):
            return {"measured": data}
        return data

    def with_measured(self, values: Mapping[str, float]) -> ParityReport:
        """A copy with ``values`` added to ``measured``."""
        measured = {**self.measured, **{k: float(v) for k, v in values.items()}}
        return self.model_copy(update={"measured": measured})
