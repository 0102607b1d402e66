"""docker-compose.yml: validated by ``docker-compose config`` (Debian's docker-compose 1.29, or the compose v2
plugin) when installed, on a copy shaped like a fresh clone (no env file), and checked field by field from the
YAML: GPU reservation, volumes, 127.0.0.1 port, health check, grace period longer than the shutdown, every
REID_* default equal to the service's default (the API keys and the model empty: unset)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = re.compile(r"^\$\{(?P<name>\w+):-(?P<default>[^}]*)\}$")
#: Where the container deliberately differs from the service default (a load balancer gets 2 s to notice).
DEPLOY_OVERRIDES = {"shutdown_drain_s": 2.0}


def compose_command() -> list[str] | None:
    """``docker-compose`` (Debian package) or ``docker compose`` (v2 plugin), whichever runs."""
    for cmd in (["docker-compose"], ["docker", "compose"]):
        if shutil.which(cmd[0]) is None:
            continue
        probe = subprocess.run([*cmd, "version"], capture_output=True, text=True, timeout=60)
        if probe.returncode == 0:
            return cmd
    return None


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def _resolve(value: object) -> object:
    """``${NAME:-default}`` → default, as compose interpolates with nothing set."""
    if isinstance(value, str) and (m := DEFAULT.match(value)):
        return m.group("default")
    return value


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration):
        total += float(number) * units[unit]
    assert total > 0, duration
    return total


def _project(tmp_path: Path) -> Path:
    """A copy of the compose project as a fresh clone has it (compose file, Dockerfile, models/)."""
    tmp_path.mkdir()
    for name in ("docker-compose.yml", "Dockerfile"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "models").mkdir()
    return tmp_path


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")}


def test_docker_compose_config_validates_the_file(tmp_path: Path) -> None:
    cmd = compose_command()
    if cmd is None:
        pytest.skip("no docker-compose binary (make deploy-tools installs Debian's docker-compose)")
    project = _project(tmp_path / "clone")
    before = _files(project)
    base = [*cmd, "--project-directory", str(project), "-f", str(project / "docker-compose.yml")]
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(tmp_path)}  # no REID_* from the test env
    quiet = subprocess.run([*base, "config", "-q"], capture_output=True, text=True, timeout=120, env=env)
    assert quiet.returncode == 0, quiet.stderr  # a fresh clone: nothing to create first
    assert _files(project) == before, "docker-compose config created files"
    proc = subprocess.run([*base, "config"], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    reid = yaml.safe_load(proc.stdout)["services"]["reid"]
    assert reid["environment"]["REID_DEVICE"] == "cuda"
    assert reid["environment"]["REID_API_KEYS"] == ""  # keyless: open, on 127.0.0.1 only, and says so
    assert reid["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    proc = subprocess.run(
        [*base, "--profile", "cpu", "--profile", "train", "config", "--services"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert set(proc.stdout.split()) - SCALE == {"reid", "reid-cpu", "train"}  # 1.29 lists every profile
    example = (ROOT / "deploy" / "reid.env.example").read_text()  # the documented way to set a key
    (project / ".env").write_text(example.replace("REID_API_KEYS=\n", "REID_API_KEYS=k1,k2\n"))
    proc = subprocess.run([*base, "config"], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load(proc.stdout)["services"]["reid"]["environment"]["REID_API_KEYS"] == "k1,k2"


def test_gpu_service_reserves_an_nvidia_gpu_and_keeps_the_gallery(compose: dict[str, Any]) -> None:
    reid = compose["services"]["reid"]
    assert reid["build"] == {"context": ".", "target": "serve", "args": {"VARIANT": "gpu"}}
    devices = reid["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "profiles" not in reid  # `docker compose up` starts it
    assert "reid-data:/app/data" in reid["volumes"] and "reid-data" in compose["volumes"]
    assert "./models:/app/models:ro" in reid["volumes"]
    assert reid["environment"]["REID_DATA_DIR"] == "/app/data"
    assert reid["environment"]["REID_MODELS_DIR"] == "/app/models"
    assert reid["restart"] == "unless-stopped"
    port = reid["ports"][0]
    assert port.startswith("127.0.0.1:") and port.endswith(":8000"), port


def test_grace_period_outlasts_the_graceful_shutdown(compose: dict[str, Any]) -> None:
    for name in ("reid", "reid-cpu"):
        service = compose["services"][name]
        env = service["environment"]
        shutdown = float(_resolve(env["REID_SHUTDOWN_DRAIN_S"])) + float(  # type: ignore[arg-type]
            _resolve(env["REID_GRACEFUL_TIMEOUT_S"])  # type: ignore[arg-type]
        )
        assert _seconds(service["stop_grace_period"]) >= shutdown + 10, (name, shutdown)
        assert service.get("stop_signal", "SIGTERM") == "SIGTERM"


def test_healthcheck_is_the_dockerfile_one(compose: dict[str, Any]) -> None:
    from tests.deploy.test_dockerfile import healthcheck_command, parse_dockerfile

    dockerfile = parse_dockerfile((ROOT / "Dockerfile").read_text())
    check = compose["services"]["reid"]["healthcheck"]
    assert check["test"] == ["CMD", *healthcheck_command(dockerfile)]
    assert _seconds(check["start_period"]) >= 60  # model load + warm-up on a cold GPU


def test_every_setting_has_the_service_default_and_the_api_key_stays_out(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = compose["services"]["reid"]["environment"]
    example = (ROOT / "deploy" / "reid.env.example").read_text()
    from_env_file = set(re.findall(r"^#? ?(REID_\w+)=", example, re.M))
    assert {"REID_API_KEYS", "REID_MODEL"} <= from_env_file <= set(env)
    assert "env_file" not in compose["services"]["reid"]  # a required env file breaks a fresh clone
    assert env["REID_API_KEYS"] == "${REID_API_KEYS:-}", "keys come from the shell or .env, never the file"
    fields = {f"REID_{name.upper()}" for name in Settings.model_fields}
    assert fields == set(env), fields ^ set(env)
    for key in fields:
        monkeypatch.delenv(key, raising=False)
    defaults = Settings()
    for key, value in env.items():
        if key in {"REID_MODELS_DIR", "REID_DATA_DIR", "REID_DEVICE"}:  # container paths / per variant
            continue
        assert DEFAULT.match(value), f"{key}: {value!r} is not ${{{key}:-default}}"
        monkeypatch.setenv(key, str(_resolve(value)))
    from_compose = Settings()
    compared = [n for n in Settings.model_fields if f"REID_{n.upper()}" in env]
    assert len(compared) >= 21
    for name in compared:
        if name not in {"models_dir", "data_dir", "device"}:
            expected = DEPLOY_OVERRIDES.get(name, getattr(defaults, name))
            assert getattr(from_compose, name) == expected, name


SCALE = {"etcd", "minio", "milvus", "reid-scale", "lb"}


def test_scale_profile_runs_replicas_on_milvus_behind_a_load_balancer(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert all(services[name]["profiles"] == ["scale"] for name in SCALE)
    assert services["milvus"]["image"] == "milvusdb/milvus:v2.3.5"  # the version the tests run against
    assert services["milvus"]["environment"]["ETCD_ENDPOINTS"] == "etcd:2379"
    scale = services["reid-scale"]
    assert scale["environment"]["REID_GALLERY"] == "milvus"
    assert scale["environment"]["REID_MILVUS_URI"] == "http://milvus:19530"
    assert scale["deploy"]["replicas"] == "${REID_REPLICAS:-2}" and "--workers" in scale["command"]
    assert "ports" not in scale and services["lb"]["ports"] == ["127.0.0.1:${REID_SCALE_PORT:-8080}:8080"]
    conf = (ROOT / "deploy" / "nginx-scale.conf").read_text()
    assert "reid-scale:8000" in conf and "listen 8080" in conf


def test_cpu_and_train_services_sit_behind_profiles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    cpu, train = services["reid-cpu"], services["train"]
    assert cpu["profiles"] == ["cpu"] and cpu["build"]["args"]["VARIANT"] == "cpu"
    assert cpu["environment"]["REID_DEVICE"] == "cpu" and "deploy" not in cpu
    assert cpu["volumes"] == services["reid"]["volumes"]  # same gallery volume and models
    assert train["profiles"] == ["train"] and train["build"]["target"] == "train"
    assert "./models:/app/models" in train["volumes"]
    assert any(v.endswith(":/datasets:ro") for v in train["volumes"])
    assert train["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    script = (ROOT / "deploy" / "train-export.sh").read_text()
    assert "reid train --recipe" in script and "reid export --checkpoint" in script
    assert set(train["environment"]) == {"TRAIN_RECIPE", "TRAIN_DATASET", "MODEL_NAME"}
