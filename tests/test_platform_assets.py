"""The catalog and layer assets on a throwaway instance with the local store."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from oa_dagster.platform import store_layout as layout
from oa_dagster.platform.store import LocalStore, get_json
from tests.platform_helpers import (
    city_sources,
    local,
    materialize_catalog,
    materialize_range,
    partition_status,
    write_csv,
)

EXAMPLE_KEY = "us/ca/berkeley_example"


def test_catalog_adds_partitions_per_layer_and_stores_the_catalog(tmp_path: Path) -> None:
    resources = local(tmp_path)
    with dg.instance_for_test() as instance:
        result = materialize_catalog(instance, resources)
        # the `legacy` entry says `skip: true`: listed by the catalog, not a partition (it has no data to show)
        assert instance.get_dynamic_partitions("addresses") == ["de/berlin_example/city", f"{EXAMPLE_KEY}/city"]
        assert instance.get_dynamic_partitions("parcels") == [f"{EXAMPLE_KEY}/county"]
        meta = result.asset_materializations_for_node("source_catalog")[0].metadata
        assert meta["addresses_entries"].value == 3 and meta["addresses_skipped"].value == 1
        assert meta["addresses_skipped_keys"].value == f"{EXAMPLE_KEY}/legacy"
        assert meta["invalid_sources"].value == 0
        catalog = get_json(LocalStore(tmp_path / "data"), layout.CURRENT_CATALOG)
        assert catalog["commit"].startswith("local-")
        assert f"{EXAMPLE_KEY}/county" in catalog["entries"]["parcels"]


def test_catalog_lists_invalid_sources_and_removes_partitions_of_deleted_ones(tmp_path: Path) -> None:
    write_csv(tmp_path / "a.csv", 3)
    sources = city_sources(tmp_path, {"us/xx/one": "a.csv", "us/xx/two": "a.csv"})
    (sources / "us/xx/broken.json").write_text("{not json")
    resources = local(tmp_path, sources)
    with dg.instance_for_test() as instance:
        first = materialize_catalog(instance, resources).asset_materializations_for_node("source_catalog")[0]
        assert "us/xx/broken" in first.metadata["invalid"].value
        assert instance.get_dynamic_partitions("addresses") == ["us/xx/one/city", "us/xx/two/city"]
        (sources / "us/xx/two.json").unlink()
        second = materialize_catalog(instance, resources).asset_materializations_for_node("source_catalog")[0]
        assert instance.get_dynamic_partitions("addresses") == ["us/xx/one/city"]
        assert second.metadata["addresses_removed"].value == "us/xx/two/city"


def test_example_partitions_materialize_with_outputs_metadata_and_checks(tmp_path: Path) -> None:
    resources = local(tmp_path, preview=True)
    store = LocalStore(tmp_path / "data")
    with dg.instance_for_test() as instance:
        materialize_catalog(instance, resources)
        result = materialize_range(instance, resources, "addresses", f"{EXAMPLE_KEY}/city", f"{EXAMPLE_KEY}/city")
        assert result.success
        events = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]
        by_key = {m.partition: m for m in events}
        city = by_key[f"{EXAMPLE_KEY}/city"]
        assert city.metadata["feature_count"].value > 100
        assert city.metadata["status"].value == "promoted"
        assert city.metadata["sample"].value.records
        assert city.metadata["preview"].value.startswith("![preview](")
        assert city.tags["dagster/data_version"] == city.metadata["entry_version"].value
        checks = {(e.partition, e.check_name): e for e in result.get_asset_check_evaluations()}
        city_key = f"{EXAMPLE_KEY}/city"
        valid, quality = checks[(city_key, "output_valid")], checks[(city_key, "output_quality")]
        assert valid.passed and valid.metadata["features_present"].value and valid.metadata["geometry_valid"].value
        assert valid.severity == dg.AssetCheckSeverity.ERROR and quality.severity == dg.AssetCheckSeverity.WARN
        assert quality.passed and quality.metadata["address_quality"].value
        pointer = get_json(store, layout.latest_key("addresses", f"{EXAMPLE_KEY}/city"))
        assert store.exists(pointer["files"]["output"])
        assert store.exists(f"{pointer['prefix']}/{layout.MANIFEST}")
        assert get_json(store, layout.latest_key("addresses", f"{EXAMPLE_KEY}/legacy")) is None
        assert partition_status(instance, "addresses", [f"{EXAMPLE_KEY}/city"]) == {
            f"{EXAMPLE_KEY}/city": dg.AssetPartitionStatus.MATERIALIZED
        }


def test_a_broken_entry_fails_alone_and_keeps_the_previous_good_output(tmp_path: Path) -> None:
    write_csv(tmp_path / "good.csv", 5)
    write_csv(tmp_path / "flaky.csv", 5)
    sources = city_sources(tmp_path, {"us/xx/good": "good.csv", "us/xx/flaky": "flaky.csv"})
    resources = local(tmp_path, sources)
    store = LocalStore(tmp_path / "data")
    with dg.instance_for_test() as instance:
        materialize_catalog(instance, resources)
        assert materialize_range(instance, resources, "addresses", "us/xx/flaky/city", "us/xx/good/city").success
        before = get_json(store, layout.latest_key("addresses", "us/xx/flaky/city"))
        (tmp_path / "flaky.csv").unlink()
        result = materialize_range(instance, resources, "addresses", "us/xx/flaky/city", "us/xx/good/city")
        assert not result.success
        failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
        assert "us/xx/flaky/city: Could not download source data" in failure.description
        assert partition_status(instance, "addresses", ["us/xx/flaky/city", "us/xx/good/city"]) == {
            "us/xx/flaky/city": dg.AssetPartitionStatus.FAILED,
            "us/xx/good/city": dg.AssetPartitionStatus.MATERIALIZED,
        }
        assert get_json(store, layout.latest_key("addresses", "us/xx/flaky/city")) == before
        latest = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("addresses"), asset_partitions=["us/xx/flaky/city"]), limit=1
        ).records[0]
        assert latest.run_id == before["run_id"]


def test_a_collapse_is_stored_but_held_until_accepted(tmp_path: Path) -> None:
    from oa_dagster.jobs.quality_gate import accept_held_run_job

    write_csv(tmp_path / "a.csv", 20)
    sources = city_sources(tmp_path, {"us/xx/a": "a.csv"})
    resources = local(tmp_path, sources)
    store = LocalStore(tmp_path / "data")
    with dg.instance_for_test() as instance:
        materialize_catalog(instance, resources)
        materialize_range(instance, resources, "addresses", "us/xx/a/city", "us/xx/a/city")
        good = get_json(store, layout.latest_key("addresses", "us/xx/a/city"))
        write_csv(tmp_path / "a.csv", 3)
        result = materialize_range(instance, resources, "addresses", "us/xx/a/city", "us/xx/a/city")
        assert result.success
        event = result.get_asset_materialization_events()[0].event_specific_data.materialization
        assert event.metadata["status"].value == "held"
        checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
        quality = checks["output_quality"]
        assert checks["output_valid"].passed and not quality.passed
        assert not quality.metadata["promoted"].value and not quality.metadata["count_not_down"].value
        assert quality.metadata["address_quality"].value
        assert "down 85% from the previous materialization (20)" in quality.description
        assert "quality gate held: feature count fell 85%" in quality.description
        assert get_json(store, layout.latest_key("addresses", "us/xx/a/city")) == good
        held = get_json(store, layout.held_key("addresses", "us/xx/a/city"))
        assert "feature count fell 85%" in held["reasons"][0]
        accept = accept_held_run_job.execute_in_process(
            instance=instance,
            resources=resources,
            run_config={"ops": {"accept_held_op": {"config": {"layer": "addresses", "entry": "us/xx/a/city"}}}},
        )
        assert accept.success
        latest = get_json(store, layout.latest_key("addresses", "us/xx/a/city"))
        assert latest["feature_count"] == 3 and latest["run_id"] == held["run_id"]
        assert not store.exists(layout.held_key("addresses", "us/xx/a/city"))


def test_changed_entries_are_listed_after_an_edit(tmp_path: Path) -> None:
    write_csv(tmp_path / "a.csv", 4)
    sources = city_sources(tmp_path, {"us/xx/a": "a.csv", "us/xx/b": "a.csv"})
    resources = local(tmp_path, sources)
    with dg.instance_for_test() as instance:
        materialize_catalog(instance, resources)
        materialize_range(instance, resources, "addresses", "us/xx/a/city", "us/xx/b/city")
        path = sources / "us/xx/b.json"
        data = json.loads(path.read_text())
        data["layers"]["addresses"][0]["conform"]["unit"] = "street"
        path.write_text(json.dumps(data))
        meta = materialize_catalog(instance, resources).asset_materializations_for_node("source_catalog")[0].metadata
        assert meta["addresses_changed_keys"].value == "us/xx/b/city"


def test_only_an_entrys_warnings_and_errors_reach_the_event_log(tmp_path: Path) -> None:
    """Each forwarded line is an event-log write: INFO lines stay in the entry's log.txt in the store."""
    write_csv(tmp_path / "good.csv", 5)
    sources = city_sources(tmp_path, {"us/xx/good": "good.csv", "us/xx/gone": "gone.csv"})
    resources = local(tmp_path, sources)
    store = LocalStore(tmp_path / "data")
    with dg.instance_for_test() as instance:
        materialize_catalog(instance, resources)
        result = materialize_range(instance, resources, "addresses", "us/xx/gone/city", "us/xx/good/city")
        assert not result.success
        user_lines = [(e.level, e.user_message) for e in instance.all_logs(result.run_id) if e.dagster_event is None]
        assert not any("downloaded" in message or "wrote" in message for _, message in user_lines)
        errors = [message for level, message in user_lines if level >= logging.WARNING]
        assert errors and all(message.startswith("us/xx/gone/city: ") for message in errors)
        assert len(user_lines) <= len(errors) + 4  # a few per run (range, second attempt, summary), none per entry
        pointer = get_json(store, layout.latest_key("addresses", "us/xx/good/city"))
        log = (store.get_bytes(pointer["files"]["log"]) or b"").decode()
        assert "downloaded" in log and "wrote 5 features" in log


