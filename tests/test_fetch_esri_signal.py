"""An ArcGIS layer's change signal, as a set's planning probes it and as a dump records it: the feature count and the
object-id extent are asked at the same time (one round trip of waiting, not two), and a failure of either keeps
its old meaning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from oa_dagster.fetch import fetch_entry
from oa_dagster.fetch.upstream import probe_upstream
from tests.servers.arcgis import FakeArcGISServer, FakeLayer, point_features
from tests.servers.helpers import fast_options, make_entry

EDITED = {"lastEditDate": 1_700_000_000_000, "dataLastEditDate": 1_700_000_000_000}
CONFORM = {"format": "geojson", "number": "number", "street": "STREET"}


def _entry(server: FakeArcGISServer, layer: FakeLayer) -> Any:
    return make_entry(server.add_layer("signal", layer), protocol="ESRI", conform=dict(CONFORM))


def _recorded(count: int = 30, oid_field: str | None = "OBJECTID") -> dict[str, Any]:
    recorded = {
        "protocol": "esri",
        "last_edit": EDITED["lastEditDate"],
        "data_last_edit": EDITED["dataLastEditDate"],
        "count": count,
        "oid_min": 1,
        "oid_max": count,
    }
    return {**recorded, "oid_field": oid_field} if oid_field else recorded


def test_the_probe_asks_the_metadata_the_count_and_the_extent_at_once(arcgis_server: FakeArcGISServer) -> None:
    layer = FakeLayer(point_features(30), editing_info=dict(EDITED), latency=0.3)
    answer = probe_upstream(_entry(arcgis_server, layer), _recorded(), fast_options())
    assert answer.unchanged, answer.signal
    assert "30 features, object ids 1-30 unchanged" in answer.signal
    assert layer.hits == 3 and layer.statistics_queries == 1
    assert layer.most_in_flight == 3  # the recorded id field: nothing waits for the metadata


def test_a_record_without_the_id_field_asks_the_metadata_first(arcgis_server: FakeArcGISServer) -> None:
    layer = FakeLayer(point_features(30), editing_info=dict(EDITED), latency=0.3)
    answer = probe_upstream(_entry(arcgis_server, layer), _recorded(oid_field=None), fast_options())
    assert answer.unchanged, answer.signal
    assert layer.hits == 3  # metadata, then the count and the statistics together
    assert layer.most_in_flight == 2


def test_a_republished_layer_with_another_id_field_has_changed(arcgis_server: FakeArcGISServer) -> None:
    layer = FakeLayer(point_features(30), editing_info=dict(EDITED), oid_field="FID")
    answer = probe_upstream(_entry(arcgis_server, layer), _recorded(), fast_options())
    assert not answer.unchanged
    assert answer.signal == "changed: object-id field 'OBJECTID' -> 'FID'"
    assert answer.size is not None and answer.size.amount == 30


def test_a_changed_count_is_seen_with_the_extent_asked_beside_it(arcgis_server: FakeArcGISServer) -> None:
    layer = FakeLayer(point_features(31), editing_info=dict(EDITED))
    answer = probe_upstream(_entry(arcgis_server, layer), _recorded(), fast_options())
    assert not answer.unchanged
    assert "count 30 -> 31" in answer.signal and "oid_max 30 -> 31" in answer.signal
    assert answer.size is not None and answer.size.amount == 31


def test_a_layer_that_stopped_tracking_edits_has_changed_and_a_dump_does_not_ask_its_extent(
    arcgis_server: FakeArcGISServer, tmp_path: Path
) -> None:
    layer = FakeLayer(point_features(30))
    entry = _entry(arcgis_server, layer)
    answer = probe_upstream(entry, _recorded(), fast_options())
    assert not answer.unchanged and "no editingInfo" in answer.signal

    asked = layer.statistics_queries  # the probe asked it beside the metadata: the record said it tracked edits
    download = fetch_entry(entry, tmp_path, fast_options())
    assert download.feature_count == 30 and download.validators == {}
    assert layer.statistics_queries == asked  # the dump reads the metadata first: no signal, no extent asked


def test_an_unanswerable_extent_fails_the_probe_but_not_the_dump(
    arcgis_server: FakeArcGISServer, tmp_path: Path
) -> None:
    # no statistics and no id list: the extent cannot be read while the count can (pages by offset still work)
    layer = FakeLayer(point_features(30), editing_info=dict(EDITED), supports_statistics=False, supports_ids=False)
    entry = _entry(arcgis_server, layer)
    answer = probe_upstream(entry, _recorded(), fast_options())
    assert not answer.unchanged and answer.signal.startswith("probe failed"), answer.signal

    download = fetch_entry(entry, tmp_path, fast_options())
    assert download.feature_count == 30
    assert download.validators == {}  # no signal recorded: the next set downloads it again


def test_a_dump_records_the_signal_read_before_its_pages(arcgis_server: FakeArcGISServer, tmp_path: Path) -> None:
    layer = FakeLayer(point_features(30), max_record_count=10, editing_info=dict(EDITED), latency=0.2)
    download = fetch_entry(_entry(arcgis_server, layer), tmp_path, fast_options(esri_workers=1))
    assert download.validators == _recorded()
    assert layer.statistics_queries == 1
    # the statistics went beside the count (one worker for the pages, so nothing else overlaps)
    assert layer.most_in_flight == 2
