"""One live ``reid serve`` (demo model, stored images, an API key) and one headless Chromium per module.

The browser is Debian's ``chromium`` driven by its ``chromium-driver`` (installed by ``make browser-tools``);
where they are missing the tests skip and say so. Screenshots go to ``tests/artifacts/ui/`` (git-ignored).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.conftest import start_server
from tests.service.conftest import PersonImages, synthetic_pedestrian_images

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "tests" / "artifacts" / "ui"
#: Headless flags for a machine without a display or network (docs: REFERENCE.md "Browser tests here").
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
WINDOW = (1280, 1000)


@dataclass(frozen=True)
class Console:
    """The browser, the console's address and the images the tests enrol and query with."""

    driver: object
    url: str
    images: dict[str, list[Path]]
    queries: dict[str, Path]

    def screenshot(self, name: str, height: int | None = None) -> Path:
        """Save a PNG of the page under tests/artifacts/ui/ (``height``: a taller window for it)."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        driver: Any = self.driver
        if height is not None:
            driver.set_window_size(WINDOW[0], height)
        driver.save_screenshot(str(path))
        if height is not None:
            driver.set_window_size(*WINDOW)
        print(f"screenshot: {path}")
        return path


def _browser_binaries() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip(
            "no chromium / chromedriver on PATH: `make browser-tools` installs Debian's chromium and "
            "chromium-driver (as root, with apt-get)"
        )
    return browser, driver


def _write_images(folder: Path, images: PersonImages) -> tuple[dict[str, list[Path]], dict[str, Path]]:
    enrol: dict[str, list[Path]] = {}
    queries: dict[str, Path] = {}
    folder.mkdir(parents=True)
    for person, shots in images.enrol.items():
        enrol[person] = []
        for i, data in enumerate(shots):
            path = folder / f"{person}-{i}.jpg"
            path.write_bytes(data)
            enrol[person].append(path)
        queries[person] = folder / f"{person}-query.jpg"
        queries[person].write_bytes(images.query[person])
    return enrol, queries


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``reid serve`` of models/demo-siamese on 127.0.0.1 with REID_STORE_IMAGES and an API key."""
    root = tmp_path_factory.mktemp("console-server")
    env = {"REID_STORE_IMAGES": "true"}  # start_server sets REID_API_KEYS to API_KEY
    server = start_server(ROOT / "models", "demo-siamese", root / "data", root, env=env)
    try:
        server.wait_ready(timeout_s=60)
        yield server.base_url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def console(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """A headless Chromium with a fresh profile, and the synthetic pedestrians as files to upload."""
    browser, driver_path = _browser_binaries()  # skip before starting the server
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (the dev extra) is not installed")
    live_server: str = request.getfixturevalue("live_server")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    folder = tmp_path_factory.mktemp("console") / "images"
    enrol, queries = _write_images(folder, synthetic_pedestrian_images())
    try:
        yield Console(driver=driver, url=f"{live_server}/ui/", images=enrol, queries=queries)
    finally:
        driver.quit()
