"""What a map's colours mean, drawn on the map: the area statuses, the marker, the date and the counts.

A map is looked at on its own (in the Dagster UI, on the download page, as a downloaded file), so it carries its
own key rather than relying on a page around it: a panel on a full-size map (sizes in pixels of a 1920 px wide
map, scaled with it), a strip below a thumbnail (fixed sizes, the smallest that stay legible).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw, ImageFont

LAND = (221, 221, 221)  # #dddddd: land no source covers
MARKER_OUTLINE = (33, 33, 33)
PANEL = (255, 255, 255, 225)
PANEL_BORDER = (120, 120, 120, 255)
TEXT = (29, 35, 42)


@dataclass(frozen=True)
class AreaStatus:
    """How an area is drawn: `light` for countries and states, `dark` for counties and sources' own areas."""

    name: str
    label: str
    light: tuple[int, int, int]
    dark: tuple[int, int, int]


COVERED = AreaStatus("covered", "covered: all entries good", (116, 165, 120), (28, 137, 63))  # the machine's greens
PARTLY = AreaStatus("partly", "partly covered: some failing", (254, 196, 79), (222, 140, 20))
FAILING = AreaStatus("failing", "failing: no good output", (244, 109, 67), (215, 48, 39))  # the machine's reds
STATUSES = (COVERED, PARTLY, FAILING)


def area_status(properties: Mapping[str, Any]) -> AreaStatus:
    """An area of `render-world.geojson`: failing unless good (the machine's `status`), partly covered when some
    of its entries fail while others are good."""
    if properties.get("status") != "good":
        return FAILING
    return PARTLY if properties.get("entries failing") else COVERED


@dataclass
class LegendCounts:
    """What one map shows: areas by status (drawn on it), and its sources and entries."""

    areas: dict[str, int]
    sources: int = 0
    entries_good: int = 0
    entries_failing: int = 0

    @classmethod
    def empty(cls) -> LegendCounts:
        return cls({status.name: 0 for status in STATUSES})

    def add(self, properties: Mapping[str, Any]) -> None:
        self.areas[area_status(properties).name] += 1
        self.sources += int(properties.get("source count") or 0)
        self.entries_good += int(properties.get("entries good") or 0)
        self.entries_failing += int(properties.get("entries failing") or 0)


def _plural(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)  # Pillow's bundled font: no font file to ship or find


def _swatch(draw: ImageDraw.ImageDraw, kind: Any, x: float, y: float, swatch: int, marker: int) -> None:
    """One key at (x, y), `swatch * 2` wide: a status's light and dark colours side by side, land, or the dot."""
    top, bottom = y, y + swatch * 0.8
    if isinstance(kind, AreaStatus):  # regions, then counties and sources' own areas
        draw.rectangle([x, top, x + swatch, bottom], fill=kind.light)
        draw.rectangle([x + swatch, top, x + swatch * 2, bottom], fill=kind.dark)
    elif kind == "marker":
        r, cx, cy = marker / 2, x + swatch, y + swatch * 0.4
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=COVERED.dark, outline=MARKER_OUTLINE, width=2)
    else:
        draw.rectangle([x, top, x + swatch * 2, bottom], fill=kind, outline=PANEL_BORDER)


def _footer(counts: LegendCounts) -> str:
    entries = f"entries: {counts.entries_good:,} good, {counts.entries_failing:,} failing"
    return f"{_plural(counts.sources, 'source', 'sources')}; {entries}"


def _when(as_of: str | None) -> str:
    return as_of.replace("T", " ")[:16] + " UTC" if as_of else ""


def draw_legend(image: Image.Image, counts: LegendCounts, as_of: str | None, corner: str, marker: int) -> Image.Image:
    """The legend in a panel at `corner` ("bottom-left" or "top-left") of a full-size map; returns the new image."""
    scale = image.width / 1920
    size, pad, swatch = round(22 * scale), round(14 * scale), round(24 * scale)
    font, small = _font(size), _font(round(18 * scale))
    title = f"Coverage as of {_when(as_of)}" if as_of else "Coverage"
    rows: list[tuple[Any, str]] = [
        *((s, f"{s.label} ({_plural(counts.areas[s.name], 'area', 'areas')})") for s in STATUSES),
        (LAND, "not covered"),
        ("marker", "too small to see: a dot"),
    ]
    footer = _footer(counts)
    line = round(size * 1.45)
    text_width = max(font.getlength(title), *(font.getlength(text) for _, text in rows), small.getlength(footer))
    width = round(pad * 3 + swatch * 2 + text_width)
    height = round(pad * 2 + line * (len(rows) + 1) + size * 1.3)
    margin = round(16 * scale)
    left, top = margin, margin if corner == "top-left" else image.height - height - margin
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    draw.rectangle(
        [left, top, left + width, top + height], fill=PANEL, outline=PANEL_BORDER, width=max(1, round(scale))
    )
    x, y = left + pad, top + pad
    draw.text((x, y), title, font=font, fill=TEXT)
    for kind, text in rows:
        y += line
        _swatch(draw, kind, x, y, swatch, marker)
        draw.text((x + swatch * 2 + pad, y), text, font=font, fill=TEXT)
    draw.text((x, y + line), footer, font=small, fill=TEXT)
    return Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")


def add_legend_strip(image: Image.Image, counts: LegendCounts, as_of: str | None, marker: int) -> Image.Image:
    """A thumbnail's legend, in a strip below the map (a panel on the map would hide a third of it): the keys in
    two lines, then the date and the counts; returns the taller image."""
    size, pad, swatch = 11, 5, 10
    font = _font(size)
    line = round(size * 1.5)
    lines: list[list[tuple[Any, str]]] = [
        [(s, f"{s.name} ({counts.areas[s.name]:,})") for s in STATUSES],
        [(LAND, "not covered"), ("marker", "too small to see: a dot")],
    ]
    height = pad * 2 + line * (len(lines) + 1)
    out = Image.new("RGB", (image.width, image.height + height), (255, 255, 255))
    out.paste(image, (0, 0))
    draw = ImageDraw.Draw(out)
    draw.line([0, image.height, image.width, image.height], fill=PANEL_BORDER[:3])
    y = image.height + pad
    for keys in lines:
        x = pad
        for kind, text in keys:
            _swatch(draw, kind, x, y + 2, swatch, marker)
            draw.text((x + swatch * 2 + 4, y), text, font=font, fill=TEXT)
            x += swatch * 2 + 4 + font.getlength(text) + 3 * pad
        y += line
    when = _when(as_of)
    draw.text((pad, y), f"{when} · {_footer(counts)}" if when else _footer(counts), font=font, fill=TEXT)
    return out
