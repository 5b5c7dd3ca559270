"""Issue 16 §1: GDAL reads the run's own files with the driver the format names, and nothing else.

A hostile download (an OGR VRT served as `xml`, a GML naming schemas, entities or links, a projection naming grid
files) must never make GDAL or PROJ read a file outside the run's folder or reach an address. Each route is
driven through the conform engine with real files, and the worst one through `oa-dagster process
--public-hosts-only`; a local HTTP server records every request GDAL might make, and a "secret" file outside
the run's folder holds a marker that must never appear in an output.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import zipfile
from pathlib import Path

import pytest

from oa_dagster.conform.engine import conform_file
from oa_dagster.errors import ConformError, SourceProblem
from tests.geofiles import write_layer, write_source
from tests.servers.downloads import DownloadServer
from tests.servers.helpers import run_process_command

MARKER = "SECRET-MARKER-16"
ADDRESS = {"number": "NUMBER", "street": "STREET"}


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A CSV outside the run's folder, as `/etc/passwd` or a worker's credentials file would be."""
    path = tmp_path / "outside" / "secret.csv"
    path.parent.mkdir()
    path.write_text(f"NUMBER,STREET,LON,LAT\n1,{MARKER},-122.1,37.5\n")
    return path


@pytest.fixture
def internal(download_server: DownloadServer) -> DownloadServer:
    """An internal server (not the source's): every request it gets is recorded in `requests`."""
    body = f"NUMBER,STREET,LON,LAT\n9,{MARKER},-1.0,1.0\n".encode()
    download_server.route("/internal.csv", body=body, content_type="text/csv")
    return download_server


def vrt(source: str, layer: str) -> str:
    return (
        f'<OGRVRTDataSource><OGRVRTLayer name="addresses"><SrcDataSource>{source}</SrcDataSource>'
        f'<SrcLayer>{layer}</SrcLayer><GeometryType>wkbPoint</GeometryType><GeometryField encoding="PointFromColumns" '
        'x="LON" y="LAT"/></OGRVRTLayer></OGRVRTDataSource>\n'
    )


def conform(path: Path, fmt: str, **extra: str) -> tuple[int, str]:
    """Feature count and output text of the conform engine on `path` (the run's folder is its parent)."""
    out = path.parent / "out.geojson"
    result = conform_file(
        path,
        layer="addresses",
        conform={"format": fmt, **ADDRESS, **extra},
        protocol="http",
        fingerprint="f",
        out_path=out,
        log=logging.getLogger("test"),
    )
    return result.feature_count, out.read_text()


def run_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "run" / "unpacked"
    folder.mkdir(parents=True)
    return folder


# ---------------------------------------------------------------------------------- a VRT served as data


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("data.xml", "xml"), ("data.gml", "xml"), ("data.gpkg", "gpkg"), ("data.xml", "geojson"), ("data.xml", "csv")],
)
def test_a_vrt_naming_a_file_outside_the_run_is_refused_naming_what_it_is(
    tmp_path: Path, secret: Path, name: str, fmt: str
) -> None:
    path = run_folder(tmp_path) / name
    path.write_text(vrt(f"CSV:{secret}", "secret"))
    with pytest.raises(SourceProblem) as refused:
        conform(path, fmt)
    assert MARKER not in str(refused.value)
    if fmt not in ("geojson", "csv"):  # read by our own reader and pyarrow: no JSON, no rows with a geometry
        assert f"{name} is an OGR VRT" in str(refused.value)
    assert not (path.parent / "out.geojson").exists()


def test_a_vrt_served_as_a_shapefile_is_refused(tmp_path: Path, secret: Path) -> None:
    folder = run_folder(tmp_path)
    write_layer(folder / "data.shp", [{"NUMBER": "1", "STREET": "A"}], ["POINT (1 1)"], driver="ESRI Shapefile")
    (folder / "data.shp").write_text(vrt(f"CSV:{secret}", "secret"))
    with pytest.raises(ConformError, match=r"data\.shp is an OGR VRT .*not the ESRI Shapefile data"):
        conform(folder / "data.shp", "shapefile")


