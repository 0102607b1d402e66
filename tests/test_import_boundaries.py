"""The service half never imports torch; the CLI imports only the subcommand it runs."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import service


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_importing_every_service_module_leaves_torch_out():
    names = [m.name for m in pkgutil.walk_packages(service.__path__, prefix="service.")]
    assert "service.contract.manifest" in names and "service.contract.preprocess" in names
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "print('TORCH:' + ','.join(bad))\n"
    )
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("TORCH:"), proc.stdout


def test_cli_help_and_serve_help_do_not_import_torch():
    code = (
        "import sys, contextlib, io\n"
        "from service.cli import main\n"
        "for argv in (['--help'], ['serve', '--help'], ['datasets']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit:\n"
        "            pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'CLEAN')\n"
    )
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "CLEAN", proc.stdout + proc.stderr
