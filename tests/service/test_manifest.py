"""The model-folder contract: validation on write and read, checksums, error messages."""

from __future__ import annotations

import json

import pytest

from service.contract.manifest import (
    FileEntry,
    InputSpec,
    ManifestError,
    ModelManifest,
    Provenance,
    ScoringMode,
    Threshold,
    discover,
    file_entry,
    load,
)


def _manifest(folder, kind="embedding"):
    (folder / "embedding.onnx").write_bytes(b"fake onnx bytes for checksum tests")
    return ModelManifest(
        name="tiny",
        version="3",
        kind=kind,
        input=InputSpec(height=16, width=8, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)),
        files={"embedding": file_entry(folder, "embedding.onnx")},
        embedding_dim=4,
        default_metric="cosine",
        scoring={
            "cosine": ScoringMode(
                higher_is_better=True,
                thresholds={"fmr_1e-03": Threshold(threshold=0.7, tpr=0.9, fmr=0.001, target_fmr=1e-3)},
                default_threshold="fmr_1e-03",
            )
        },
        provenance=Provenance(recipe="demo", dataset="synthetic", synthetic=True),
    )


def test_round_trip(tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    m = _manifest(folder)
    m.save(folder)
    loaded = load(folder)
    assert loaded == m
    assert loaded.model_id == "tiny@3"
    assert loaded.scoring["cosine"].default_value() == 0.7
    assert loaded.input.to_spec().height == 16
    assert discover(tmp_path) == [folder]


def test_flipped_byte_is_reported_naming_the_file(tmp_path):
    _manifest(tmp_path).save(tmp_path)
    p = tmp_path / "embedding.onnx"
    data = bytearray(p.read_bytes())
    data[3] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=r"checksum mismatch for embedding\.onnx"):
        load(tmp_path)
    assert load(tmp_path, verify_checksums=False).name == "tiny"


def test_missing_file_and_folder(tmp_path):
    _manifest(tmp_path).save(tmp_path)
    (tmp_path / "embedding.onnx").unlink()
    with pytest.raises(ManifestError, match=r"embedding\.onnx .*missing"):
        load(tmp_path)
    with pytest.raises(ManifestError, match="model folder not found"):
        load(tmp_path / "nope")
    with pytest.raises(ManifestError, match=r"no manifest\.json"):
        load(tmp_path.parent)


def test_bad_field_names_the_field(tmp_path):
    _manifest(tmp_path).save(tmp_path)
    raw = json.loads((tmp_path / "manifest.json").read_text())
    raw["input"]["height"] = -5
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match=r"manifest\.json: field 'input\.height'"):
        load(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load(tmp_path)


def test_kind_requires_its_files_and_softmax_needs_verification(tmp_path):
    m = _manifest(tmp_path)
    with pytest.raises(ValueError, match="needs files for roles"):
        ModelManifest.model_validate({**m.model_dump(), "kind": "siamese"})
    scoring = {**m.model_dump()["scoring"], "softmax": {"higher_is_better": True}}
    with pytest.raises(ValueError, match="verification"):
        ModelManifest.model_validate({**m.model_dump(), "scoring": scoring})
    with pytest.raises(ValueError, match="higher_is_better"):
        ModelManifest.model_validate(
            {**m.model_dump(), "scoring": {"cosine": {"higher_is_better": False}}}
        )


def test_file_entry_rejects_paths_and_bad_hashes():
    with pytest.raises(ValueError, match="plain file name"):
        FileEntry(file="../escape.onnx", sha256="0" * 64)
    with pytest.raises(ValueError, match="64 lowercase hex"):
        FileEntry(file="a.onnx", sha256="xyz")


def test_save_revalidates_mutations(tmp_path):
    m = _manifest(tmp_path)
    m.default_metric = "euclidean"  # not in scoring
    with pytest.raises(ValueError, match="default_metric"):
        m.save(tmp_path)


def test_kind_registry_lists_valid_kinds_and_owns_the_sections(tmp_path):
    from service.contract import kinds

    with pytest.raises(ValueError, match="valid model kinds: embedding, siamese, pairwise"):
        kinds.get("triplet")
    assert kinds.SECTIONS == {"verification": "siamese", "pairwise": "pairwise"}
    assert [kinds.get(k).embed_role for k in kinds.KINDS] == ["embedding", "embedding", "encoder"]
    m = _manifest(tmp_path)
    with pytest.raises(ValueError, match="verification section is required for kind 'siamese'"):
        ModelManifest.model_validate({**m.model_dump(), "verification": {"same_index": 1}})
