"""The coverage maps where a Dagster user looks first: the `coverage_maps` asset page of the real webserver, in
Debian's headless Chromium, shows each map in place, whole, its thumbnail fetched from the download app."""

from __future__ import annotations

import contextlib
from pathlib import Path

import dagster as dg

from oa_dagster.assets.catalog import source_catalog
from oa_dagster.assets.coverage import COVERAGE_ASSETS
from oa_dagster.coverage.maps import THUMBNAIL_WIDTH
from oa_dagster.platform.store import LocalStore
from oa_dagster.resources.deployments import local_resources
from oa_dagster.webhook.app import create_app
from tests.coverage_helpers import copy_sources, publish_history
from tests.platform_helpers import local_instance_home, running_webserver_url
from tests.servers.apps import AppServers
from tests.test_results_index_browser import CHROMIUM, CHROMIUM_ARGS, pytestmark  # noqa: F401 (skip without it)

SHOWN = """img => {
  img.scrollIntoView({block: "center"});
  const box = img.getBoundingClientRect();
  const probe = (x, y) => { const e = document.elementFromPoint(x, y); return e === img || img.contains(e); };
  return {width: img.naturalWidth, shownWidth: Math.round(box.width),
          whole: probe(box.left + 3, box.top + box.height / 2) && probe(box.right - 3, box.top + box.height / 2)};
}"""


def test_the_asset_page_shows_each_map_whole_in_place(tmp_path: Path) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
    from playwright.sync_api import sync_playwright

    sources = copy_sources(tmp_path)
    store = LocalStore(tmp_path / "data")
    servers = AppServers()
    try:
        app = servers.start(create_app(store))
        resources = local_resources(tmp_path / "data", sources, preview=False, download_url=f"{app}/download")
        home = local_instance_home(tmp_path / "home")
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert dg.materialize([source_catalog], instance=instance, resources=resources).success
            publish_history(store, tmp_path / "runs")
            assert dg.materialize(COVERAGE_ASSETS, instance=instance, resources=resources).success
        env = {"OA_ENV": "local", "OA_DATA_DIR": str(tmp_path / "data"), "OA_SOURCES_DIR": str(sources)}
        with (
            running_webserver_url(home, env, tmp_path / "web.log") as base,
            sync_playwright() as playwright,
        ):
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(f"{base}/assets/coverage_maps", timeout=120_000)
                page.locator("img[alt='world coverage']").wait_for(timeout=120_000)
                with contextlib.suppress(PlaywrightTimeoutError):  # a fresh instance's "Join the community" dialog
                    page.get_by_role("button", name="Skip").click(timeout=3_000)
                for name in ("world", "usa", "europe"):
                    image = page.locator(f"img[alt='{name} coverage']")
                    image.wait_for(timeout=120_000)
                    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
                    shown = image.evaluate(SHOWN)
                    assert shown == {"width": THUMBNAIL_WIDTH, "shownWidth": THUMBNAIL_WIDTH, "whole": True}, name
                    assert (
                        image.evaluate("img => img.closest('a').href") == f"{app}/download/coverage/render-{name}.png"
                    )
            finally:
                browser.close()
    finally:
        servers.stop_all()
