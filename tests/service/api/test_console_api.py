"""The console's files at ``/ui`` (headers, ``REID_UI=false``, no inline script or HTML sinks) and
``GET /gallery/{id}/image``, through the real app. The console itself is driven in a browser in
``tests/service/ui/test_console_browser.py``."""

from __future__ import annotations

import re

import pytest
from PIL import Image

from service.core.results import StoredImage
from service.ui.router import STATIC_DIR
from tests.service.conftest import png_bytes

pytestmark = pytest.mark.anyio
KEY = {"X-API-Key": "k1"}


async def test_console_is_served_with_a_strict_csp_and_without_a_key(make_settings, serve) -> None:
    async with serve(make_settings(api_keys=["k1"])) as (app, client):
        assert (await client.get("/ready")).status_code == 401  # the API needs the key, the files do not
        r = await client.get("/ui")
        assert r.status_code == 307 and r.headers["location"] == "/ui/"
        page = await client.get("/ui/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["x-frame-options"] == "DENY"
        script = await client.get("/ui/js/app.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert script.headers["content-security-policy"] == csp
        assert (await client.get("/ui/js/nothing.js")).status_code == 404
        assert not any(p.startswith("/ui") for p in app.openapi()["paths"])


async def test_reid_ui_false_turns_the_console_off(make_settings, serve) -> None:
    async with serve(make_settings(ui=False)) as (_, client):
        assert (await client.get("/ui/")).status_code == 404
        assert (await client.get("/ui")).status_code == 404
        assert (await client.get("/ready")).status_code == 200


def test_console_files_have_no_inline_script_and_no_html_sinks() -> None:
    html = (STATIC_DIR / "index.html").read_text()
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, flags=re.S)
    assert scripts and all("src=" in attrs and not body.strip() for attrs, body in scripts)
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"
    assert not re.search(r"\sstyle\s*=", html), "inline style (the CSP has no 'unsafe-inline')"
    for path in (STATIC_DIR / "js").glob("*.js"):
        source = path.read_text()
        sinks = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function")
        for sink in sinks:
            assert sink not in source, f"{path.name} uses {sink}"
    assert not re.search(r"https?://", html + "".join(p.read_text() for p in STATIC_DIR.rglob("*.*")))


async def test_gallery_image_returns_the_stored_bytes(make_settings, serve, person_images) -> None:
    person, images = next(iter(person_images.enrol.items()))
    files = [("images", (f"{i}.png", b, "image/png")) for i, b in enumerate(images[:2])]
    async with serve(make_settings(store_images=True)) as (app, client):
        ids = (await client.post("/gallery", files=files, data={"person_id": person})).json()["ids"]
        r = await client.get(f"/gallery/{ids[1]}/image")
        assert r.status_code == 200 and r.content == images[1]
        expected = "image/jpeg" if images[1].startswith(b"\xff\xd8") else "image/png"
        assert r.headers["content-type"] == expected
        assert r.headers["x-content-type-options"] == "nosniff"
        await client.delete(f"/gallery/{ids[1]}")
        gone = await client.get(f"/gallery/{ids[1]}/image")
        assert gone.status_code == 404 and gone.headers["content-type"] == "application/problem+json"
        assert "no gallery entry with id" in gone.json()["detail"]
        operation = app.openapi()["paths"]["/gallery/{gallery_id}/image"]["get"]
        assert {"image/jpeg", "image/png"} <= set(operation["responses"]["200"]["content"])
        assert "404" in operation["responses"]


async def test_gallery_image_is_404_when_images_are_not_stored(make_settings, serve, person_images) -> None:
    person, images = next(iter(person_images.enrol.items()))
    async with serve(make_settings(store_images=False, api_keys=["k1"])) as (_, client):
        files = [("images", ("0.png", images[0], "image/png"))]
        r = await client.post("/gallery", files=files, data={"person_id": person}, headers=KEY)
        entry_id = r.json()["ids"][0]
        assert (await client.get(f"/gallery/{entry_id}/image")).status_code == 401
        r = await client.get(f"/gallery/{entry_id}/image", headers=KEY)
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
        assert "REID_STORE_IMAGES" in r.json()["detail"]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP"])
def test_stored_image_media_type_is_read_from_the_bytes(fmt: str) -> None:
    data = png_bytes(Image.new("RGB", (8, 16), (10, 20, 30)), fmt)
    assert StoredImage(data).media_type == f"image/{fmt.lower()}"
    assert StoredImage(b"GIF89a" + data).media_type == "application/octet-stream"
