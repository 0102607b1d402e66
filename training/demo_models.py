"""``make demo-models``: build the three shipped demo models from scratch, reproducibly, on CPU.

1. Generate the default synthetic benchmark (``reid synth`` defaults, seed 0) into ``data/synth-default``.
2. Train ``demo-osnet-cpu`` (OSNet embedding model), ``demo-siamese-cpu`` (Siamese net with a square-layer
   verification head) and ``demo-mls-cpu`` (multi-level similarity pairwise model) on it with fixed seeds.
3. Export each through the parity gate and calibration into ``models/demo-osnet``, ``models/demo-siamese`` and
   ``models/demo-mls`` (``encoder.onnx`` + ``comparator.onnx``).

All three models are trained on synthetic pedestrians only: they demonstrate the pipeline and the service,
they are not for real cameras (their manifests say so).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from service.cli import main as reid

#: model folder name → training recipe.
DEMO_MODELS: dict[str, str] = {
    "demo-osnet": "demo-osnet-cpu", "demo-siamese": "demo-siamese-cpu", "demo-mls": "demo-mls-cpu",
}


def _step(argv: list[str]) -> None:
    print("+ reid " + " ".join(argv), flush=True)
    status = reid(argv)
    if status != 0:
        raise SystemExit(f"`reid {' '.join(argv)}` failed with exit status {status}")


def build_demo_models(models_dir: Path, data_dir: Path, runs_dir: Path, only: Sequence[str] = ()) -> None:
    """Generate data, train and export every demo model (or those in ``only``)."""
    if not (data_dir / "synthetic.json").is_file():
        _step(["synth", "--out", str(data_dir), "--seed", "0"])
    for folder, recipe in DEMO_MODELS.items():
        if only and folder not in only:
            continue
        start = time.perf_counter()
        run = runs_dir / folder
        _step(["train", "--recipe", recipe, "--root", str(data_dir), "--output", str(run), "--no-progress"])
        _step(["export", "--checkpoint", str(run / "checkpoint.pt"), "--output", str(models_dir / folder)])
        print(f"{folder}: trained and exported in {(time.perf_counter() - start) / 60:.1f} min", flush=True)
    _step(["models", "check", *(str(models_dir / f) for f in DEMO_MODELS if not only or f in only)])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.demo_models", description=__doc__)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--data-dir", type=Path, default=Path("data/synth-default"))
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    parser.add_argument("--only", nargs="*", default=[], choices=sorted(DEMO_MODELS), help="build only these")
    args = parser.parse_args(argv)
    build_demo_models(args.models_dir, args.data_dir, args.runs_dir, args.only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