def test_entry_logger_keeps_warnings_with_the_entry_key() -> None:
    from oa_dagster.platform.entry_processing import EntryWarnings, entry_logger

    warnings = EntryWarnings("us/xx/a/city")
    log = entry_logger(warnings)
    log.info("downloaded %s", "x")
    log.warning("coverage missing")
    log.error("Could not download source data: 404")
    assert warnings.lines == [
        (logging.WARNING, "us/xx/a/city: coverage missing"),
        (logging.ERROR, "us/xx/a/city: Could not download source data: 404"),
    ]


def test_previous_counts_are_the_latest_materializations_of_the_runs_keys(tmp_path: Path) -> None:
    from oa_dagster.assets.layers import previous_counts

    write_csv(tmp_path / "a.csv", 6)
    write_csv(tmp_path / "b.csv", 4)
    sources = city_sources(tmp_path, {"us/xx/a": "a.csv", "us/xx/b": "b.csv"})
    resources = local(tmp_path, sources)
    with dg.instance_for_test() as instance:
        materialize_catalog(instance, resources)
        assert previous_counts(instance, "addresses", ["us/xx/a/city", "us/xx/b/city"]) == {
            "us/xx/a/city": None,
            "us/xx/b/city": None,
        }
        materialize_range(instance, resources, "addresses", "us/xx/a/city", "us/xx/b/city")
        write_csv(tmp_path / "a.csv", 5)
        result = materialize_range(instance, resources, "addresses", "us/xx/a/city", "us/xx/a/city")
        meta = result.get_asset_materialization_events()[0].event_specific_data.materialization.metadata
        assert meta["previous_feature_count"].value == 6 and meta["feature_count"].value == 5
        assert previous_counts(instance, "addresses", ["us/xx/a/city", "us/xx/b/city"]) == {
            "us/xx/a/city": 5,
            "us/xx/b/city": 4,
        }