def test_a_vrt_naming_a_zip_outside_the_run_is_refused(tmp_path: Path, secret: Path) -> None:
    archive = secret.with_suffix(".zip")
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(secret, "secret.csv")
    path = run_folder(tmp_path) / "data.gml"
    path.write_text(vrt(f"CSV:/vsizip/{archive}/secret.csv", "secret"))
    with pytest.raises(ConformError, match="data.gml is an OGR VRT") as refused:
        conform(path, "xml")
    assert MARKER not in str(refused.value)


def test_a_vrt_naming_an_internal_url_makes_no_request(tmp_path: Path, internal: DownloadServer) -> None:
    path = run_folder(tmp_path) / "data.xml"
    path.write_text(vrt(f"CSV:/vsicurl/{internal.url('/internal.csv')}", "internal"))
    with pytest.raises(ConformError, match="data.xml is an OGR VRT"):
        conform(path, "xml")
    assert internal.requests == []


def test_cli_public_hosts_only_publishes_nothing_from_a_vrt_served_as_xml(
    tmp_path: Path, secret: Path, download_server: DownloadServer
) -> None:
    """The reported attack end to end: the source's server is allowed, the VRT names a file and an internal URL."""
    internal = DownloadServer().start()  # not allow-listed: only GDAL could reach it
    try:
        internal.route("/internal.csv", body=f"NUMBER,STREET,LON,LAT\n9,{MARKER},-1,1\n".encode())
        for name, target, layer in (
            ("file", f"CSV:{secret}", "secret"),
            ("url", f"CSV:/vsicurl/{internal.url('/internal.csv')}", "internal"),
        ):
            download_server.route(f"/{name}.xml", body=vrt(target, layer).encode(), content_type="application/xml")
            entry = {"name": "city", "data": download_server.url(f"/{name}.xml"), "protocol": "http"}
            entry["conform"] = {"format": "xml", **ADDRESS}
            source = write_source(tmp_path / name / "sources" / "us" / "or" / "x.json", {"addresses": [entry]})
            out = tmp_path / name / "out"
            allow = {"OA_CI_ALLOW_HOSTS": f"127.0.0.1:{download_server.server_address[1]}"}
            done = run_process_command(source, "addresses", out, "--public-hosts-only", env=allow)
            folder = out / "addresses" / "us/or/x" / "city"
            state = json.loads((folder / "state.json").read_text())
            assert done.returncode == 1, done.stderr
            assert state["source_problem"] == "Could not conform source data"
            assert "is an OGR VRT (a GDAL file that reads other datasets)" in state["problem_detail"]
            assert state["files"]["output"] is None and not (folder / "out.geojson").exists()
            assert MARKER not in done.stderr + done.stdout + (folder / "log.txt").read_text()
        assert internal.requests == []
    finally:
        internal.stop()


# ---------------------------------------------------------------------------------- the driver the format names


@pytest.mark.parametrize(
    ("name", "fmt", "content", "found"),
    [
        ("data.xml", "xml", '{"type": "FeatureCollection", "features": []}', "JSON (GeoJSON?)"),
        ("data.gml", "xml", "<html><body>moved</body></html>", "an HTML page"),
        ("data.gpkg", "gpkg", "NUMBER,STREET\n1,A\n", "text (CSV?)"),
        ("data.gpkg", "gpkg", '<?xml version="1.0"?>\n<!-- x -->\n<wfs:FeatureCollection/>', "XML with root element"),
    ],
)
def test_a_file_of_another_format_is_a_problem_naming_the_format_found(
    tmp_path: Path, name: str, fmt: str, content: str, found: str
) -> None:
    path = run_folder(tmp_path) / name
    path.write_text(content)
    with pytest.raises(ConformError, match=re.escape(f"{name} is {found}")):
        conform(path, fmt)


def test_a_gdb_that_is_a_folder_of_shapefiles_is_not_read_by_another_driver(tmp_path: Path) -> None:
    folder = run_folder(tmp_path) / "data.gdb"
    folder.mkdir()
    write_layer(folder / "a.shp", [{"NUMBER": "1", "STREET": "A"}], ["POINT (1 1)"], driver="ESRI Shapefile")
    with pytest.raises(ConformError, match=r"data\.gdb is a folder, not the OpenFileGDB data"):
        conform(folder, "gdb")


