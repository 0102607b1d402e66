"""The model-folder contract: ``models/<name>/manifest.json`` plus the files it names.

This pydantic model is the only thing the training half (which writes it) and the service (which reads it)
share, together with :mod:`service.contract.preprocess`. It is validated when written and when read, and
``load`` checks every file's sha256. Errors name the folder, the file and the field.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from service.contract.kinds import SECTIONS, FileRole, ModelKindName
from service.contract.kinds import get as get_kind
from service.contract.parity import ParityReport
from service.contract.preprocess import PreprocessSpec
from service.contract.scoring import ServedMetric
from service.contract.scoring import get as get_metric

MANIFEST_FILE = "manifest.json"
#: 2: ``parity`` is a :class:`~service.contract.parity.ParityReport` (version 1's flat mapping still loads).
SCHEMA_VERSION = 2

ScoringName = ServedMetric
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ManifestError(ValueError):
    """A model folder or its manifest is invalid; the message names the folder, file and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class InputSpec(_Strict):
    """How images are preprocessed before the model (see :mod:`service.contract.preprocess`)."""

    height: int = Field(ge=8, le=2048, description="Input height in pixels.")
    width: int = Field(ge=8, le=2048, description="Input width in pixels.")
    mean: tuple[float, float, float] = Field(description="RGB mean subtracted after scaling to [0, 1].")
    std: tuple[float, float, float] = Field(description="RGB std divided after subtracting the mean.")
    color: Literal["RGB"] = "RGB"
    layout: Literal["NCHW"] = "NCHW"
    resize: Literal["bilinear"] = "bilinear"

    @field_validator("std")
    @classmethod
    def _positive_std(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(s <= 0 for s in v):
            raise ValueError(f"std values must be > 0, got {v}")
        return v

    def to_spec(self) -> PreprocessSpec:
        """The preprocessing spec this input describes."""
        return PreprocessSpec(height=self.height, width=self.width, mean=self.mean, std=self.std)


class FileEntry(_Strict):
    """One file of the model folder, with its checksum."""

    file: str = Field(description="File name inside the model folder.")
    sha256: str = Field(description="Hex sha256 of the file's bytes.")

    @field_validator("file")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if "/" in v or "\\" in v or v in ("", ".", "..") or v.startswith("."):
            raise ValueError(f"file must be a plain file name inside the model folder, got {v!r}")
        return v

    @field_validator("sha256")
    @classmethod
    def _hex(cls, v: str) -> str:
        if not _SHA256.match(v):
            raise ValueError(f"sha256 must be 64 lowercase hex digits, got {v!r}")
        return v


class Threshold(_Strict):
    """A decision threshold measured on held-out pairs, with the rates it gives there."""

    threshold: float = Field(
        description="Score threshold (same person when the score is on the 'same' side)."
    )
    tpr: float = Field(
        ge=0.0, le=1.0, description="True-match rate at this threshold on the calibration pairs."
    )
    fmr: float = Field(
        ge=0.0, le=1.0, description="False-match rate at this threshold on the calibration pairs."
    )
    target_fmr: float | None = Field(
        default=None, description="The false-match rate this threshold aimed at."
    )


class ScoringMode(_Strict):
    """A way of scoring a pair, with its calibrated thresholds."""

    higher_is_better: bool = Field(description="True when a larger score means 'same person'.")
    thresholds: dict[str, Threshold] = Field(
        default_factory=dict, description="Named thresholds, e.g. 'fmr_1e-03' and 'eer'."
    )
    default_threshold: str | None = Field(default=None, description="Key of the threshold used by default.")

    @model_validator(mode="after")
    def _default_exists(self) -> ScoringMode:
        if self.default_threshold is not None and self.default_threshold not in self.thresholds:
            raise ValueError(
                f"default_threshold {self.default_threshold!r} is not one of {sorted(self.thresholds)}"
            )
        return self

    @property
    def calibrated(self) -> bool:
        """True when the mode has a default threshold (else /verify needs a request threshold)."""
        return self.default_threshold is not None

    def default_value(self) -> float | None:
        """The default threshold's value, or None when uncalibrated."""
        if self.default_threshold is None:
            return None
        return self.thresholds[self.default_threshold].threshold


class VerificationSpec(_Strict):
    """Where the 'same person' probability is in ``verification_head.onnx``'s output."""

    same_index: int = Field(ge=0, le=1, description="Column of `probabilities` that means 'same person'.")
    exact_search: bool = Field(
        default=True, description="True when head_weights allow exact gallery ranking by the head."
    )


class PairwiseSpec(_Strict):
    """How a pairwise model (``encoder.onnx`` + ``comparator.onnx``) is run.

    ``encoder.onnx``: ``images`` N×3×H×W → ``encoding`` N×E (everything image-specific the comparator needs)
    and ``descriptor`` N×D (L2-normalized, what the FAISS shortlist searches; D = ``embedding_dim``).
    ``comparator.onnx``: ``encoding_a``, ``encoding_b`` N×E → ``score`` N (higher = same person) and
    ``probabilities`` N×2 (column ``same_index`` = same).
    """

    encoding_dim: int = Field(ge=1, description="Length E of one flattened encoding.")
    comparator_max_batch: int | None = Field(
        default=None, ge=1, description="Most pairs one comparator call takes (None: any); callers chunk."
    )
    same_index: int = Field(default=1, ge=0, le=1, description="Column of `probabilities` meaning 'same'.")
    shortlist: int = Field(default=100, ge=1, description="Default descriptor shortlist re-ranked per query.")


class ImportSource(_Strict):
    """The file an imported model was converted from (``reid models import``)."""

    format: Literal["torchreid", "fastreid", "onnx"] = Field(description="The source file's format.")
    arch: str | None = Field(default=None, description="Architecture name in that format (torchreid arch).")
    file: str = Field(description="The source file's name.")
    sha256: str = Field(description="Hex sha256 of the source file.")


class Provenance(_Strict):
    """Where the model came from."""

    recipe: str = Field(description="Training recipe name.")
    dataset: str = Field(description="Dataset the model was trained on.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Evaluation metrics (rank-1, mAP …).")
    notes: str = Field(default="", description="Free text: caveats, e.g. 'trained on synthetic data'.")
    synthetic: bool = Field(default=False, description="True when trained on synthetic pedestrians only.")
    source: ImportSource | None = Field(default=None, description="Imported models: the file it came from.")


class CalibrationRecord(_Strict):
    """One ``reid calibrate`` run: the data it used and the thresholds it replaced."""

    created: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    dataset: str = Field(description="Dataset name and root the thresholds were measured on.")
    target_fmr: float = Field(gt=0.0, lt=1.0, description="The false-match rate asked for.")
    images: int = Field(ge=0, description="Labelled images used.")
    identities: int = Field(ge=0, description="Different persons among them.")
    counts: dict[str, int] = Field(default_factory=dict, description="Same- / different-person pair counts.")
    previous_version: str = Field(description="The manifest version these thresholds replaced.")
    previous: dict[ScoringName, ScoringMode] = Field(
        default_factory=dict, description="The scoring modes (thresholds) before this calibration."
    )


class ModelManifest(_Strict):
    """The manifest of one exported model folder."""

    schema_version: int = Field(default=SCHEMA_VERSION, description="Manifest schema version.")
    name: str = Field(description="Model name (the folder name).")
    version: str = Field(default="1", description="Model version string.")
    kind: ModelKindName = Field(description="embedding | siamese | pairwise (service/contract/kinds.py).")
    description: str = Field(default="", description="What the model is.")
    input: InputSpec
    files: dict[FileRole, FileEntry] = Field(description="Role → file name and sha256.")
    embedding_dim: int = Field(ge=1, le=65536, description="Length of one embedding vector.")
    normalize_embeddings: bool = Field(
        default=False, description="True when embedding.onnx already L2-normalizes its output."
    )
    default_metric: ScoringName = Field(description="Scoring mode used when a request names none.")
    scoring: dict[ScoringName, ScoringMode] = Field(description="Supported scoring modes and thresholds.")
    verification: VerificationSpec | None = Field(default=None, description="Siamese models only.")
    pairwise: PairwiseSpec | None = Field(default=None, description="Pairwise models only.")
    parity: ParityReport = Field(
        default_factory=ParityReport,
        description="The export's onnxruntime-vs-torch parity gate: its rule and the measured numbers.",
    )
    provenance: Provenance
    calibrations: list[CalibrationRecord] = Field(
        default_factory=list, description="Re-calibrations on user data (reid calibrate), oldest first."
    )
    created: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    library_versions: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"name must match {_NAME.pattern}, got {v!r}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ModelManifest:
        kind = get_kind(self.kind)
        missing = [r for r in kind.roles if r not in self.files]
        if missing:
            raise ValueError(f"a {self.kind} model needs files for roles {missing}")
        if self.default_metric not in self.scoring:
            raise ValueError(
                f"default_metric {self.default_metric!r} is not in scoring {sorted(self.scoring)}"
            )
        for section, owner in SECTIONS.items():
            if (section == kind.section) != (getattr(self, section) is not None):
                raise ValueError(f"a {section} section is required for kind {owner!r} and only allowed there")
        for name, mode in self.scoring.items():
            metric = get_metric(name)
            if metric.needs_head and self.verification is None:
                raise ValueError(f"scoring mode {name!r} needs a verification section")
            if metric.needs_comparator and self.pairwise is None:
                raise ValueError(f"scoring mode {name!r} needs a pairwise section")
            if mode.higher_is_better != metric.higher_is_better:
                raise ValueError(f"scoring.{name}.higher_is_better must be {metric.higher_is_better}")
        return self

    @property
    def uncalibrated(self) -> list[str]:
        """Scoring modes without a default threshold (a fresh import): decisions need a request threshold."""
        return sorted(name for name, mode in self.scoring.items() if not mode.calibrated)

    @property
    def model_id(self) -> str:
        """``name@version``, the identifier the service reports."""
        return f"{self.name}@{self.version}"

    def file_path(self, folder: str | Path, role: str) -> Path:
        """Path of the file that plays ``role``."""
        if role not in self.files:
            raise ManifestError(
                f"{folder}: manifest has no file for role {role!r} (has {sorted(self.files)})"
            )
        return Path(folder) / self.files[role].file

    def save(self, folder: str | Path) -> Path:
        """Validate and write ``manifest.json`` into ``folder``; returns its path."""
        folder = Path(folder)
        validated = ModelManifest.model_validate(self.model_dump())  # re-validate after any mutation
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / MANIFEST_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(validated.model_dump_json(indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_entry(folder: str | Path, file_name: str) -> FileEntry:
    """A :class:`FileEntry` for an existing file in ``folder``."""
    return FileEntry(file=file_name, sha256=sha256_file(Path(folder) / file_name))


def load(folder: str | Path, verify_checksums: bool = True) -> ModelManifest:
    """Read, validate and checksum-verify a model folder's manifest.

    Raises:
        ManifestError: Missing folder / manifest / file, invalid JSON or field, or a checksum mismatch; the
            message names the folder and the offending file or field.
    """
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if not folder.is_dir():
        raise ManifestError(f"{folder}: model folder not found")
    if not path.is_file():
        raise ManifestError(f"{folder}: no {MANIFEST_FILE} in the model folder")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: not valid JSON: {exc}") from exc
    try:
        manifest = ModelManifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise ManifestError(
            f"{path}: field {field!r}: {first['msg']}"
            + (f" ({exc.error_count()} errors)" if exc.error_count() > 1 else "")
        ) from exc
    if verify_checksums:
        for role, entry in manifest.files.items():
            fpath = folder / entry.file
            if not fpath.is_file():
                raise ManifestError(
                    f"{folder}: file {entry.file} (role {role}) named in the manifest is missing"
                )
            actual = sha256_file(fpath)
            if actual != entry.sha256:
                raise ManifestError(
                    f"{folder}: checksum mismatch for {entry.file} (role {role}): manifest says "
                    f"{entry.sha256[:12]}…, file has {actual[:12]}…"
                )
    return manifest


def discover(models_dir: str | Path) -> list[Path]:
    """Model folders (those holding a manifest.json) directly under ``models_dir``, sorted by name."""
    root = Path(models_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / MANIFEST_FILE).is_file())
