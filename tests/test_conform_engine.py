"""The conform step on real files of every supported format: readers, CRS handling, geometry, output."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import pyarrow as pa
import pytest
import shapely

from oa_dagster.conform.engine import conform_file
from oa_dagster.conform.select import select_input
from oa_dagster.errors import ConformError, NoFeatures, UnknownFormat
from tests.geofiles import feature_collection, read_features, write_layer

LOG = logging.getLogger("tests")
ADDRESS = {"number": "NUM", "street": "STREET"}
OREGON_POINT = [-122.6308422, 45.4815544]


def run(
    path: Path,
    conform: dict,
    tmp_path: Path,
    layer: str = "addresses",
    protocol: str = "http",
    fingerprint: str = "f00d",
):
    out = tmp_path / "out.geojson"
    result = conform_file(
        path, layer=layer, conform=conform, protocol=protocol, fingerprint=fingerprint, out_path=out, log=LOG
    )
    return result, read_features(out)


def test_csv_in_a_projected_srs_is_reprojected_to_wgs84_lon_lat(tmp_path: Path) -> None:
    # the reference processor's own case for EPSG:2913 (Oregon North, international feet); PROJ picks a
    # NAD83(HARN) datum shift the reference's GDAL did not, so the two agree to about 1.5 m
    path = tmp_path / "a.csv"
    path.write_text("NUM,STREET,X,Y\n5115,FRUITLAND RD,7655634.924,668868.414\n")
    result, features = run(path, {**ADDRESS, "format": "csv", "lon": "X", "lat": "Y", "srs": "EPSG:2913"}, tmp_path)
    assert features[0]["geometry"]["type"] == "Point"
    assert features[0]["geometry"]["coordinates"] == pytest.approx(OREGON_POINT, abs=3e-5)
    assert result.bbox == features[0]["geometry"]["coordinates"] * 2


def test_csv_latin1_with_semicolons_and_decimal_commas(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes("NUM;STREET;LON;LAT\n12;Rue de l'Église;2,3522;48,8566\n".encode("latin-1"))
    conform = {**ADDRESS, "format": "csv", "csvsplit": ";", "encoding": "ISO-8859-1", "lon": "LON", "lat": "LAT"}
    _, features = run(path, conform, tmp_path)
    assert features[0]["properties"]["street"] == "Rue de l'Église"
    assert features[0]["geometry"]["coordinates"] == [2.3522, 48.8566]


@pytest.mark.parametrize("encoding", ["SHIFT_JISX0213", "EUCKR", "CP949"])
def test_csv_in_east_asian_encodings_is_decoded(tmp_path: Path, encoding: str) -> None:
    street = "東京都千代田区" if encoding.startswith("SHIFT") else "세종대로"
    path = tmp_path / "a.csv"
    path.write_bytes(f"NUM,STREET,X,Y\n1,{street},139.75,35.68\n".encode(encoding))
    _, features = run(path, {**ADDRESS, "format": "csv", "encoding": encoding, "lon": "X", "lat": "Y"}, tmp_path)
    assert features[0]["properties"]["street"] == street


def test_csv_without_a_header_row_names_columns_column1_to_n(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("7,MAIN ST,-122.1,37.5\n9,OAK AVE,-122.2,37.6\n")
    conform = {
        "format": "csv",
        "headers": -1,
        "number": "COLUMN1",
        "street": "COLUMN2",
        "lon": "COLUMN3",
        "lat": "COLUMN4",
    }
    _, features = run(path, conform, tmp_path)
    assert [f["properties"]["number"] for f in features] == ["7", "9"]


def test_csv_headers_on_line_two_skip_the_first_line(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("Exported 2026-01-01\nNUM,STREET,X,Y\n7,MAIN ST,-122.1,37.5\n")
    conform = {**ADDRESS, "format": "csv", "headers": 2, "skiplines": 2, "lon": "X", "lat": "Y"}
    _, features = run(path, conform, tmp_path)
    assert features[0]["properties"]["street"] == "MAIN ST"


def test_csv_rows_with_more_fields_than_the_header_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("NUM,STREET,X,Y\n1,A ST,-122,37\n2,B ST,-122,37,extra\n3,C ST,-122,37\n")
    result, features = run(path, {**ADDRESS, "format": "csv", "lon": "X", "lat": "Y"}, tmp_path)
    assert [f["properties"]["number"] for f in features] == ["1", "3"]
    assert result.skipped_rows == 1


def test_csv_rows_with_fewer_fields_are_kept_with_the_missing_ones_empty(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("X,Y,NUM,STREET,UNIT\n-122.1,37.5,1,A ST\n-122.1,37.5,2,B ST,4\n-122.2,37.6,3\n")
    result, features = run(path, {**ADDRESS, "unit": "UNIT", "format": "csv", "lon": "X", "lat": "Y"}, tmp_path)
    rows = sorted((f["properties"]["number"], f["properties"]["street"], f["properties"]["unit"]) for f in features)
    assert rows == [("1", "A ST", ""), ("2", "B ST", "4"), ("3", "", "")]
    assert result.skipped_rows == 0


def test_rows_without_coordinates_are_left_out_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("NUM,STREET,X,Y\n1,A ST,-122,37\n2,B ST,,\n3,C ST,abc,37\n")
    result, features = run(path, {**ADDRESS, "format": "csv", "lon": "X", "lat": "Y"}, tmp_path)
    assert len(features) == 1 and result.features_without_geometry == 2


def test_shapefile_polygons_become_points_on_surface_for_addresses(tmp_path: Path) -> None:
    # an L-shaped lot: its centroid lies outside, the point on surface inside
    lot = "POLYGON((0 0, 10 0, 10 1, 1 1, 1 10, 0 10, 0 0))"
    shp = write_layer(tmp_path / "lots.shp", [{"NUM": "1", "STREET": "ELM ST"}], [lot], driver="ESRI Shapefile")
    _, features = run(shp, {**ADDRESS, "format": "shapefile"}, tmp_path)
    import shapely

    point = shapely.geometry.shape(features[0]["geometry"])
    assert point.geom_type == "Point" and shapely.from_wkt(lot).contains(point)


def test_lines_and_multipoints_become_single_points_for_addresses(tmp_path: Path) -> None:
    shp = write_layer(
        tmp_path / "l.gpkg",
        [{"NUM": "1", "STREET": "A"}, {"NUM": "2", "STREET": "B"}],
        ["LINESTRING(0 0, 10 0)", "MULTIPOINT((5 5), (6 6))"],
        driver="GPKG",
        geometry_type="Unknown",
    )
    _, features = run(shp, {**ADDRESS, "format": "gpkg"}, tmp_path)
    import shapely

    line, multipoint = (shapely.geometry.shape(f["geometry"]) for f in features)
    assert line.geom_type == multipoint.geom_type == "Point"
    assert shapely.from_wkt("LINESTRING(0 0, 10 0)").distance(line) < 1e-9
    assert shapely.from_wkt("MULTIPOINT((5 5), (6 6))").distance(multipoint) < 1e-9


def test_shapefile_with_its_own_projection_is_reprojected(tmp_path: Path) -> None:
    shp = write_layer(
        tmp_path / "pts.shp",
        [{"NUM": "5115", "STREET": "FRUITLAND RD"}],
        ["POINT(7655634.924 668868.414)"],
        driver="ESRI Shapefile",
        crs="EPSG:2913",
    )
    _, features = run(shp, {**ADDRESS, "format": "shapefile"}, tmp_path)
    assert features[0]["geometry"]["coordinates"] == pytest.approx(OREGON_POINT, abs=3e-5)


def test_geographic_srs_override_is_read_as_lon_lat_without_axis_swap(tmp_path: Path) -> None:
    shp = write_layer(
        tmp_path / "pts.shp",
        [{"NUM": "1", "STREET": "BROADWAY"}],
        ["POINT(-122.26 37.80)"],
        driver="ESRI Shapefile",
        crs=None,
    )
    _, features = run(shp, {**ADDRESS, "format": "shapefile", "srs": "EPSG:4326"}, tmp_path)
    assert features[0]["geometry"]["coordinates"] == [-122.26, 37.8]


def test_latin1_shapefile_without_cpg_is_decoded_as_latin1(tmp_path: Path) -> None:
    shp = write_layer(
        tmp_path / "pts.shp",
        [{"NUM": "1", "STREET": "Calle Peñón"}, {"NUM": "2", "STREET": "Plain"}],
        ["POINT(-3.7 40.4)", "POINT(-3.8 40.5)"],
        driver="ESRI Shapefile",
        encoding="ISO-8859-1",
    )
    (tmp_path / "pts.cpg").unlink(missing_ok=True)
    _, features = run(shp, {**ADDRESS, "format": "shapefile"}, tmp_path)
    assert [f["properties"]["street"] for f in features] == ["Calle Peñón", "Plain"]


def test_integral_doubles_keep_every_digit_and_no_exponent(tmp_path: Path) -> None:
    import pyogrio

    gpkg = tmp_path / "p.gpkg"
    table = pa.table(
        {
            "PIN": pa.array([12345678901.0, 12.5]),
            "geometry": pa.array(
                [shapely.to_wkb(shapely.box(0, 0, 1, 1)), shapely.to_wkb(shapely.box(1, 1, 2, 2))], pa.binary()
            ),
        }
    )
    pyogrio.write_arrow(table, gpkg, driver="GPKG", geometry_name="geometry", geometry_type="Polygon", crs="EPSG:4326")
    _, features = run(gpkg, {"format": "gpkg", "pid": "PIN"}, tmp_path, layer="parcels")
    assert [f["properties"]["pid"] for f in features] == ["12345678901", "12.5"]
    path = tmp_path / "a.geojson"
    path.write_text(
        feature_collection(
            [({"ID": v}, {"type": "Point", "coordinates": [1, 2]}) for v in (123456789012, 12.5, 9007199254740993)]
        )
    )
    _, features = run(path, {"format": "geojson", "pid": "ID"}, tmp_path, layer="parcels")
    assert [f["properties"]["pid"] for f in features] == ["123456789012", "12.5", "9007199254740993"]


def test_one_shape_outside_its_projection_is_left_out_not_fatal(tmp_path: Path) -> None:
    gpkg = write_layer(
        tmp_path / "p.gpkg",
        [{"PID": "ok"}, {"PID": "far"}],
        [
            "POLYGON((500000 4100000,500100 4100000,500100 4100100,500000 4100000))",
            "POLYGON((1e12 1e12,1e12 2e12,2e12 2e12,1e12 1e12))",
        ],
        driver="GPKG",
        crs="EPSG:32610",
    )
    result, features = run(gpkg, {"format": "gpkg", "pid": "PID"}, tmp_path, layer="parcels")
    assert [f["properties"]["pid"] for f in features] == ["ok"] and result.features_out_of_range == 1


def test_shapefile_without_projection_in_projected_units_is_refused(tmp_path: Path) -> None:
    shp = write_layer(
        tmp_path / "pts.shp",
        [{"NUM": "1", "STREET": "A"}],
        ["POINT(7655634 668868)"],
        driver="ESRI Shapefile",
        crs=None,
    )
    with pytest.raises(ConformError, match="no projection"):
        run(shp, {**ADDRESS, "format": "shapefile"}, tmp_path)


def test_geojson_srs_is_honoured(tmp_path: Path) -> None:
    path = tmp_path / "a.geojson"
    path.write_text(
        feature_collection(
            [({"NUM": 5115, "STREET": "FRUITLAND RD"}, {"type": "Point", "coordinates": [7655634.924, 668868.414]})]
        )
    )
    _, features = run(path, {**ADDRESS, "format": "geojson", "srs": "EPSG:2913"}, tmp_path)
    assert features[0]["geometry"]["coordinates"] == pytest.approx(OREGON_POINT, abs=3e-5)
    assert features[0]["properties"]["number"] == "5115"


def test_newline_delimited_geojson_with_mixed_property_types_is_read(tmp_path: Path) -> None:
    path = tmp_path / "a.geojsonl"
    lines = [
        '{"type":"Feature","properties":{"NUM":12,"STREET":"A ST","EXTRA":{"k":1}},'
        '"geometry":{"type":"Point","coordinates":[-1.5,52.1]}}',
        '{"type":"Feature","properties":{"NUM":"12B","STREET":"B ST"},'
        '"geometry":{"type":"Polygon","coordinates":[[[0,0],[2,0],[2,2],[0,2],[0,0]]]}}',
        '{"type":"Feature","properties":{"NUM":"3","STREET":"C ST"},"geometry":null}',
    ]
    path.write_text("\n".join(lines) + "\n")
    result, features = run(path, {**ADDRESS, "format": "geojson"}, tmp_path)
    assert [f["properties"]["number"] for f in features] == ["12", "12B"]
    assert features[1]["geometry"]["type"] == "Point"
    assert result.features_without_geometry == 1
    assert result.sample[0][:3] == ["NUM", "STREET", "EXTRA"]


def test_gzipped_geojson_members_are_read_after_unpacking(tmp_path: Path) -> None:
    raw = feature_collection([({"NUM": "1", "STREET": "A"}, {"type": "Point", "coordinates": [1, 2]})])
    path = tmp_path / "a.geojson"
    path.write_bytes(gzip.decompress(gzip.compress(raw.encode())))
    _, features = run(path, {**ADDRESS, "format": "geojson"}, tmp_path)
    assert features[0]["properties"]["street"] == "A"


def test_geopackage_layer_is_chosen_by_name(tmp_path: Path) -> None:
    gpkg = tmp_path / "a.gpkg"
    write_layer(gpkg, [{"PID": "wrong"}], ["POINT(1 1)"], driver="GPKG", layer="other")
    write_layer(
        gpkg, [{"PID": "APN-1"}], ["POLYGON((0 0,1 0,1 1,0 1,0 0))"], driver="GPKG", layer="parcels", append=False
    )
    _, features = run(gpkg, {"format": "gpkg", "layer": "parcels", "pid": "PID"}, tmp_path, layer="parcels")
    assert features[0]["properties"] == {"hash": features[0]["properties"]["hash"], "pid": "APN-1"}
    assert features[0]["geometry"]["type"] == "Polygon"


def test_file_geodatabase_layer_by_index_and_unknown_name(tmp_path: Path) -> None:
    gdb = tmp_path / "city.gdb"
    write_layer(
        gdb,
        [{"BID": "b1", "HGT": "12.5", "LVL": "3"}],
        ["POLYGON((0 0,1 0,1 1,0 1,0 0))"],
        driver="OpenFileGDB",
        layer="Buildings",
        geometry_type="Polygon",
    )
    _, features = run(
        gdb, {"format": "gdb", "layer": 0, "id": "BID", "height": "HGT", "levels": "LVL"}, tmp_path, layer="buildings"
    )
    props = features[0]["properties"]
    assert (props["id"], props["height"], props["levels"]) == ("b1", "12.5", "3")
    with pytest.raises(ConformError, match="'Roads' not found"):
        run(gdb, {"format": "gdb", "layer": "Roads", "id": "BID"}, tmp_path, layer="buildings")


def test_gml_is_read_through_ogr(tmp_path: Path) -> None:
    gml = write_layer(
        tmp_path / "a.gml",
        [{"NUM": "3", "STREET": "Hauptstraße"}],
        ["POINT(10.0 53.55)"],
        driver="GML",
        crs="EPSG:4326",
    )
    _, features = run(gml, {**ADDRESS, "format": "xml"}, tmp_path)
    assert features[0]["properties"]["street"] == "Hauptstraße"
    lon, lat = features[0]["geometry"]["coordinates"]
    assert (round(lon, 2), round(lat, 2)) in ((10.0, 53.55), (53.55, 10.0))


def test_centerlines_keep_lines_rounded_to_seven_decimals(tmp_path: Path) -> None:
    line = "LINESTRING(-122.123456789 37.987654321, -122.2 37.9)"
    shp = write_layer(tmp_path / "roads.shp", [{"NAME": "MAIN ST", "SPD": "25"}], [line], driver="ESRI Shapefile")
    conform = {"format": "shapefile", "name": "NAME", "speed": {"function": "mph_to_kph", "field": "SPD"}}
    _, features = run(shp, conform, tmp_path, layer="centerlines")
    assert features[0]["geometry"] == {
        "type": "LineString",
        "coordinates": [[-122.1234568, 37.9876543], [-122.2, 37.9]],
    }
    assert list(features[0]["properties"]) == [
        "hash",
        "id",
        "name",
        "oneway",
        "speed",
        "classification",
        "surface",
        "addr_from_left",
        "addr_to_left",
        "addr_from_right",
        "addr_to_right",
        "zip_left",
        "zip_right",
    ]
    assert features[0]["properties"]["speed"] == "40"


def test_address_properties_are_strings_in_contract_order_with_integer_accuracy(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("NUM,STREET,X,Y\n12.0, Main St ,1,2\n")
    _, features = run(
        path, {**ADDRESS, "format": "csv", "lon": "X", "lat": "Y", "accuracy": 1, "city": "MISSING_COLUMN"}, tmp_path
    )
    props = features[0]["properties"]
    assert list(props) == [
        "hash",
        "number",
        "street",
        "unit",
        "city",
        "district",
        "region",
        "postcode",
        "id",
        "accuracy",
    ]
    assert (props["number"], props["street"], props["city"], props["accuracy"]) == ("12", "Main St", "", 1)
    assert len(props["hash"]) == 16 and int(props["hash"], 16) >= 0


def test_hash_is_stable_for_the_same_download_and_changes_with_the_fingerprint(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("NUM,STREET,X,Y\n1,A ST,1,2\n2,A ST,1,2\n")
    conform = {**ADDRESS, "format": "csv", "lon": "X", "lat": "Y"}
    first = [f["properties"]["hash"] for f in run(path, conform, tmp_path)[1]]
    again = [f["properties"]["hash"] for f in run(path, conform, tmp_path)[1]]
    other = [f["properties"]["hash"] for f in run(path, conform, tmp_path, fingerprint="beef")[1]]
    assert first == again and first[0] != first[1] and set(first).isdisjoint(other)


def test_arcgis_dump_is_not_reprojected_a_second_time(tmp_path: Path) -> None:
    path = tmp_path / "cache.geojsonl"
    path.write_text(
        '{"type":"Feature","properties":{"NUM":"1","STREET":"A"},'
        '"geometry":{"type":"Point","coordinates":[36.23,49.99]}}\n'
    )
    _, features = run(path, {**ADDRESS, "format": "geojson", "srs": "EPSG:28467"}, tmp_path, protocol="ESRI")
    assert features[0]["geometry"]["coordinates"] == [36.23, 49.99]


def test_json_special_characters_in_values_are_escaped(tmp_path: Path) -> None:
    path = tmp_path / "a.geojson"
    path.write_text(
        feature_collection([({"NUM": "1", "STREET": 'The "Q" \\ Rd\ttab'}, {"type": "Point", "coordinates": [1, 2]})])
    )
    _, features = run(path, {**ADDRESS, "format": "geojson"}, tmp_path)
    assert features[0]["properties"]["street"] == 'The "Q" \\ Rd\ttab'


def test_empty_input_is_reported_as_no_features(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("NUM,STREET,X,Y\n")
    with pytest.raises(NoFeatures):
        run(path, {**ADDRESS, "format": "csv", "lon": "X", "lat": "Y"}, tmp_path)
    assert not (tmp_path / "out.geojson").exists()


def test_file_with_a_folder_picks_that_folder_even_when_names_repeat(tmp_path: Path) -> None:
    files = [tmp_path / "u" / "2019" / "addr.shp", tmp_path / "u" / "2020" / "addr.shp"]
    assert select_input(files, "shapefile", "2020/addr.shp") == files[1]
    assert select_input(files, "shapefile", "2019/ADDR.shp") == files[0]
    with pytest.raises(ConformError, match="matches several files"):
        select_input(files, "shapefile", "addr.shp")


def test_input_selection_by_format_and_file(tmp_path: Path) -> None:
    files = [tmp_path / "x" / "Roads.shp", tmp_path / "x" / "Addr.shp", tmp_path / "readme.txt"]
    assert select_input(files, "shapefile", "Addr.shp") == files[1]
    assert select_input(files, "shapefile-polygon", "x/Addr.shp") == files[1]
    with pytest.raises(ConformError, match="several shapefile files"):
        select_input(files, "shapefile", None)
    with pytest.raises(UnknownFormat):
        select_input(files, "kml", None)
    assert select_input(files, "csv", None) == files[2]
