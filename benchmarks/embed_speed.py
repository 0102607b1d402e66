"""Embedding throughput: torch eager vs onnxruntime, images/s per backbone, precision and batch size.

The model is what ``embedding.onnx`` holds: backbone → BN-neck head (eval mode), random weights (speed does
not depend on them). Each backbone is exported with :func:`training.export.onnx_io.export_onnx` and run
through the service's own :func:`service.inference.sessions.create_session` (so the options measured are the
ones served). Torch and onnxruntime are timed in alternating rounds, so a change of load on a shared machine
hits both; the figure is the median batch time. On CUDA, onnxruntime runs with IOBinding (input and output
stay on the GPU) and fp16 is measured too; on CPU, fp16 is skipped (the CPU provider has no fast fp16 conv).

    python benchmarks/embed_speed.py --backbones osnet_x0_25,resnet50 --batch-sizes 1,8,32 --threads 2
    python benchmarks/embed_speed.py --ort-sweep         # also time onnxruntime session options at batch 32
    python benchmarks/embed_speed.py --device cuda --backbones osnet_x1_0,resnet50 --batch-sizes 256
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # ``python benchmarks/embed_speed.py`` without installing
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks._common import int_list, load_average, machine_info, script_main, str_list  # noqa: E402
from service.contract import tensors  # noqa: E402

DESCRIPTION = "Embedding images/s, torch eager vs onnxruntime, per backbone / precision / batch size."
RATIO_BATCH = 32  # the batch size of the ORT ≥ 1.3 × torch target


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``embed`` arguments."""
    parser.add_argument("--backbones", type=str_list, default=["osnet_x0_25", "resnet50"])
    parser.add_argument("--batch-sizes", type=int_list, default=[1, 8, 32, 128])
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5, help="timed batches per runtime and batch size")
    parser.add_argument("--warmup", type=int, default=1, help="untimed batches per runtime and batch size")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads and onnxruntime intra-op threads"
    )
    parser.add_argument("--runtimes", type=str_list, default=["torch", "onnxruntime"])
    parser.add_argument(
        "--precisions", type=str_list, default=["fp32", "fp16"], help="fp16 is measured on CUDA only"
    )
    parser.add_argument("--channels-last", action="store_true", help="torch: channels_last memory format")
    parser.add_argument("--compile", action="store_true", help="torch: time the torch.compile(d) model")
    parser.add_argument(
        "--ort-sweep",
        action="store_true",
        help=f"also time onnxruntime session options (optimization level, spinning, execution mode) at "
        f"batch {RATIO_BATCH}",
    )
    parser.add_argument("--export-dir", type=Path, default=None, help="keep the exported .onnx files here")


def _validate(args: argparse.Namespace) -> None:
    for name in ("height", "width", "rounds"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0 or args.threads < 0:
        raise ValueError(f"--warmup and --threads must be >= 0, got {args.warmup} and {args.threads}")
    if not args.precisions or set(args.precisions) - {"fp32", "fp16"}:
        raise ValueError(f"--precisions takes fp32 and/or fp16, got {args.precisions}")
    unknown = set(args.runtimes) - {"torch", "onnxruntime"}
    if unknown:
        raise ValueError(f"unknown runtime(s) {sorted(unknown)}; valid: torch, onnxruntime")
    from training.models.backbones import list_backbones

    bad = [n for n in args.backbones if n not in list_backbones()]
    if bad:
        raise ValueError(f"unknown backbone {bad[0]!r}; valid backbones: {', '.join(list_backbones())}")


def build_model(name: str) -> Any:
    """backbone → BN-neck head, eval mode, wrapped as the exported graph sees it (images → embeddings)."""
    import torch

    from training.models.backbones import build_backbone
    from training.models.heads import BNNeckHead
    from training.models.reid_model import EmbeddingExport, EmbeddingModel

    torch.manual_seed(0)
    backbone = build_backbone(name)
    model = EmbeddingModel(backbone, BNNeckHead(backbone.feature_dim, num_classes=751))
    return EmbeddingExport(model).eval()


def _ort_session(path: Path, device: str, threads: int, variant: dict[str, Any] | None = None) -> Any:
    """The service's session; with ``variant``, a CPU session with those options instead."""
    import onnxruntime as ort

    from service.inference.sessions import create_session

    if variant is None:
        return create_session(path, device, intra_op_threads=threads)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, variant["opt_level"])
    options.execution_mode = getattr(ort.ExecutionMode, variant["execution_mode"])
    options.add_session_config_entry("session.intra_op.allow_spinning", variant["allow_spinning"])
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _ort_runner(session: Any, images: np.ndarray, cuda: bool) -> Callable[[], object]:
    """A no-argument call that embeds ``images``; on CUDA through IOBinding with device-resident buffers."""
    import onnxruntime as ort

    if not cuda:
        return lambda: session.run([tensors.EMBEDDINGS], {tensors.IMAGES: images})
    binding = session.io_binding()
    value = ort.OrtValue.ortvalue_from_numpy(images, "cuda", 0)
    binding.bind_ortvalue_input(tensors.IMAGES, value)
    binding.bind_output(tensors.EMBEDDINGS, "cuda", 0)

    def run() -> None:
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()

    return run


