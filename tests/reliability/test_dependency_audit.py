"""Row 20: an offline audit of the pinned minimum versions (and the installed ones) against known advisories.

``pip-audit`` needs the network; this check does not. The table lists the advisories of the three packages
that parse attacker-controlled request bytes (python-multipart, starlette, Pillow), each with the first fixed
version and where that is stated. pyproject's minimum for each package must be at or above every fixed
version, so that no allowed install is a known-vulnerable one; the installed versions are checked too.
Update the table when a new advisory appears (sources: osv.dev / the GitHub advisory database).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
import tomllib

from tests.reliability.conftest import Figure

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


@dataclass(frozen=True)
class Advisory:
    """One known vulnerability: the package, its ids, the first fixed version and the source."""

    package: str
    ids: str
    fixed: str
    summary: str
    source: str


ADVISORIES: tuple[Advisory, ...] = (
    Advisory("python-multipart", "CVE-2024-24762 / GHSA-2jv5-9r88-3w3p", "0.0.7",
             "Content-Type header options ReDoS", "https://osv.dev/vulnerability/GHSA-2jv5-9r88-3w3p"),
    Advisory("python-multipart", "CVE-2024-53981 / GHSA-59g5-xgcq-4qw3", "0.0.18",
             "CR/LF before the first boundary: per-byte logging DoS", "https://osv.dev/CVE-2024-53981"),
    Advisory("python-multipart", "CVE-2026-24486", "0.0.22",
             "path traversal with UPLOAD_DIR + UPLOAD_KEEP_FILENAME", "https://ubuntu.com/security/CVE-2026-24486"),
    Advisory("python-multipart", "CVE-2026-40347", "0.0.26",
             "large preamble / epilogue DoS", "https://osv.dev/CVE-2026-40347"),
    Advisory("python-multipart", "CVE-2026-42561 / GHSA-pp6c-gr5w-3c5g", "0.0.27",
             "unbounded part headers DoS", "https://github.com/advisories/GHSA-pp6c-gr5w-3c5g"),
    Advisory("python-multipart", "CVE-2026-53538 / GHSA-6jv3-5f52-599m", "0.0.30",
             "';' as urlencoded separator: field smuggling", "https://github.com/advisories/GHSA-6jv3-5f52-599m"),
    Advisory("starlette", "CVE-2023-30798 / GHSA-74m5-2c7w-9w3x", "0.25.0",
             "unlimited multipart fields/files", "https://osv.dev/vulnerability/GHSA-74m5-2c7w-9w3x"),
    Advisory("starlette", "CVE-2023-29159", "0.27.0",
             "StaticFiles path traversal", "https://pyup.io/packages/pypi/starlette/vulnerabilities"),
    Advisory("starlette", "CVE-2024-47874 / GHSA-f96h-pmfr-66vw", "0.40.0",
             "multipart fields without filename buffered without limit",
             "https://github.com/encode/starlette/security/advisories/GHSA-f96h-pmfr-66vw"),
    Advisory("starlette", "CVE-2025-54121 / GHSA-2c2j-9gv5-cj73", "0.47.2",
             "UploadFile rollover blocks the event loop", "https://osv.dev/vulnerability/CVE-2025-54121"),
    Advisory("starlette", "CVE-2025-62727 / GHSA-7f5h-v6xp-fcq8", "0.49.1",
             "Range header O(n²) in FileResponse",
             "https://github.com/pypa/advisory-database/blob/main/vulns/starlette/PYSEC-2026-1942.yaml"),
    Advisory("starlette", "CVE-2026-48710 / GHSA-86qp-5c8j-p5mr (BadHost)", "1.0.1",
             "Host header poisons request.url.path", "https://osv.dev/vulnerability/PYSEC-2026-161"),
    Advisory("starlette", "PYSEC-2026-248", "1.3.0",
             "path without leading '/' moves request.url's authority", "https://osv.dev/vulnerability/PYSEC-2026-248"),
    Advisory("pillow", "CVE-2023-50447", "10.2.0",
             "ImageMath.eval arbitrary code execution", "https://osv.dev/vulnerability/CVE-2023-50447"),
    Advisory("pillow", "CVE-2024-28219", "10.3.0",
             "buffer overflow in _imagingcms", "https://osv.dev/vulnerability/CVE-2024-28219"),
    Advisory("pillow", "CVE-2025-48379", "11.3.0",
             "DDS encoder heap overflow", "https://osv.dev/vulnerability/CVE-2025-48379"),
    Advisory("pillow", "CVE-2026-40192", "12.2.0",
             "FITS GZIP decompression bomb", "https://github.com/NVIDIA-NeMo/DataDesigner/pull/564"),
    Advisory("pillow", "CVE-2026-42309 / PYSEC-2026-2251", "12.2.0",
             "nested coordinate lists heap overflow", "https://osv.dev/vulnerability/PYSEC-2026-2251"),
    Advisory("pillow", "CVE-2026-42308", "12.2.0",
             "font glyph advance integer overflow", "https://www.cvelogic.com/cve/CVE-2026-42308"),
    Advisory("pillow", "CVE-2026-59199", "12.3.0",
             "paste/crop signed coordinate overflow", "https://osv.dev/vulnerability/BIT-pillow-2026-59199"),
    Advisory("pillow", "CVE-2026-59205", "12.3.0",
             "ImageCmsTransform.apply mode mismatch", "https://osv.dev/vulnerability/BIT-pillow-2026-59205"),
)  # fmt: skip

#: Published after the installed Pillow 13.0.0 came out (Oct 2026); their fixed version could not be read
#: offline. Pillow fixes only its latest release, so the installed version is checked to be ≥ 13.0.0; the
#: minimum stays 12.3.0 because Pillow 13 needs Python ≥ 3.11 (pyproject allows 3.10). See the README.
UNVERIFIED: tuple[Advisory, ...] = (
    Advisory("pillow", "CVE-2026-112403 / GHSA-8g5g-8vmr-9782", "13.0.0?", "ImagingJpegDecode heap overflow",
             "https://github.com/python-pillow/Pillow/security/advisories/GHSA-8g5g-8vmr-9782"),
    Advisory("pillow", "CVE-2026-112398 / GHSA-5x8w-8jj5-q52h", "13.0.0?", "FPX JPEG heap overflow",
             "https://github.com/python-pillow/Pillow/security/advisories/GHSA-5x8w-8jj5-q52h"),
    Advisory("pillow", "CVE-2026-112393 / GHSA-332p-7hrc-92wf", "13.0.0?", "TIFF save to BytesIO overflow",
             "https://github.com/python-pillow/Pillow/security/advisories/GHSA-332p-7hrc-92wf"),
)  # fmt: skip

PACKAGES = ("python-multipart", "starlette", "pillow")


def version_tuple(text: str) -> tuple[int, ...]:
    """``"0.0.27"`` → ``(0, 0, 27)``; trailing non-numeric parts (``rc1``, ``.post1``) are ignored."""
    parts = []
    for piece in text.split("."):
        match = re.match(r"\d+", piece)
        if match is None:
            break
        parts.append(int(match.group()))
    if not parts:
        raise ValueError(f"not a version: {text!r}")
    return tuple(parts)


def pinned_minimums(pyproject: Path = PYPROJECT) -> dict[str, str]:
    """``>=`` minimums of every dependency in pyproject (main and optional), by normalized name."""
    project = tomllib.loads(pyproject.read_text())["project"]
    specs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        specs += extra
    minimums: dict[str, str] = {}
    for spec in specs:
        match = re.match(r"^\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(.*)$", spec)
        assert match, spec
        name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
        low = re.search(r">=\s*([0-9][^,;\s]*)", match.group(3))
        if low:
            minimums[name] = low.group(1)
    return minimums


def test_version_parsing() -> None:
    assert version_tuple("0.0.27") == (0, 0, 27)
    assert version_tuple("1.10.0") > version_tuple("1.3.0")
    assert version_tuple("12.3.0.post1") == (12, 3, 0)
    with pytest.raises(ValueError, match="not a version"):
        version_tuple("latest")


@pytest.mark.row(20)
@pytest.mark.parametrize("package", PACKAGES)
def test_pinned_minimum_is_not_known_vulnerable(package: str, figure: Figure) -> None:
    minimums = pinned_minimums()
    assert package in minimums, f"pyproject has no '>=' minimum for {package}: any old version may install"
    minimum = version_tuple(minimums[package])
    known = [a for a in ADVISORIES if a.package == package]
    assert known
    vulnerable = [a for a in known if minimum < version_tuple(a.fixed)]
    assert not vulnerable, (
        f"pyproject allows {package} {minimums[package]}, vulnerable to "
        + "; ".join(f"{a.ids} ({a.summary}, fixed in {a.fixed})" for a in vulnerable)
    )
    needed = ".".join(map(str, max(version_tuple(a.fixed) for a in known)))
    installed = metadata.version(package)
    figure(20, f"{package}: pyproject minimum / installed", f">={minimums[package]} / {installed}", "",
           f">= {needed} (newest known fix)")  # fmt: skip


@pytest.mark.row(20)
@pytest.mark.parametrize("package", PACKAGES)
def test_installed_version_is_not_known_vulnerable(package: str) -> None:
    installed = metadata.version(package)
    for advisory in ADVISORIES + UNVERIFIED:
        if advisory.package == package:
            fixed = advisory.fixed.rstrip("?")
            assert version_tuple(installed) >= version_tuple(fixed), (
                f"installed {package} {installed} is vulnerable to {advisory.ids} (fixed in {fixed})"
            )


@pytest.mark.row(20)
def test_fastapi_minimum_admits_the_fixed_starlette() -> None:
    """FastAPI < 0.133 caps starlette below 1.0: its minimum must not force a vulnerable starlette."""
    minimums = pinned_minimums()
    assert version_tuple(minimums["fastapi"]) >= (0, 133), minimums["fastapi"]