def test_a_file_name_gdal_would_read_as_an_archive_path_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pyogrio reads `a!b.gpkg` as member `b.gpkg` of archive `a`: a relative path, in the working directory."""
    outside = tmp_path / "outside"
    outside.mkdir()
    write_layer(outside / "b.gpkg", [{"NUMBER": "1", "STREET": MARKER}], ["POINT (1 1)"], driver="GPKG")
    monkeypatch.chdir(outside)
    ours = write_layer(
        run_folder(tmp_path) / "ours.gpkg", [{"NUMBER": "2", "STREET": "OURS"}], ["POINT (1 1)"], driver="GPKG"
    )
    path = ours.rename(ours.with_name("a!b.gpkg"))
    with pytest.raises(ConformError, match=r"a!b\.gpkg: GDAL would read this file name as an archive or URL"):
        conform(path, "gpkg")


# ---------------------------------------------------------------------------------- GDAL's network and other files


def test_gdal_opens_no_vsicurl_or_vsis3_path_even_when_asked_directly(
    internal: DownloadServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second line of defence, should a future driver or option name a network path."""
    import pyogrio.errors

    from oa_dagster.conform import gdal_sandbox

    gdal_sandbox.apply()
    monkeypatch.setenv("AWS_S3_ENDPOINT", f"127.0.0.1:{internal.server_address[1]}")
    monkeypatch.setenv("AWS_HTTPS", "NO")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "worker-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "worker-secret")
    for path in (f"/vsicurl/{internal.url('/internal.gpkg')}", "/vsis3/bucket/internal.gpkg"):
        with pytest.raises(pyogrio.errors.DataSourceError):
            pyogrio.read_info(path)
    assert internal.requests == []


def test_only_the_formats_drivers_are_left_after_the_sandbox() -> None:
    import pyogrio

    from oa_dagster.conform import gdal_sandbox

    gdal_sandbox.apply()
    assert set(pyogrio.list_drivers()) == {"GML", "KML", "GPKG", "OpenFileGDB", "ESRI Shapefile"}
    assert pyogrio.get_gdal_config_option("GML_SKIP_RESOLVE_ELEMS") == "ALL"


GML = """<?xml version="1.0" encoding="utf-8"?>
{doctype}<wfs:FeatureCollection xmlns:wfs="http://www.opengis.net/wfs" xmlns:ogr="http://ogr.maptools.org/"
 xmlns:gml="http://www.opengis.net/gml" xmlns:xlink="http://www.w3.org/1999/xlink"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" {location}>
 <gml:featureMember><ogr:pts fid="p1"><ogr:geometryProperty><gml:Point>
 <gml:coordinates>-122.1,37.5</gml:coordinates></gml:Point></ogr:geometryProperty><ogr:NUMBER>{number}</ogr:NUMBER>
 <ogr:STREET xlink:href="{href}">MAIN ST</ogr:STREET></ogr:pts></gml:featureMember>
</wfs:FeatureCollection>
"""


def gml(doctype: str = "", location: str = "", number: str = "1", href: str = "#p1") -> str:
    return GML.format(doctype=doctype, location=location, number=number, href=href)


def test_gml_naming_a_wfs_schema_on_an_internal_server_makes_no_request(
    tmp_path: Path, internal: DownloadServer
) -> None:
    """GDAL downloads a WFS DescribeFeatureType schema by default: a blind request to any address."""
    schema = internal.url("/wfs?SERVICE=WFS&amp;VERSION=1.0.0&amp;REQUEST=DescribeFeatureType&amp;TYPENAME=ogr:pts")
    path = run_folder(tmp_path) / "data.gml"
    path.write_text(gml(location=f'xsi:schemaLocation="http://ogr.maptools.org/ {schema}"'))
    count, _ = conform(path, "xml")
    assert count == 1 and internal.requests == []


def test_an_xsd_in_the_archive_including_an_internal_url_makes_no_request(
    tmp_path: Path, internal: DownloadServer
) -> None:
    folder = run_folder(tmp_path)
    (folder / "data.gml").write_text(gml(location='xsi:schemaLocation="http://ogr.maptools.org/ data.xsd"'))
    (folder / "data.xsd").write_text(
        '<?xml version="1.0"?><xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" '
        'targetNamespace="http://ogr.maptools.org/">'
        f'<xs:include schemaLocation="{internal.url("/types.xsd")}"/>'
        f'<xs:import namespace="http://x" schemaLocation="{internal.url("/import.xsd")}"/>'
        f'<xs:include schemaLocation="/vsicurl/{internal.url("/vsi.xsd")}"/></xs:schema>'
    )
    with contextlib.suppress(ConformError):  # the schema is broken without its includes; nothing may be fetched
        conform(folder / "data.gml", "xml")
    assert internal.requests == []


