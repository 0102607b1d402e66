"""The Dockerfile, parsed: its pip installs are the tested ones, it runs as non-root, its HEALTHCHECK hits an
open route of the app, and the GPU extra resolves (from PyPI) to wheels of the base image's CUDA major (marker
``network``: run by ``make test-slow``, since ``make test`` makes no network call)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import tomllib

from service.app import create_app
from service.config import Settings

ROOT = Path(__file__).resolve().parents[2]
NETWORK_ERRORS = (
    "NewConnectionError",
    "Max retries exceeded",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "ProxyError",
    "ConnectTimeoutError",
    "Name or service not known",
)


@dataclass
class Stage:
    """One ``FROM`` stage: its base, name and instructions as (KEYWORD, argument) pairs."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


@dataclass
class Dockerfile:
    """Global ARG defaults and the stages, by name."""

    args: dict[str, str]
    stages: dict[str, Stage]


def parse_dockerfile(text: str) -> Dockerfile:
    """Join continuation lines, drop comments, split into global ARGs and named stages."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            words = rest.split()
            base = next(w for w in words if not w.startswith("--"))
            name = words[words.index("AS") + 1] if "AS" in words else None
            current = Stage(base=base, name=name)
            stages[name or f"stage{len(stages)}"] = current
        elif current is None:
            assert keyword == "ARG", f"only ARG may precede FROM, got {line!r}"
            key, _, value = rest.partition("=")
            args[key] = value
        else:
            current.instructions.append((keyword, rest))
    return Dockerfile(args=args, stages=stages)


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse_dockerfile((ROOT / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def extras() -> dict[str, list[str]]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return dict(pyproject["project"]["optional-dependencies"])


def _pip_installs(stage: Stage) -> list[list[str]]:
    """The argument lists of every ``pip install`` in the stage's RUN instructions."""
    found = []
    for run in stage.all("RUN"):
        command: list[str] = []
        for word in [*shlex.split(run), "&&"]:
            if word not in {"&&", "||", ";"}:
                command.append(word)
                continue
            if command[:2] == ["pip", "install"]:
                found.append(command[2:])
            command = []
    return found


def _requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_parser_reads_continuations_and_stage_names() -> None:
    parsed = parse_dockerfile(
        "ARG A=1\n# c\nFROM x:1 AS one\nRUN a \\\n    # inner\n    && b\nFROM one AS two\nUSER u\n"
    )
    assert parsed.args == {"A": "1"}
    assert parsed.stages["one"].instructions == [("RUN", "a && b")]
    assert parsed.stages["two"].base == "one" and parsed.stages["two"].all("USER") == ["u"]


def test_serving_image_installs_one_serving_extra_and_never_torch(
    dockerfile: Dockerfile, extras: dict[str, list[str]]
) -> None:
    assert dockerfile.args["VARIANT"] == "gpu"
    installs = _pip_installs(dockerfile.stages["builder"])
    assert installs[-1] == ["-c", "deploy/constraints-${VARIANT}.txt", ".[${VARIANT},milvus]"]  # + pymilvus
    assert "torch" not in _requirement_names(extras["milvus"])
    for variant in ("gpu", "cpu"):
        assert variant in extras, f"VARIANT={variant} names no extra of pyproject.toml"
        assert "torch" not in _requirement_names(extras[variant])
        assert (ROOT / "deploy" / f"constraints-{variant}.txt").is_file()
    assert "deploy/constraints-gpu.txt" in " ".join(dockerfile.stages["builder"].all("COPY"))
    assert not any("torch" in " ".join(words) for words in installs)
    assert dockerfile.stages["serve"].base == "runtime-${VARIANT}"
    assert {dockerfile.stages["runtime-gpu"].base, dockerfile.stages["runtime-cpu"].base} == {
        "${CUDA_IMAGE}",
        "${BASE_IMAGE}",
    }
    assert dockerfile.stages["runtime-gpu"].base == "${CUDA_IMAGE}"
    assert re.fullmatch(r"nvidia/cuda:12\.\d+\.\d+-cudnn-runtime-ubuntu24\.04", dockerfile.args["CUDA_IMAGE"])
    assert dockerfile.args["BASE_IMAGE"] == "ubuntu:24.04"  # builder and runtime share Ubuntu (and Python)