def test_a_first_materialization_says_no_previous_count_in_its_metadata_and_its_check_alike(tmp_path: Path) -> None:
    """Both used to disagree on the same first run: metadata `previous_feature_count -1`, the check `previous 0`."""
    write_csv(tmp_path / "a.csv", 6)
    resources = local(tmp_path, city_sources(tmp_path, {"us/xx/a": "a.csv"}))

    def run() -> tuple[dict[str, Any], dict[str, Any]]:
        result = materialize_range(instance, resources, "addresses", "us/xx/a/city", "us/xx/a/city")
        meta = result.get_asset_materialization_events()[0].event_specific_data.materialization.metadata
        check = next(e for e in result.get_asset_check_evaluations() if e.check_name == "output_quality")
        return {k: v.value for k, v in meta.items()}, {k: v.value for k, v in check.metadata.items()}

    with dg.instance_for_test() as instance:
        materialize_catalog(instance, resources)
        first, first_check = run()
        assert "previous_feature_count" not in first and "previous" not in first_check
        assert first_check["drop"] == "n/a" and first_check["count_not_down"] is True
        write_csv(tmp_path / "a.csv", 5)
        second, second_check = run()
        assert second["previous_feature_count"] == second_check["previous"] == 6
        assert second_check["drop"] == "16.7%"