def test_gml_xlink_href_to_an_internal_server_is_not_resolved(tmp_path: Path, internal: DownloadServer) -> None:
    path = run_folder(tmp_path) / "data.gml"
    path.write_text(gml(href=internal.url("/linked.gml#p9")))
    count, output = conform(path, "xml")
    assert count == 1 and "MAIN ST" in output and internal.requests == []


@pytest.mark.parametrize("target", ["file", "url"])
def test_xml_external_entities_in_gml_are_not_resolved(
    tmp_path: Path, secret: Path, internal: DownloadServer, target: str
) -> None:
    system = f"file://{secret}" if target == "file" else internal.url("/internal.csv")
    doctype = f'<!DOCTYPE wfs:FeatureCollection [<!ENTITY leak SYSTEM "{system}">]>\n'
    path = run_folder(tmp_path) / "data.gml"
    path.write_text(gml(doctype=doctype, number="&leak;"))
    try:
        _, output = conform(path, "xml")
    except ConformError as refused:
        output = str(refused)
    assert MARKER not in output and internal.requests == []


# ---------------------------------------------------------------------------------- .prj and conform.srs


def _shapefile_with_prj(folder: Path, proj4: str) -> Path:
    shp = write_layer(
        folder / "data.shp", [{"NUMBER": "1", "STREET": "A"}], ["POINT (500000 4000000)"], driver="ESRI Shapefile"
    )
    wkt = (
        'PROJCS["x",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],PRIMEM["Greenwich",0],'
        'UNIT["degree",0.0174532925199433]],PROJECTION["Transverse_Mercator"],PARAMETER["latitude_of_origin",0],'
        'PARAMETER["central_meridian",-123],PARAMETER["scale_factor",0.9996],PARAMETER["false_easting",500000],'
        f'PARAMETER["false_northing",0],UNIT["metre",1],EXTENSION["PROJ4","{proj4}"]]'
    )
    (folder / "data.prj").write_text(wkt)
    return shp


@pytest.mark.parametrize("grid", ["file", "url"])
def test_a_prj_naming_a_grid_file_or_url_is_refused_before_proj_opens_it(
    tmp_path: Path, internal: DownloadServer, grid: str
) -> None:
    outside = tmp_path / "outside.gtx"
    outside.write_bytes(b"\0" * 64)
    name = str(outside) if grid == "file" else "@" + internal.url("/grid.tif")
    shp = _shapefile_with_prj(run_folder(tmp_path), f"+proj=utm +zone=10 +datum=WGS84 +nadgrids={name} +units=m")
    with pytest.raises(ConformError, match=r"names a grid or init file \(\+nadgrids="):
        conform(shp, "shapefile")
    assert internal.requests == []


def test_a_conform_srs_naming_an_init_file_is_refused(tmp_path: Path, secret: Path) -> None:
    path = run_folder(tmp_path) / "data.csv"
    path.write_text("NUMBER,STREET,X,Y\n1,A,500000,4000000\n")
    with pytest.raises(ConformError, match=r"names a grid or init file \(\+init="):
        conform(path, "csv", lon="X", lat="Y", srs=f"+init={secret}:1")


def test_an_xml_source_naming_a_kml_file_is_read_and_its_network_link_is_not_followed(
    tmp_path: Path, internal: DownloadServer
) -> None:
    """Real `xml` sources name `.kml` files: OGR's KML reader reads them, and fetches no linked document."""
    path = run_folder(tmp_path) / "data.kml"
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?><kml xmlns="http://www.opengis.net/kml/2.2"><Document><Placemark>'
        "<name>MAIN ST</name><description>1</description><Point><coordinates>6.3,51.2</coordinates></Point></Placemark>"
        f"<NetworkLink><Link><href>{internal.url('/linked.kml')}</href></Link></NetworkLink></Document></kml>"
    )
    count, output = conform(path, "xml", number="Description", street="Name")
    assert count == 1 and '"number":"1","street":"MAIN ST"' in output and internal.requests == []
