"""index.html in a real browser: Debian's headless Chromium, driven by Playwright, opening the page through the real
download app on a local store of processed entries. It must render, filter, and every link must resolve."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from PIL import Image

from oa_dagster.platform.store import LocalStore
from oa_dagster.results_index import build_results_index
from oa_dagster.webhook.app import create_app
from tests.servers.apps import AppServers
from tests.test_results_index import FAILING, MAP_COLOURS, add_collections, add_maps, processed_store

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; never a browser downloaded by `playwright install`
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.is_file(), reason=f"no Chromium at {CHROMIUM} (CI installs Debian's chromium package: .ci/run)"
)


@pytest.fixture
def served_index(tmp_path: Path) -> Iterator[str]:
    """The download app on a store with processed entries, collections and maps, and the index built: its URL."""
    store = LocalStore(tmp_path / "store")
    processed_store(store, tmp_path)
    add_collections(store, tmp_path)
    add_maps(store, tmp_path)
    build_results_index(store)
    servers = AppServers()
    try:
        yield servers.start(create_app(store))
    finally:
        servers.stop_all()


def test_the_page_renders_filters_and_every_link_resolves(served_index: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            page.goto(served_index + "/")  # the app's front page redirects to the index
            assert page.url == f"{served_index}/download/index.html"
            shown = page.locator("#shown")
            # the inline script ran under the page's Content-Security-Policy: it wrote the count
            expect(shown).to_have_text("8 of 8 entries shown")
            assert page.locator("#entry-table").is_visible() and page.locator("#entry-table tbody tr").count() == 8
            # every map loaded, and nothing from a problem text became an element or ran
            assert page.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)") == [True] * 3
            assert page.evaluate("window.hacked === undefined")

            shot = tmp_path / "index.png"
            page.screenshot(path=str(shot), full_page=True)
            image = Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")
            colours = {colour for _, colour in image.getcolors(maxcolors=image.width * image.height) or []}
            assert len(colours) > 10 and (255, 255, 255) in colours
            assert MAP_COLOURS["usa"] in colours  # a map is drawn in the screenshot

            page.fill("#filter", "berlin")
            expect(shown).to_have_text("1 of 8 entries shown")
            visible = page.locator("#entry-table tbody tr:visible")
            assert visible.count() == 1 and FAILING.rsplit("/", 1)[0] in visible.inner_text()
            page.fill("#filter", "no such entry")
            expect(shown).to_have_text("0 of 8 entries shown")
            assert page.locator("#no-match").is_visible()
            page.fill("#filter", "us/ held")  # every word must match
            expect(shown).to_have_text("1 of 8 entries shown")
            assert "us/wa/held" in page.locator("#entry-table tbody tr:visible").inner_text()
            page.fill("#filter", "")
            expect(shown).to_have_text("8 of 8 entries shown")

            # links as the browser resolves them (relative to /download/index.html)
            urls = page.evaluate(
                "[...new Set([...document.querySelectorAll('a[href]')].map(a => a.href)"
                ".concat([...document.images].map(i => i.src)))]"
            )
            assert errors == [], errors
        finally:
            browser.close()
    assert len(urls) > 20 and all(url.startswith(f"{served_index}/download/") for url in urls)
    for url in urls:
        answer = requests.get(url, timeout=10)
        assert answer.status_code == 200, (url, answer.status_code, answer.text[:200])