def _alternate(
    runners: dict[str, Callable[[], object]], rounds: int, warmup: int, sync: Callable[[], None]
) -> dict[str, float]:
    """Median seconds per call of each runner, timed in alternating rounds."""
    for fn in runners.values():
        for _ in range(warmup):
            fn()
    sync()
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(rounds):
        for key, fn in runners.items():
            t0 = time.perf_counter()
            fn()
            sync()
            times[key].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in times.items()}


SWEEP: tuple[dict[str, Any], ...] = tuple(
    {"opt_level": level, "execution_mode": mode, "allow_spinning": spin}
    for level, mode, spin in (
        ("ORT_DISABLE_ALL", "ORT_SEQUENTIAL", "0"),
        ("ORT_ENABLE_BASIC", "ORT_SEQUENTIAL", "0"),
        ("ORT_ENABLE_EXTENDED", "ORT_SEQUENTIAL", "0"),
        ("ORT_ENABLE_ALL", "ORT_SEQUENTIAL", "0"),
        ("ORT_ENABLE_ALL", "ORT_SEQUENTIAL", "1"),
        ("ORT_ENABLE_ALL", "ORT_PARALLEL", "0"),
    )
)


def measure_backbone(name: str, args: argparse.Namespace, device: Any, export_dir: Path) -> dict[str, Any]:
    """Every (runtime, precision, batch size) figure of one backbone, and the batch-32 ratios."""
    import onnxruntime as ort
    import torch

    from training.export.onnx_io import export_onnx

    cuda = device.type == "cuda"
    ort_device = "cuda" if cuda else "cpu"
    ort_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    precisions = [p for p in args.precisions if p == "fp32" or cuda]
    model = build_model(name)
    example = torch.randn(2, 3, args.height, args.width)
    record: dict[str, Any] = {
        "backbone": name,
        "embedding_dim": model.embedding_dim,
        "results": [],
        "notes": [],
    }
    sessions: dict[str, Any] = {}
    if "onnxruntime" in args.runtimes and (not cuda or ort_cuda):
        for precision in precisions:
            path = export_dir / f"{name}-{args.height}x{args.width}-{precision}.onnx"
            t0 = time.perf_counter()
            export_onnx(
                model,
                (example,),
                path,
                input_names=list(tensors.EMBEDDING_INPUTS),
                output_names=list(tensors.EMBEDDING_OUTPUTS),
                fp16=precision == "fp16",
            )
            record[f"export_seconds_{precision}"] = round(time.perf_counter() - t0, 2)
            sessions[precision] = _ort_session(path, ort_device, args.threads)
            record["ort_provider"] = sessions[precision].get_providers()[0]
    elif "onnxruntime" in args.runtimes:
        record["notes"].append("onnxruntime has no CUDAExecutionProvider here: onnxruntime not timed on CUDA")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    torch_models: dict[str, Any] = {}
    if "torch" in args.runtimes:
        for precision in precisions:
            m = build_model(name).to(device)
            m = m.half() if precision == "fp16" else m
            m = m.to(memory_format=torch.channels_last) if args.channels_last else m
            torch_models[precision] = torch.compile(m) if args.compile else m
    for batch in args.batch_sizes:
        for precision in precisions:
            images = (
                np.random.default_rng(batch)
                .standard_normal((batch, 3, args.height, args.width))
                .astype(np.float32)
            )
            runners: dict[str, Callable[[], object]] = {}
            if precision in torch_models:
                dtype = torch.float16 if precision == "fp16" else torch.float32
                tensor = torch.from_numpy(images).to(device=device, dtype=dtype)
                if args.channels_last:
                    tensor = tensor.contiguous(memory_format=torch.channels_last)
                torch_model = torch_models[precision]

                def torch_run(m: Any = torch_model, x: Any = tensor) -> object:
                    with torch.inference_mode():
                        return m(x)

                runners["torch"] = torch_run
            if precision in sessions:
                runners["onnxruntime"] = _ort_runner(sessions[precision], images, cuda)
            load = load_average()
            seconds = _alternate(runners, args.rounds, args.warmup, sync)
            for runtime, s in seconds.items():
                record["results"].append(
                    {
                        "runtime": runtime,
                        "precision": precision,
                        "batch_size": batch,
                        "images_per_s": round(batch / s, 2),
                        "ms_per_batch": round(1000 * s, 3),
                        "load_average_1m": load,
                    }
                )
    record["ort_over_torch"] = _ratios(record["results"])
    if args.ort_sweep and "fp32" in sessions and not cuda:
        record["ort_sweep"] = _sweep(
            export_dir / f"{name}-{args.height}x{args.width}-fp32.onnx", args, torch_models.get("fp32")
        )
    return record


