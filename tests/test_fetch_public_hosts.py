"""CI jobs download from public addresses only (issue 10): `FetchOptions.public_hosts_only`.

The local test servers are real and listen on 127.0.0.1, so a refusal here is the policy, not a dead port: each
refused case also asserts that no socket connected anywhere (the `socket.connect` audit event) and that the
server saw no request. With the policy off (the default) the other fetch tests prove nothing changed.
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from oa_dagster.fetch.hosts import HostPolicy, non_public, parse_allowed_hosts
from oa_dagster.fetch.options import FetchOptions
from oa_dagster.process import RunState, run_entry
from tests.geofiles import write_source
from tests.servers.arcgis import FakeArcGISServer, FakeLayer, point_features
from tests.servers.downloads import DownloadServer
from tests.servers.ftp import FTPTestServer
from tests.servers.helpers import fast_options, make_entry, run_process_command

DOWNLOAD_PROBLEM = "Could not download source data"
CSV_CONFORM = {"format": "csv", "number": "NUMBER", "street": "STREET", "lon": "LON", "lat": "LAT"}
ESRI_CONFORM = {"format": "geojson", "number": "NUMBER", "street": "STREET"}
CSV = b"NUMBER,STREET,LON,LAT\n1,Main St,-122.1,37.5\n2,Main St,-122.2,37.6\n"
WHY = "CI jobs download from public addresses only (OA_CI_ALLOW_HOSTS names exceptions)"

_recording: list[Any] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.connect" and _recording is not None:
        _recording.append(args[1])


sys.addaudithook(_audit)  # hooks cannot be removed; this one only records while a test asks


@pytest.fixture
def connects() -> Iterator[list[Any]]:
    """Every address a socket connected to (or tried to) during the test."""
    global _recording
    _recording = []
    try:
        yield _recording
    finally:
        _recording = None


def run(
    tmp_path: Path, data: str, *, protocol: str = "http", conform: dict[str, Any] | None = None, **options: Any
) -> RunState:
    """`run_entry` with the CI policy on (and any other options)."""
    entry = make_entry(data, protocol=protocol, conform=conform or dict(CSV_CONFORM))
    options.setdefault("public_hosts_only", True)
    return run_entry(entry, tmp_path / "out", preview=False, fetch_options=fast_options(**options))


def assert_refused(state: RunState, *fragments: str) -> None:
    assert state.source_problem == DOWNLOAD_PROBLEM, state.problem_detail
    assert not state.has_output
    for fragment in (*fragments, WHY, "no connection was made"):
        assert fragment in state.problem_detail, state.problem_detail
    assert "after" not in state.problem_detail  # not retried ("failed after 3 attempts")


# ------------------------------------------------------------------------ refused


def test_loopback_address_is_refused_and_the_server_sees_nothing(
    download_server: DownloadServer, connects: list[Any], tmp_path: Path
) -> None:
    route = download_server.route("/a.csv", body=CSV, content_type="text/csv")
    state = run(tmp_path, download_server.url("/a.csv"))
    assert_refused(state, "address 127.0.0.1 is a loopback address")
    assert route.hits == 0 and connects == []


def test_cloud_metadata_address_is_refused_without_a_connection_attempt(connects: list[Any], tmp_path: Path) -> None:
    state = run(tmp_path, "http://169.254.169.254/latest/meta-data/", connect_timeout=30.0, timeout=30.0)
    assert_refused(state, "address 169.254.169.254 is a link-local address")
    assert connects == []  # no socket was even opened towards it (the audit hook saw none)


@pytest.mark.parametrize(
    ("host", "detail"),
    [
        ("localhost", "host localhost resolves to"),
        ("[::1]", "address ::1 is a loopback address"),
        ("[::ffff:127.0.0.1]", "address ::ffff:7f00:1 is an IPv6 form of 127.0.0.1, a loopback address"),
        ("10.1.2.3", "address 10.1.2.3 is a private address"),
        ("0.0.0.0", "address 0.0.0.0 is the unspecified address"),
        ("100.64.0.1", "a shared (carrier-grade NAT) address"),
        ("[fd00::1]", "a unique local address"),
        ("[fec0::1]", "address fec0::1 is a site-local address (deprecated)"),
    ],
)
def test_non_public_hosts_are_refused(
    download_server: DownloadServer, connects: list[Any], tmp_path: Path, host: str, detail: str
) -> None:
    route = download_server.route("/a.csv", body=CSV, content_type="text/csv")
    state = run(tmp_path, f"http://{host}:{download_server.server_address[1]}/a.csv")
    assert_refused(state, detail)
    assert route.hits == 0 and connects == []


def test_https_to_a_private_address_is_refused(connects: list[Any], tmp_path: Path) -> None:
    state = run(tmp_path, "https://192.168.0.1/a.csv")
    assert_refused(state, "address 192.168.0.1 is a private address")
    assert connects == []


def test_a_name_with_one_private_address_among_public_ones_is_refused(
    monkeypatch: pytest.MonkeyPatch, connects: list[Any], tmp_path: Path
) -> None:
    real = socket.getaddrinfo

    def resolver(host: str, *args: Any, **kwargs: Any) -> list[Any]:
        if host == "mixed.example":  # what a hostile DNS server can answer
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("8.8.8.8", 80)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80)),
            ]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    state = run(tmp_path, "http://mixed.example/a.csv")
    assert_refused(state, "host mixed.example resolves to 127.0.0.1, a loopback address")
    assert connects == []


def test_redirect_from_an_allowed_host_to_a_private_one_is_refused(
    download_server: DownloadServer, connects: list[Any], tmp_path: Path
) -> None:
    other = DownloadServer().start()  # another local server the allowlist does not name
    try:
        target = other.route("/a.csv", body=CSV, content_type="text/csv")
        download_server.route("/latest", redirect=other.url("/a.csv"))
        download_server.route("/metadata", redirect="http://169.254.169.254/latest/meta-data/")
        allowed = parse_allowed_hosts(f"127.0.0.1:{download_server.server_address[1]}")
        state = run(tmp_path / "one", download_server.url("/latest"), allowed_hosts=allowed)
        assert_refused(state, "address 127.0.0.1 is a loopback address")
        assert target.hits == 0
        state = run(tmp_path / "two", download_server.url("/metadata"), allowed_hosts=allowed)
        assert_refused(state, "address 169.254.169.254 is a link-local address")
        assert {port for _, port in connects} == {download_server.server_address[1]}
    finally:
        other.stop()


def test_arcgis_layer_on_a_loopback_address_is_refused(
    arcgis_server: FakeArcGISServer, connects: list[Any], tmp_path: Path
) -> None:
    url = arcgis_server.add_layer("layer", FakeLayer(point_features(5)))
    state = run(tmp_path, url, protocol="ESRI", conform=ESRI_CONFORM)
    assert_refused(state, "address 127.0.0.1 is a loopback address")
    assert connects == []


def test_ftp_on_a_loopback_address_is_refused(
    ftp_server: FTPTestServer, ftp_root: Path, connects: list[Any], tmp_path: Path
) -> None:
    (ftp_root / "a.csv").write_bytes(CSV)
    state = run(tmp_path, ftp_server.url("a.csv"), protocol="ftp")
    assert_refused(state, "address 127.0.0.1 is a loopback address")
    assert connects == []


def test_environment_proxies_are_not_used(
    download_server: DownloadServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # a proxy would connect for us to an address never checked; with the policy on the environment is ignored
    download_server.route("/a.csv", body=CSV, content_type="text/csv")
    monkeypatch.setenv("HTTP_PROXY", "http://169.254.169.254:3128")
    monkeypatch.setenv("NO_PROXY", "")
    allowed = parse_allowed_hosts(f"127.0.0.1:{download_server.server_address[1]}")
    state = run(tmp_path, download_server.url("/a.csv"), allowed_hosts=allowed)
    assert state.source_problem is None and state.feature_count == 2


# ------------------------------------------------------------------------ allowed


def test_allowlisted_local_server_is_used(download_server: DownloadServer, tmp_path: Path) -> None:
    route = download_server.route("/a.csv", body=CSV, content_type="text/csv")
    port = download_server.server_address[1]
    state = run(tmp_path, download_server.url("/a.csv"), allowed_hosts=parse_allowed_hosts(f"127.0.0.1:{port}"))
    assert state.source_problem is None and state.feature_count == 2 and route.hits == 1


def test_allowlist_entry_for_another_port_does_not_allow_this_one(
    download_server: DownloadServer, tmp_path: Path
) -> None:
    route = download_server.route("/a.csv", body=CSV, content_type="text/csv")
    state = run(tmp_path, download_server.url("/a.csv"), allowed_hosts=parse_allowed_hosts("127.0.0.1:1"))
    assert_refused(state, "loopback")
    assert route.hits == 0


def test_allowlisted_host_name_allows_every_address_it_resolves_to(
    download_server: DownloadServer, tmp_path: Path
) -> None:
    download_server.route("/a.csv", body=CSV, content_type="text/csv")
    url = f"http://localhost:{download_server.server_address[1]}/a.csv"
    state = run(tmp_path, url, allowed_hosts=parse_allowed_hosts("localhost"))
    assert state.source_problem is None and state.feature_count == 2


def test_allowlisted_arcgis_and_ftp_servers_work(
    arcgis_server: FakeArcGISServer, ftp_server: FTPTestServer, ftp_root: Path, tmp_path: Path
) -> None:
    url = arcgis_server.add_layer("layer", FakeLayer(point_features(250), max_record_count=100))
    allowed = parse_allowed_hosts(f"127.0.0.1:{arcgis_server.server_address[1]}, 127.0.0.1:{ftp_server.port}")
    state = run(tmp_path / "esri", url, protocol="ESRI", conform=ESRI_CONFORM, allowed_hosts=allowed)
    assert state.source_problem is None and state.feature_count == 250
    (ftp_root / "a.csv").write_bytes(CSV)
    state = run(tmp_path / "ftp", ftp_server.url("a.csv"), protocol="ftp", allowed_hosts=allowed)
    assert state.source_problem is None and state.feature_count == 2


def test_policy_off_by_default(download_server: DownloadServer, tmp_path: Path) -> None:
    assert FetchOptions().public_hosts_only is False and HostPolicy.of(FetchOptions()) is None
    download_server.route("/a.csv", body=CSV, content_type="text/csv")
    state = run(tmp_path, download_server.url("/a.csv"), public_hosts_only=False)
    assert state.source_problem is None and state.feature_count == 2


# ------------------------------------------------------------------------ the pieces


def test_parse_allowed_hosts() -> None:
    assert parse_allowed_hosts(None) == frozenset() and parse_allowed_hosts(" ") == frozenset()
    assert parse_allowed_hosts("Minio:9000, 127.0.0.1 ::1,[::FFFF:127.0.0.1]:8080 mirror.example.") == {
        "minio:9000",
        "127.0.0.1",
        "::1",
        "[::ffff:7f00:1]:8080",
        "mirror.example",
    }
    for bad in ("host:port", "host:0", "[::1", "[::1]x", ":80", "host:99999"):
        with pytest.raises(ValueError, match="allowed host"):
            parse_allowed_hosts(bad)


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "169.254.169.254", "10.0.0.1", "172.16.0.1", "192.168.1.1", "100.64.0.1", "0.0.0.0", "224.0.0.1"]
    + ["240.0.0.1", "255.255.255.255", "::", "::1", "fe80::1", "fc00::1", "ff02::1", "::ffff:10.0.0.1"]
    + ["2002:7f00:1::", "64:ff9b::a9fe:a9fe", "::7f00:1"],
)
def test_non_public_addresses(address: str) -> None:
    import ipaddress

    assert non_public(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses(address: str) -> None:
    import ipaddress

    assert non_public(ipaddress.ip_address(address)) is None


# One address in every block of the IANA special-purpose registries (IPv4 and IPv6) and of the IPv6 address space
# registry's reserved space, with what the registry says: globally reachable (True) or not. Written out here, not
# read from the code's table, so a wrong row in the table fails.
IANA_BLOCKS = [
    ("0.1.2.3", False),  # 0.0.0.0/8 this network
    ("0.0.0.0", False),  # 0.0.0.0/32
    ("10.20.30.40", False),  # 10.0.0.0/8
    ("100.127.255.254", False),  # 100.64.0.0/10 shared address space
    ("127.1.2.3", False),  # 127.0.0.0/8
    ("169.254.1.1", False),  # 169.254.0.0/16
    ("172.31.255.1", False),  # 172.16.0.0/12
    ("192.0.0.1", False),  # 192.0.0.0/24 IETF protocol assignments (and 192.0.0.0/29 DS-Lite)
    ("192.0.0.8", False),  # 192.0.0.8/32 IPv4 dummy address
    ("192.0.0.9", True),  # 192.0.0.9/32 PCP anycast
    ("192.0.0.10", True),  # 192.0.0.10/32 TURN anycast
    ("192.0.0.170", False),  # 192.0.0.170/32 NAT64/DNS64 discovery
    ("192.0.2.1", False),  # 192.0.2.0/24 TEST-NET-1
    ("192.31.196.1", True),  # 192.31.196.0/24 AS112-v4
    ("192.52.193.1", True),  # 192.52.193.0/24 AMT
    ("192.88.99.1", False),  # 192.88.99.0/24 deprecated 6to4 relay anycast
    ("192.168.0.1", False),  # 192.168.0.0/16
    ("192.175.48.1", True),  # 192.175.48.0/24 AS112 direct delegation
    ("198.19.0.1", False),  # 198.18.0.0/15 benchmarking
    ("198.51.100.1", False),  # 198.51.100.0/24 TEST-NET-2
    ("203.0.113.1", False),  # 203.0.113.0/24 TEST-NET-3
    ("239.1.1.1", False),  # 224.0.0.0/4 multicast
    ("250.1.1.1", False),  # 240.0.0.0/4 reserved
    ("255.255.255.255", False),  # limited broadcast
    ("::1", False),  # ::1/128
    ("::", False),  # ::/128
    ("::ffff:192.168.0.1", False),  # ::ffff:0:0/96, carrying a private address
    ("::ffff:8.8.4.4", True),  # ::ffff:0:0/96, carrying a public one
    ("64:ff9b::808:808", True),  # 64:ff9b::/96 NAT64 of 8.8.8.8
    ("64:ff9b::a00:1", False),  # 64:ff9b::/96 NAT64 of 10.0.0.1
    ("64:ff9b:1::1", False),  # 64:ff9b:1::/48 local-use translation
    ("100::1", False),  # 100::/64 discard-only
    ("100:0:0:1::1", False),  # 100:0:0:1::/64 dummy prefix
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # 2001::/32 Teredo
    ("2001:1::1", True),  # PCP anycast
    ("2001:1::2", True),  # TURN anycast
    ("2001:1::3", True),  # DNS-SD SRP anycast
    ("2001:2::1", False),  # 2001:2::/48 benchmarking
    ("2001:3::1", True),  # 2001:3::/32 AMT
    ("2001:4:112::1", True),  # 2001:4:112::/48 AS112-v6
    ("2001:10::1", False),  # 2001:10::/28 deprecated ORCHID
    ("2001:20::1", True),  # 2001:20::/28 ORCHIDv2
    ("2001:30::1", True),  # 2001:30::/28 drone remote ID
    ("2001:100::1", False),  # rest of 2001::/23
    ("2001:db8::1", False),  # 2001:db8::/32 documentation
    ("2002:c0a8:1::1", False),  # 2002::/16 6to4 of 192.168.0.1
    ("2002:808:808::1", True),  # 2002::/16 6to4 of 8.8.8.8
    ("2620:4f:8000::1", True),  # 2620:4f:8000::/48 AS112 direct delegation
    ("3fff::1", False),  # 3fff::/20 documentation
    ("5f00::1", False),  # 5f00::/16 SRv6 SIDs
    ("fc00::1", False),  # fc00::/7 unique local
    ("fdff::1", False),  # fc00::/7 unique local
    ("fe80::1", False),  # fe80::/10 link-local
    ("fec0::1", False),  # fec0::/10 site-local (deprecated; address space registry)
    ("feff::1", False),  # fec0::/10
    ("ff0e::1", False),  # ff00::/8 multicast
    ("4000::1", False),  # reserved by the IETF (outside 2000::/3)
    ("e000::1", False),  # reserved by the IETF
    ("2a00:1450:4001::1", True),  # ordinary global unicast
    ("8.8.8.8", True),
]


@pytest.mark.parametrize(("address", "reachable"), IANA_BLOCKS)
def test_every_iana_special_purpose_block_is_decided_as_the_registry_says(address: str, reachable: bool) -> None:
    import ipaddress

    why = non_public(ipaddress.ip_address(address))
    assert (why is None) == reachable, why


# ------------------------------------------------------------------------ the CLI


def process_cli(tmp_path: Path, data: str, env: dict[str, str]) -> tuple[int, dict[str, Any], str]:
    entry = {"name": "city", "data": data, "protocol": "http", "conform": CSV_CONFORM}
    source = write_source(tmp_path / "sources" / "us" / "or" / "test.json", {"addresses": [entry]})
    out = tmp_path / "out"
    result = run_process_command(source, "addresses", out, "--public-hosts-only", env=env)
    state_file = out / "addresses" / "us/or/test/city" / "state.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    return result.returncode, state, result.stderr


def test_cli_public_hosts_only_flag_and_allowlist(download_server: DownloadServer, tmp_path: Path) -> None:
    route = download_server.route("/a.csv", body=CSV, content_type="text/csv")
    url = download_server.url("/a.csv")
    code, state, stderr = process_cli(tmp_path / "refused", url, {"OA_CI_ALLOW_HOSTS": ""})
    assert code == 1 and state["source_problem"] == DOWNLOAD_PROBLEM and WHY in state["problem_detail"]
    assert route.hits == 0
    allow = {"OA_CI_ALLOW_HOSTS": f"127.0.0.1:{download_server.server_address[1]}"}
    code, state, stderr = process_cli(tmp_path / "allowed", url, allow)
    assert code == 0, stderr
    assert state["source_problem"] is None and route.hits == 1
    code, _, stderr = process_cli(tmp_path / "bad", url, {"OA_CI_ALLOW_HOSTS": "host:port"})
    assert code == 2 and "OA_CI_ALLOW_HOSTS" in stderr
