"""``reid bench``: run one benchmark of ``benchmarks/`` and print its report as one JSON object.

Examples::

    reid bench embed --backbones osnet_x0_25,resnet50 --batch-sizes 1,8,32,128
    reid bench search --sizes 10000,100000 --dims 512,2048
    reid bench http --requests 200 --max-seconds 10
    reid bench eval
    reid bench embed --help        # every option of one benchmark

Each benchmark is a script in ``benchmarks/`` (also runnable as ``python benchmarks/<script>.py``) that
defines ``add_arguments(parser)`` and ``run(args) -> dict``; this command only dispatches, so the scripts need
a source checkout (they are not part of the installed packages).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

HELP = "run a benchmark and print JSON"
DESCRIPTION = (
    "Run one benchmark and print one JSON object: embed (torch vs onnxruntime images/s), search (FAISS "
    "latency and recall), http (live service vs the bare model + index loop), eval (Market-sized evaluation "
    "with and without re-ranking), workers (/search vs `reid serve --workers N` on Milvus). "
    "`reid bench NAME --help` lists a benchmark's options."
)
#: benchmark name → script in ``benchmarks/``.
BENCHMARKS: dict[str, str] = {
    "embed": "embed_speed.py",
    "search": "search_speed.py",
    "http": "http_bench.py",
    "eval": "eval_speed.py",
    "workers": "http_workers.py",
}
BENCHMARKS_DIR = Path(__file__).resolve().parents[2] / "benchmarks"


def load_benchmark(name: str) -> ModuleType:
    """Import ``benchmarks/<script>.py`` of a benchmark by file path.

    Raises:
        ValueError: Unknown benchmark name (the message lists the valid ones).
        FileNotFoundError: The script is missing (an installed copy without the source checkout).
    """
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; valid benchmarks: {', '.join(BENCHMARKS)}")
    path = BENCHMARKS_DIR / BENCHMARKS[name]
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: reid bench needs the source checkout's benchmarks/ folder"
        )
    repo_root = str(BENCHMARKS_DIR.parent)
    if repo_root not in sys.path:  # the scripts import benchmarks._common
        sys.path.insert(0, repo_root)
    module_name = f"benchmarks.{path.stem}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One sub-command per benchmark, with the script's own arguments."""
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for name in BENCHMARKS:
        module = load_benchmark(name)
        doc = (module.__doc__ or "").strip()
        sp = sub.add_parser(
            name,
            help=getattr(module, "DESCRIPTION", doc.splitlines()[0] if doc else name),
            description=doc.split("\n\n")[0] if doc else None,
        )
        module.add_arguments(sp)


def run(args: argparse.Namespace) -> int:
    """Run the chosen benchmark and print its report."""
    report = load_benchmark(args.benchmark).run(args)
    print(json.dumps(report, indent=2))
    return 0