def _ratios(results: list[dict[str, Any]]) -> dict[str, float]:
    """onnxruntime / torch images/s per precision and batch size (key ``fp32@32``)."""
    by_key = {(r["runtime"], r["precision"], r["batch_size"]): r["images_per_s"] for r in results}
    ratios = {}
    for (runtime, precision, batch), ips in by_key.items():
        torch_ips = by_key.get(("torch", precision, batch))
        if runtime == "onnxruntime" and torch_ips:
            ratios[f"{precision}@{batch}"] = round(ips / torch_ips, 3)
    return ratios


def _sweep(path: Path, args: argparse.Namespace, torch_model: Any) -> list[dict[str, Any]]:
    """onnxruntime CPU session options at batch 32, each timed alternately with torch eager."""
    import torch

    images = (
        np.random.default_rng(0).standard_normal((RATIO_BATCH, 3, args.height, args.width)).astype(np.float32)
    )
    tensor = torch.from_numpy(images)
    rows = []
    for variant in SWEEP:
        session = _ort_session(path, "cpu", args.threads, variant)
        runners: dict[str, Callable[[], object]] = {"onnxruntime": _ort_runner(session, images, cuda=False)}
        if torch_model is not None:

            def torch_run() -> object:
                with torch.inference_mode():
                    return torch_model(tensor)

            runners["torch"] = torch_run
        seconds = _alternate(runners, max(2, args.rounds // 2), args.warmup, lambda: None)
        row = {
            **variant,
            "ort_images_per_s": round(RATIO_BATCH / seconds["onnxruntime"], 2),
            "load_average_1m": load_average(),
        }
        if "torch" in seconds:
            row["torch_images_per_s"] = round(RATIO_BATCH / seconds["torch"], 2)
            row["ort_over_torch"] = round(seconds["torch"] / seconds["onnxruntime"], 3)
        rows.append(row)
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every backbone; return the report."""
    # torch's OpenMP workers busy-wait by default: on a shared, oversubscribed CPU that makes torch many
    # times slower (and onnxruntime, whose service sessions do not spin, look better than it is). Passive
    # waiting, as `reid train` / `reid eval` use, only takes effect before torch is first imported.
    torch_preloaded = "torch" in sys.modules
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    _validate(args)
    import onnxruntime as ort
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but torch.cuda.is_available() is False")
    device = torch.device(
        "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    report: dict[str, Any] = {
        "benchmark": "embed",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "ort_providers": ort.get_available_providers(),
        "threads": args.threads,
        "height": args.height,
        "width": args.width,
        "rounds": args.rounds,
        "channels_last": args.channels_last,
        "torch_compile": args.compile,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "torch_imported_before_run": torch_preloaded,
        **machine_info(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        export_dir = args.export_dir or Path(tmp)
        export_dir.mkdir(parents=True, exist_ok=True)
        report["backbones"] = [measure_backbone(n, args, device, export_dir) for n in args.backbones]
    report["target"] = {
        "name": f"onnxruntime >= 1.3 x torch eager images/s at batch {RATIO_BATCH} on CPU",
        "ratios": {
            b["backbone"]: b["ort_over_torch"].get(f"fp32@{RATIO_BATCH}") for b in report["backbones"]
        },
    }
    report["load_average_end"] = load_average()
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Run and print JSON."""
    return script_main(DESCRIPTION, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