def test_train_image_installs_what_make_test_installs(
    dockerfile: Dockerfile, extras: dict[str, list[str]]
) -> None:
    makefile = (ROOT / "Makefile").read_text()
    torch_pin = re.search(r"^TORCH\s*:=\s*(\S+)", makefile, re.M)
    make_extras = re.search(r'pip install -e "\.\[([a-z,]+)\]"', makefile)
    assert torch_pin and make_extras, "Makefile no longer pins TORCH / installs .[extras]"
    train = dockerfile.stages["train"]
    version = next(a.split("=", 1)[1] for a in train.all("ARG") if a.startswith("TORCH_VERSION="))
    installs = _pip_installs(train)
    assert ["torch==${TORCH_VERSION}"] in installs
    assert torch_pin.group(1) == f"torch=={version}"
    project = next(words[-1] for words in installs if words[-1].startswith(".["))
    image_extras = set(project[2:-1].split(","))
    assert image_extras == set(make_extras.group(1).split(",")) - {"dev"}
    assert image_extras <= set(extras)


def _serve_stage(dockerfile: Dockerfile) -> Stage:
    return dockerfile.stages["serve"]


def test_serving_image_runs_as_non_root_and_exposes_the_served_port(dockerfile: Dockerfile) -> None:
    serve = _serve_stage(dockerfile)
    users = serve.all("USER")
    assert users and users[-1] not in {"root", "0", "0:0"}
    assert "useradd --system --uid 10001" in " ".join(serve.all("RUN"))
    assert serve.all("EXPOSE") == ["8000"]
    entrypoint = json.loads(serve.all("ENTRYPOINT")[-1])
    assert entrypoint[:2] == ["reid", "serve"]
    assert entrypoint[entrypoint.index("--host") + 1] == "0.0.0.0"
    assert entrypoint[entrypoint.index("--port") + 1] == "8000"
    env = " ".join(serve.all("ENV"))
    assert "REID_GRACEFUL_TIMEOUT_S=" in env and "REID_DATA_DIR=/app/data" in env
    assert serve.all("VOLUME") == ['["/app/data"]']


def healthcheck_command(dockerfile: Dockerfile) -> list[str]:
    """The exec-form command of the serving stage's HEALTHCHECK."""
    check = _serve_stage(dockerfile).all("HEALTHCHECK")[-1]
    return list(json.loads(check[check.index("CMD") + 3 :].strip()))


@pytest.mark.anyio
async def test_healthcheck_hits_an_open_route_of_the_app(dockerfile: Dockerfile, tmp_path: Path) -> None:
    command = healthcheck_command(dockerfile)
    assert command[:2] == ["python3", "-c"]  # no curl in the image
    compile(command[2], "<healthcheck>", "exec")
    url = re.search(r"'(http://[^']+)'", command[2])
    assert url, command
    parsed = httpx.URL(url.group(1))
    assert parsed.host == "127.0.0.1" and parsed.port == 8000
    settings = Settings(models_dir=tmp_path / "none", data_dir=tmp_path / "data", api_keys=["secret"])
    app = create_app(settings)  # no lifespan: liveness must not depend on a loaded model
    assert parsed.path in app.openapi()["paths"]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.get(parsed.path)).status_code == 200  # without an API key
        assert (await client.get("/ready")).status_code == 401  # while other routes need one


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.network  # resolves against the package registry: `make test-slow`, not `make test`
def test_gpu_extra_resolves_to_cuda12_wheels_for_the_image_python(
    dockerfile: Dockerfile, tmp_path: Path
) -> None:
    """``pip install --dry-run ".[gpu]"`` for CPython 3.12 (Ubuntu 24.04) on manylinux x86_64, from PyPI."""
    platforms = [
        "manylinux_2_39_x86_64",
        "manylinux_2_28_x86_64",
        "manylinux_2_27_x86_64",
        "manylinux_2_17_x86_64",
        "manylinux2014_x86_64",
    ]
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
    cmd += ["--report", "-", "--python-version", "3.12", "--only-binary=:all:"]
    cmd += ["--target", str(tmp_path / "target")]
    cmd += [f"--platform={p}" for p in platforms]
    cmd += ["-c", "deploy/constraints-gpu.txt", ".[gpu]"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 and any(e in proc.stderr for e in NETWORK_ERRORS):
        pytest.skip(f"the package registry is unreachable: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    metadata = {item["metadata"]["name"].lower(): item["metadata"] for item in report["install"]}
    assert "torch" not in metadata
    cuda_major = re.search(r"nvidia/cuda:(\d+)\.", dockerfile.args["CUDA_IMAGE"])
    assert cuda_major
    for name in ("onnxruntime-gpu", "faiss-gpu"):
        assert name in metadata, sorted(metadata)
        nvidia = [r for r in metadata[name].get("requires_dist", []) if r.startswith("nvidia-")]
        assert nvidia, f"{name} {metadata[name]['version']} declares no nvidia-* wheels to read its CUDA from"
        majors = {m.group(1) for r in nvidia if (m := re.search(r"-cu(\d+)\b", r))}
        assert majors == {cuda_major.group(1)}, f"{name} {metadata[name]['version']} wants CUDA {nvidia}"
