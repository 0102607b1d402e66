"""``reid gallery copy``: embedded → Milvus → embedded keeps ids, labels, metadata, creation times and
embeddings, and the copies rank the same; the command line end to end on the tiny model."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest

from service.cli import main
from service.gallery.gallery import Gallery
from service.gallery.index import IndexConfig
from service.gallery.protocol import NewEntry
from service.inference.sessions import ModelRuntime
from service.state import gallery_spec


def test_copy_embedded_to_milvus_and_back(
    models_dir: Path,
    tmp_path: Path,
    milvus_uri: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = gallery_spec(ModelRuntime.load(models_dir / "tiny-siamese", device="cpu"))
    def embedded(folder: str) -> Gallery:
        return Gallery(tmp_path / folder, model_id=spec.model_id, dim=spec.dim, metrics=spec.metrics,
                       head=spec.head, config=IndexConfig())  # fmt: skip

    source = embedded("a")
    source.open()
    rng = np.random.default_rng(3)
    entries = [NewEntry(f"p{i % 4}", None if i % 3 else "cam", {"i": i}, None) for i in range(30)]
    vectors = rng.standard_normal((30, spec.dim)).astype(np.float32)
    ids = source.add(entries, vectors)
    source.delete(ids[5:7])  # ids with gaps
    before = source.list_entries(None, 0, 100)[0]
    source.close()
    monkeypatch.setenv("REID_MILVUS_URI", milvus_uri)
    monkeypatch.setenv("REID_MILVUS_COLLECTION_PREFIX", "copy_" + uuid.uuid4().hex[:8])
    base = ["gallery", "copy", "--models-dir", str(models_dir), "--model", "tiny-siamese"]
    assert main([*base, "--from", str(tmp_path / "a"), "--to", "milvus"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["copied"] == 28 and report["ok"] and report["searches_checked"] >= 20
    assert main([*base, "--from", "milvus", "--to", str(tmp_path / "b")]) == 0
    assert json.loads(capsys.readouterr().out)["ok"]
    assert main([*base, "--from", "milvus", "--to", str(tmp_path / "b")]) == 2  # not into a non-empty one
    back = embedded("b")
    back.open()
    after = back.list_entries(None, 0, 100)[0]
    assert [(e.id, e.person_id, e.camera_id, e.metadata, e.created) for e in after] == [
        (e.id, e.person_id, e.camera_id, e.metadata, e.created) for e in before
    ]
    np.testing.assert_array_equal(back.embedding(ids[0]), vectors[0])
    back.close()
