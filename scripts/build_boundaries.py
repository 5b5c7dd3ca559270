"""Rebuild the boundaries bundled in `oa_dagster/coverage/data/` from a folder of the published originals.

    python scripts/build_boundaries.py FOLDER

FOLDER holds `world-atlas/` (the npm package world-atlas 2.0.2: `countries-50m.json` and `LICENSE`), `us-atlas/`
(us-atlas 3.0.1: `counties-10m.json` and `LICENSE`) and `naturalearth-lowres/naturalearth_lowres.shp` (Natural
Earth 1:110m admin-0 with `pop_est`, as geopandas 0.14.4 bundled it, with its .dbf/.shx/.prj).

The TopoJSON stays TopoJSON (quantized, shared arcs: far smaller than any per-feature format), gzipped, with the
codes the coverage needs baked into each feature's properties so nothing is looked up at run time:
- world (Natural Earth 1:50m countries and land, world-atlas): `iso_a2`, `iso_a3` (from the ISO numeric id
  through pycountry; Kosovo gets the user-assigned `XK`) and `pop_est` (Natural Earth 1:110m, joined on
  alpha-3, or on the name where Natural Earth writes -99);
- US (Census 2017 counties, states and nation, us-atlas): `usps` for states (the ISO 3166-2 code's suffix,
  found through pycountry by state name).
The licence notices of both packages and the public-domain statements go to `data/NOTICE` beside the files.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path
from typing import Any

import pycountry
import pyogrio.raw

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "oa_dagster" / "coverage" / "data"
WORLD_FILE = "world-countries-50m.topo.json.gz"
US_FILE = "us-counties-10m.topo.json.gz"
# Features world-atlas ships without an ISO numeric id; only Kosovo has a (user-assigned) alpha-2 in common use.
UNNUMBERED = {"Kosovo": ("XK", "XKX")}
CENSUS_NAMES = {"United States Virgin Islands": "Virgin Islands, U.S."}  # the Census's name -> pycountry's


def _country_codes(numeric: str | None, name: str) -> tuple[str | None, str | None]:
    if numeric:
        country = pycountry.countries.get(numeric=numeric)
        if country is not None:
            return country.alpha_2, country.alpha_3
    return UNNUMBERED.get(name, (None, None))


def _populations(shapefile: Path) -> dict[str, int]:
    """alpha-3 -> Natural Earth `pop_est`; rows with iso_a3 -99 are matched on their name."""
    meta, _, _, columns = pyogrio.raw.read(shapefile, read_geometry=False)
    out: dict[str, int] = {}
    for row in (dict(zip(meta["fields"], values, strict=True)) for values in zip(*columns, strict=True)):
        code = str(row["iso_a3"])
        if code == "-99":
            try:
                code = pycountry.countries.lookup(str(row["name"])).alpha_3
            except LookupError:
                code = UNNUMBERED.get(str(row["name"]), (None, ""))[1] or ""
        if code:
            out[code] = int(row["pop_est"])
    return out


def build_world(source: Path, populations: dict[str, int]) -> dict[str, Any]:
    topology = json.loads((source / "world-atlas" / "countries-50m.json").read_text())
    for geometry in topology["objects"]["countries"]["geometries"]:
        props = geometry.setdefault("properties", {})
        alpha2, alpha3 = _country_codes(geometry.get("id"), props.get("name", ""))
        props.update(iso_a2=alpha2, iso_a3=alpha3, pop_est=populations.get(alpha3 or ""))
    return topology


def build_us(source: Path) -> dict[str, Any]:
    topology = json.loads((source / "us-atlas" / "counties-10m.json").read_text())
    for geometry in topology["objects"]["states"]["geometries"]:
        props = geometry.setdefault("properties", {})
        props["usps"] = _usps(props.get("name", ""))
    return topology


def _usps(name: str) -> str:
    """The ISO 3166-2 suffix of a US state or territory named as the Census names it."""
    codes = {sub.code for sub in pycountry.subdivisions.get(country_code="US")}
    by_name = {sub.name: sub.code for sub in pycountry.subdivisions.get(country_code="US")}
    code = by_name.get(name)
    if code is None:  # territories: the Census writes the country's official or common name
        try:
            code = "US-" + pycountry.countries.lookup(CENSUS_NAMES.get(name, name)).alpha_2
        except LookupError:
            code = ""
    if code not in codes:
        raise SystemExit(f"no ISO 3166-2 code for US state {name!r}")
    return code.split("-")[1]


def write_gzip_json(path: Path, value: Any) -> None:
    raw = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    with path.open("wb") as out, gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9, mtime=0) as gz:
        gz.write(raw)


def notice(source: Path) -> str:
    world_licence = (source / "world-atlas" / "LICENSE").read_text().strip()
    us_licence = (source / "us-atlas" / "LICENSE").read_text().strip()
    return f"""Boundaries bundled for the coverage statistics and maps (built by scripts/build_boundaries.py).

{WORLD_FILE}
  Natural Earth 4.1.0 admin-0 countries and land, 1:50m (public domain, https://www.naturalearthdata.com),
  as packaged in the npm package world-atlas 2.0.2 (https://github.com/topojson/world-atlas), ISC licence below.
  Property pop_est: Natural Earth 1:110m admin-0 (public domain), as bundled in geopandas 0.14.4.
  Properties iso_a2 / iso_a3: from the ISO 3166-1 numeric ids through pycountry.

{US_FILE}
  US Census Bureau cartographic boundaries 2017 (public domain), counties, states and nation, 1:10m,
  as packaged in the npm package us-atlas 3.0.1 (https://github.com/topojson/us-atlas), ISC licence below.

world-atlas licence:
{world_licence}

us-atlas licence:
{us_licence}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument(
        "source", metavar="FOLDER", help="holds world-atlas/, us-atlas/ and naturalearth-lowres/ (see above)"
    )
    source = Path(parser.parse_args(argv).source)
    missing = [
        p for p in ("world-atlas/countries-50m.json", "us-atlas/counties-10m.json") if not (source / p).is_file()
    ]
    if missing:
        parser.error(f"{source} has no {', '.join(missing)}")
    populations = _populations(source / "naturalearth-lowres" / "naturalearth_lowres.shp")
    DATA.mkdir(parents=True, exist_ok=True)
    write_gzip_json(DATA / WORLD_FILE, build_world(source, populations))
    write_gzip_json(DATA / US_FILE, build_us(source))
    (DATA / "NOTICE").write_text(notice(source))
    for path in sorted(DATA.iterdir()):
        print(f"{path.name}: {path.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
