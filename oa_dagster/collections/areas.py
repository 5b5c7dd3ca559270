"""The machine's nine collection areas and its membership rules (spec §1.6), kept as the machine had them.

A source belongs to an area by its key (its path under `sources/` without `.json`, e.g. `us/ca/berkeley`):
a US state code matches `us/<st>` and keys under it, also in the legacy flat form `us-<st>-...`; a country code
matches `<cc>` and keys under it (`<cc>/`, `<cc>.`, `<cc>-`). Every source is in `global`; sources outside every
list (most of Africa, ch, no, ru, ua, ...) are in `global` only. Deliberately kept quirks: Iceland is in Asia and
the US is not in `north_america`.
"""

from __future__ import annotations


def _codes(text: str) -> tuple[str, ...]:
    """Codes written as the spec lists them, space-separated."""
    return tuple(text.split())


US_NORTHEAST = _codes("ct me ma nh ri vt nj ny pa")
US_MIDWEST = _codes("il in mi oh wi ia ks mn mo ne nd sd")
US_SOUTH = _codes("de fl ga md nc sc va dc wv al ky ms ar la ok tx tn")
US_WEST = _codes("az co id mt nv nm ut wy ak ca hi or wa")
EUROPE = _codes("be bg cz dk de ee ie el es fr hr it cy lv lt lu hu mt nl at pl pt ro si sk fi se uk gr gb")
ASIA = _codes(
    "af am az bh bd bt bn kh cn cx cc io ge hk in id ir iq il jp jo kz kp kr kw kg la lb mo my mv mn mm np om pk "
    "ph qa sa sg lk sy tw tj th tr tm ae uz vn ye ps as au nz ck fj pf gu ki mp mh fm um nr nc nu nf pw pg sb tk "
    "to tv vu wf ws is"
)
SOUTH_AMERICA = _codes("ar bo br cl co ec gf gy pe py sr uy ve")
NORTH_AMERICA = _codes(
    "ai ag aw bs bb bz bm bq vg ca ky cr cu cw dm do sv gl gd gp gt ht hn jm mq mx pm ms kn ni pa pr sx lc vc tt tc vi"
)

# area id -> (label, US state codes, country codes); `global` has no lists: it takes every source
AREAS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "global": ("Global", (), ()),
    "us_northeast": ("U.S. Northeast", US_NORTHEAST, ()),
    "us_midwest": ("U.S. Midwest", US_MIDWEST, ()),
    "us_south": ("U.S. South", US_SOUTH, ()),
    "us_west": ("U.S. West", US_WEST, ()),
    "europe": ("Europe", (), EUROPE),
    "asia": ("Asia/Oceania", (), ASIA),
    "south_america": ("South America", (), SOUTH_AMERICA),
    "north_america": ("North America (except U.S.)", (), NORTH_AMERICA),
}
AREA_IDS: tuple[str, ...] = tuple(AREAS)


def is_us_state(state: str, source_key: str) -> bool:
    """`us/<st>`, anything under `us/<st>/` or `us/<st>.`, or the same with `-` (legacy flat names)."""
    for sep in ("/", "-"):
        base = f"us{sep}{state}"
        if source_key == base or source_key.startswith((base + ".", base + sep)):
            return True
    return False


def is_country(iso: str, source_key: str) -> bool:
    """`<cc>` itself or a key starting `<cc>.`, `<cc>/` or `<cc>-`."""
    return source_key == iso or source_key.startswith((iso + ".", iso + "/", iso + "-"))


def in_area(area: str, source_key: str) -> bool:
    if area not in AREAS:
        raise KeyError(f"unknown collection area {area!r} (areas: {', '.join(AREA_IDS)})")
    if area == "global":
        return True
    _, states, countries = AREAS[area]
    key = source_key.lower()
    return any(is_us_state(st, key) for st in states) or any(is_country(cc, key) for cc in countries)


def areas_of(source_key: str) -> list[str]:
    """Every area a source belongs to, `global` first."""
    return [area for area in AREA_IDS if in_area(area, source_key)]


def area_label(area: str) -> str:
    return AREAS[area][0]