def test_an_unexpected_error_in_one_entry_fails_only_that_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import oa_dagster.platform.entry_processing as entry_processing

    write_csv(tmp_path / "a.csv", 5)
    sources = city_sources(tmp_path, {f"us/xx/{name}": "a.csv" for name in "abc"})
    real_publish = entry_processing.publish_run

    def publish(store: Any, state: dict[str, Any], *args: Any, entry_key: str, **kwargs: Any) -> Any:
        if entry_key == "us/xx/b/city":
            raise ConnectionError("store unreachable")
        return real_publish(store, state, *args, entry_key=entry_key, **kwargs)

    monkeypatch.setattr(entry_processing, "publish_run", publish)
    resources = local(tmp_path, sources)
    with dg.instance_for_test() as instance:
        materialize_catalog(instance, resources)
        result = materialize_range(instance, resources, "addresses", "us/xx/a/city", "us/xx/c/city")
        assert not result.success
        failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
        assert failure.description.startswith("1 of 3 addresses entries failed")
        assert "us/xx/b/city: Could not process or publish the entry: unexpected ConnectionError" in failure.description
        assert partition_status(instance, "addresses", ["us/xx/a/city", "us/xx/b/city", "us/xx/c/city"]) == {
            "us/xx/a/city": dg.AssetPartitionStatus.MATERIALIZED,
            "us/xx/b/city": dg.AssetPartitionStatus.FAILED,
            "us/xx/c/city": dg.AssetPartitionStatus.MATERIALIZED,
        }
        errors = [
            e.user_message
            for e in instance.all_logs(result.run_id)
            if e.dagster_event is None and e.level >= logging.ERROR
        ]
        assert any(m.startswith("us/xx/b/city: unexpected ConnectionError") and "Traceback" in m for m in errors)


def test_only_http_and_https_urls_of_a_source_become_links_in_the_ui(tmp_path: Path) -> None:
    """A source's `website` and `license.url` set to `javascript:` (or `data:`) are shown as text, not as URL
    metadata the UI turns into a link; real web addresses stay links."""
    from tests.platform_helpers import csv_entry, write_source

    write_csv(tmp_path / "a.csv", 3)
    hostile = {"website": "javascript:alert(document.cookie)", "license": {"text": "Mine", "url": "data:text/html,x"}}
    friendly = {"website": "https://data.example.org/x", "license": {"url": "HTTP://example.org/licence"}}
    sources = tmp_path / "sources"
    for key, extra in {"us/xx/hostile": hostile, "us/xx/friendly": friendly}.items():
        write_source(
            sources,
            key,
            {"addresses": [csv_entry("city", os.path.relpath(tmp_path / "a.csv", sources / "us/xx"), **extra)]},
        )
    resources = local(tmp_path, sources)
    with dg.instance_for_test() as instance:
        materialize_catalog(instance, resources)
        result = materialize_range(instance, resources, "addresses", "us/xx/friendly/city", "us/xx/hostile/city")
        metadata = {
            event.partition: event.event_specific_data.materialization.metadata
            for event in result.get_asset_materialization_events()
        }
    bad, good = metadata["us/xx/hostile/city"], metadata["us/xx/friendly/city"]
    assert isinstance(bad["website"], dg.TextMetadataValue) and bad["website"].value == hostile["website"]
    assert isinstance(bad["licence_url"], dg.TextMetadataValue) and bad["licence_url"].value == "data:text/html,x"
    assert isinstance(good["website"], dg.UrlMetadataValue) and good["website"].value == "https://data.example.org/x"
    assert isinstance(good["licence_url"], dg.UrlMetadataValue)
    links = [value.value for meta in (bad, good) for value in meta.values() if isinstance(value, dg.UrlMetadataValue)]
    assert all(link.lower().startswith(("http://", "https://")) for link in links), links
