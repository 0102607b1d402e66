"""Smoke tests of ``reid bench``: every benchmark runs end to end at tiny sizes and prints one JSON object
of the documented shape. No timing is asserted (the figures depend on the machine and its load)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from service.cli import main as reid


def bench(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    """Run ``reid bench ARGV`` and parse its stdout as exactly one JSON object."""
    assert reid(["bench", *argv]) == 0
    report = json.loads(capsys.readouterr().out)
    assert isinstance(report, dict)
    assert "load_average_1_5_15" in report
    return report


def test_embed_reports_torch_and_onnxruntime_per_batch(capsys: pytest.CaptureFixture[str]) -> None:
    report = bench(
        capsys,
        "embed",
        "--backbones",
        "osnet_x0_25",
        "--batch-sizes",
        "1,2",
        "--height",
        "32",
        "--width",
        "16",
        "--rounds",
        "1",
        "--warmup",
        "0",
        "--threads",
        "1",
        "--device",
        "cpu",
    )
    assert report["benchmark"] == "embed"
    (backbone,) = report["backbones"]
    assert backbone["backbone"] == "osnet_x0_25"
    keys = {(r["runtime"], r["precision"], r["batch_size"]) for r in backbone["results"]}
    assert keys == {(rt, "fp32", b) for rt in ("torch", "onnxruntime") for b in (1, 2)}
    assert all(r["images_per_s"] > 0 for r in backbone["results"])
    assert set(backbone["ort_over_torch"]) == {"fp32@1", "fp32@2"}
    assert backbone["ort_provider"] == "CPUExecutionProvider"
    assert report["target"]["ratios"] == {"osnet_x0_25": None}  # batch 32 was not run


def test_search_reports_every_index_and_the_softmax_check(capsys: pytest.CaptureFixture[str]) -> None:
    report = bench(
        capsys,
        "search",
        "--sizes",
        "500",
        "--dims",
        "16",
        "--queries",
        "5",
        "--nlist",
        "8",
        "--nprobe",
        "1,8",
        "--ef-search",
        "16",
        "--threads",
        "1",
        "--gpu",
        "off",
    )
    rows = report["results"]
    assert [r["index"] for r in rows] == ["flat", "ivf", "ivf", "hnsw"]
    assert rows[0]["recall_at_k"] == 1.0
    ivf_all = rows[2]
    assert ivf_all["nprobe"] == ivf_all["nlist"] == 8
    assert ivf_all["recall_at_k"] == 1.0  # every cell visited: exact
    for row in rows:
        assert {"p50_ms", "p99_ms", "qps_batch", "recall_at_k", "speedup_vs_flat_p50"} <= set(row)
    (softmax,) = report["softmax_exact"]
    assert softmax["recall_at_k_vs_brute_force"] == 1.0
    assert softmax["max_abs_prob_diff"] < 1e-4


def test_search_refuses_large_galleries_without_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert reid(["bench", "search", "--sizes", "1000000"]) == 2
    assert "--large" in capsys.readouterr().err


def test_eval_reports_both_runs_and_peak_memory(capsys: pytest.CaptureFixture[str]) -> None:
    report = bench(capsys, "eval", "--queries", "30", "--gallery", "120", "--dim", "16", "--identities", "10")
    assert report["benchmark"] == "eval"
    for run in ("plain", "rerank"):
        assert {"seconds", "rank1", "mAP", "peak_rss_mib"} <= set(report[run])
        assert 0.0 <= report[run]["mAP"] <= 1.0
    assert report["rerank"]["peak_rss_mib"] >= report["plain"]["peak_rss_mib"] > 0
    assert isinstance(report["target"]["met"], bool)


def test_http_against_a_live_server_with_the_tiny_model(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    report = bench(
        capsys,
        "http",
        "--models-dir",
        str(tmp_path),
        "--requests",
        "4",
        "--max-seconds",
        "5",
        "--bare-requests",
        "3",
        "--gallery-size",
        "50",
        "--concurrency",
        "2",
        "--endpoints",
        "search,verify",
        "--batching",
        "on",
        "--threads",
        "1",
    )
    assert report["model"] == "tiny-siamese@1"
    assert [b["endpoint"] for b in report["bare"]] == ["search", "verify"]
    assert [(r["endpoint"], r["batching"], r["concurrency"]) for r in report["http"]] == [
        ("search", "on", 2),
        ("verify", "on", 2),
    ]
    assert all(r["errors"] == 0 and r["requests"] == 4 for r in report["http"])
    assert report["server_ready"]["gallery_size"] == 50
    assert all(b["cpu_ms_per_request"] > 0 for b in report["bare"])
    assert [r["bare_cpu_ms_per_request"] for r in report["http"]] == [
        b["cpu_ms_per_request"] for b in report["bare"]
    ]
    target = report["targets"]
    assert target["search_c1_server_cpu_over_bare_cpu (target <= 1.2)"] is None  # concurrency 1 not run
    assert target["embeddings_c32_server_cpu_per_image_fall_on_vs_off (target >= 0.30)"] is None


def test_http_pipeline_load_with_the_tiny_model(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    report = bench(
        capsys,
        "http",
        "--pipeline",
        "--models-dir",
        str(tmp_path),
        "--max-seconds",
        "1",
        "--gallery-size",
        "20",
        "--threads",
        "1",
    )
    assert report["benchmark"] == "http-pipeline" and report["model"] == "tiny-siamese@1"
    pipeline = report["pipeline"]
    assert (pipeline["frame"], pipeline["boxes_per_frame"], pipeline["concurrency"]) == ([1280, 720], 6, 8)
    for load in ("frame_boxes", "separate_crops"):
        assert pipeline[load]["errors"] == 0 and pipeline[load]["requests"] > 0
    frames = pipeline["frame_boxes"]
    assert frames["boxes_per_s"] == pytest.approx(6 * frames["requests_per_s"], rel=0.01)
    assert pipeline["frame_boxes_over_separate_crops (target >= 2)"] > 0


def test_unknown_benchmark_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        reid(["bench", "nope"])
    assert exc.value.code == 2
