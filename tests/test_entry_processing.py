"""Processing and publishing one entry without Dagster, as CI jobs will: under `jobs/<key>/`, never touching
production pointers, and every problem in the result rather than raised."""

from __future__ import annotations

from pathlib import Path

from oa_dagster.platform import store_layout as layout
from oa_dagster.platform.catalog import build_catalog, local_commit
from oa_dagster.platform.entry_processing import NOT_IN_CATALOG, EntryOptions, process_entry
from oa_dagster.platform.store import LocalStore, get_json
from tests.platform_helpers import copy_examples

CITY = "us/ca/berkeley_example/city"


def _catalog(tmp_path: Path) -> dict:
    sources = copy_examples(tmp_path)
    return build_catalog(sources, local_commit(sources), ref="local", origin="test", keep_source_dir=True)


def test_a_ci_job_publishes_an_entry_under_its_own_root_and_leaves_production_alone(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "data")
    options = EntryOptions(work_root=tmp_path / "work", preview=False)
    root = layout.job_prefix("pr-7-abcdef0")
    result = process_entry(_catalog(tmp_path), "addresses", CITY, store, options, run_id="r1", root=root)
    assert result.has_output and result.source_problem is None and result.state is not None
    assert result.published is not None and result.published.promoted
    assert result.published.prefix == f"{root}/{layout.run_prefix('addresses', CITY, 'r1')}"
    assert get_json(store, f"{root}/{layout.latest_key('addresses', CITY)}")["run_id"] == "r1"
    assert get_json(store, layout.latest_key("addresses", CITY)) is None  # production's pointer untouched
    assert len(result.sample_rows) == 10 and result.sample_rows[0]["street"]
    assert list((tmp_path / "work").iterdir()) == []  # the entry's work folder went once published


def test_an_entry_the_catalog_lacks_is_a_result_not_an_exception(tmp_path: Path) -> None:
    options = EntryOptions(work_root=tmp_path / "work", preview=False)
    result = process_entry(
        _catalog(tmp_path), "addresses", "us/xx/nowhere/city", LocalStore(tmp_path / "data"), options, run_id="r1"
    )
    assert result.source_problem == NOT_IN_CATALOG and "us/xx/nowhere/city" in (result.problem_detail or "")
    assert not result.has_output and result.state is None and not result.worth_retrying
