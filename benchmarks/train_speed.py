"""Training throughput of each backbone: forward + backward images/s on random images, printed as JSON.

One step = forward of a batch ``B×3×H×W`` in training mode, a scalar loss on the (unpooled) feature map,
backward; no optimizer step, no data loading. Warm-up steps are excluded from the timing.

Usage::

    python benchmarks/train_speed.py --backbones osnet_x0_25,resnet50 --batch-size 32 --iters 10
    python benchmarks/train_speed.py --device cuda --amp          # all backbones, bf16 autocast on GPU
    python benchmarks/train_speed.py --params-only                # parameter counts only
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Forward + backward images/s per backbone, printed as JSON.")
    parser.add_argument("--backbones", default="all", help="comma-separated registry names, or 'all'")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--iters", type=int, default=10, help="timed steps per backbone")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per backbone")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--params-only", action="store_true", help="only count parameters, no timing")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only)")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch CPU threads (0: torch default; use 1 on a busy shared CPU)",
    )
    args = parser.parse_args(argv)
    for name in ("batch_size", "height", "width", "iters"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    return args


def measure(name: str, args: argparse.Namespace, device: Any) -> dict[str, Any]:
    """Time ``args.iters`` forward + backward steps of one backbone; return its JSON record."""
    import torch

    from training.models.backbones import build_backbone

    torch.manual_seed(0)
    backbone = build_backbone(name).to(device).train()
    images = torch.randn(args.batch_size, 3, args.height, args.width, device=device)
    use_amp = args.amp and device.type == "cuda"
    record: dict[str, Any] = {
        "backbone": name,
        "params": backbone.num_parameters(),
        "feature_dim": backbone.feature_dim,
    }
    if args.params_only:
        return record

    def step() -> None:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
            feature_map = backbone(images)
        loss = feature_map.float().square().mean()
        loss.backward()
        backbone.zero_grad(set_to_none=True)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(args.warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(args.iters):
        step()
    sync()
    seconds = time.perf_counter() - start
    record["images_per_s"] = round(args.batch_size * args.iters / seconds, 2)
    record["ms_per_step"] = round(1000 * seconds / args.iters, 2)
    if device.type == "cuda":
        record["peak_memory_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        torch.cuda.reset_peak_memory_stats(device)
    return record


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if str(REPO_ROOT) not in sys.path:  # allow ``python benchmarks/train_speed.py`` without installing
        sys.path.insert(0, str(REPO_ROOT))
    import torch

    from training.models.backbones import list_backbones

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but torch.cuda.is_available() is False")
    else:
        device = torch.device(args.device)
    names = list_backbones() if args.backbones == "all" else [n.strip() for n in args.backbones.split(",")]
    unknown = [n for n in names if n not in list_backbones()]
    if unknown:
        raise SystemExit(f"unknown backbone {unknown[0]!r}; valid backbones: {list_backbones()}")

    device_name = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.machine()})"
    )
    report: dict[str, Any] = {
        "benchmark": "train_speed (forward + backward)",
        "device": device_name,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "height": args.height,
        "width": args.width,
        "iters": args.iters,
        "warmup": args.warmup,
        "amp_bf16": args.amp and device.type == "cuda",
        "results": [measure(name, args, device) for name in names],
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
