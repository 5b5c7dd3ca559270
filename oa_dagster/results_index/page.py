"""index.html: the download page (what openaddresses.io's results page gives people), one static file.

Everything is inline (no CDN, no external font or script), and every link is a store key relative to the store
root, so the same file works through the download app (`/download/index.html`) and straight from a public bucket.
Every string that comes from the sources repository or a run (source keys, names, problems, licences) is escaped.
The script and style are constants, so the download app can allow exactly them by hash (`page_csp`).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from urllib.parse import quote

from oa_dagster.collections.keys import LICENCE_LABELS

from .collections_found import AREA_LABELS, Collection
from .entry_status import FAILED, FAILING, GOOD, HELD, NOT_RUN, SKIPPED, STATUS_MEANING, STATUSES, EntryStatus
from .keys import INDEX_JSON, LICENSES_JSON, STATE_TXT

PAGE_STYLE = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:78rem;padding:1rem 1.5rem;
color:#1d232a;background:#fff}
h1{font-size:1.6rem;margin:.4rem 0}h2{margin-top:2rem;border-bottom:2px solid #dbe2ea;padding-bottom:.2rem}
a{color:#0b5cad}code{background:#f1f4f7;padding:0 .25rem;border-radius:3px}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem}
th,td{border-bottom:1px solid #e3e8ee;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f1f4f7;position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums}td.when{white-space:nowrap}
.muted{color:#5d6b78;font-size:.9em}
.status{display:inline-block;padding:0 .45rem;border-radius:.6rem;font-size:.85em;background:#e3e8ee}
.status-good{background:#d3f0d9;color:#11542a}.status-held{background:#fdf1c7;color:#6b4e00}
.status-failing{background:#fde2cc;color:#7a3100}.status-failed{background:#f9d2d2;color:#7d1111}
.maps{display:grid;grid-template-columns:repeat(auto-fit,minmax(20rem,1fr));gap:1rem}
.maps img{width:100%;height:auto;border:1px solid #dbe2ea}
figure{margin:0;min-width:0}input[type=search]{font-size:1rem;padding:.35rem .5rem;width:min(32rem,100%)}
"""

PAGE_SCRIPT = """
(function () {
  var input = document.getElementById("filter");
  var shown = document.getElementById("shown");
  var none = document.getElementById("no-match");
  var rows = Array.prototype.slice.call(document.querySelectorAll("#entry-table tbody tr"));
  var texts = rows.map(function (row) { return row.textContent.toLowerCase(); });
  function apply() {
    var words = input.value.toLowerCase().split(/\\s+/).filter(Boolean);
    var count = 0;
    for (var i = 0; i < rows.length; i++) {
      var match = words.every(function (word) { return texts[i].indexOf(word) !== -1; });
      rows[i].hidden = !match;
      if (match) { count++; }
    }
    shown.textContent = count + " of " + rows.length + " entries shown";
    none.hidden = count !== 0;
  }
  var timer = null;
  input.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(apply, 60); });
  apply();
})();
"""


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def page_csp(image_sources: Sequence[str] = ()) -> str:
    """The Content-Security-Policy for index.html: only its own script and style run; images from the store.

    `image_sources`: origins the page's images may be redirected to (an S3 endpoint behind the download app).
    """
    images = " ".join(("'self'", "data:", *image_sources))  # data: only for the empty icon (no /favicon.ico asked)
    return (
        f"default-src 'none'; img-src {images}; style-src {_hash(PAGE_STYLE)}; script-src {_hash(PAGE_SCRIPT)}; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def _href(key: str) -> str:
    return escape(quote(key, safe="/"), quote=True)


def _a(key: str, text: str) -> str:
    return f'<a href="{_href(key)}">{escape(text)}</a>'


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"  # unreachable: the loop returns at GB


def _when(iso: str | None) -> str:
    return escape(iso.replace("T", " ")[:16]) if iso else ""


def _count(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


def _collection_cell(collection: Collection | None) -> str:
    if collection is None:
        return '<td class="muted">—</td>'
    labels = {"zip": "zip", "parquet": "GeoParquet"}
    links = " · ".join(
        f'{_a(f.key, labels.get(f.format, f.format))} <span class="muted">{human_size(f.size)}</span>'
        for f in collection.files
    )
    counts = f"{_count(collection.entries, 'entry', 'entries')}, {_count(collection.features, 'feature', 'features')}"
    if collection.missing:
        counts += f", {collection.missing:,} never good"
    return f'<td>{links}<br><span class="muted">{counts}</span></td>'


def collections_section(collections: Sequence[Collection]) -> str:
    if not collections:
        return "<p>No collections have been built yet.</p>"
    parts = []
    for layer in dict.fromkeys(c.layer for c in collections):
        cells = {(c.area, c.licence): c for c in collections if c.layer == layer}
        areas = list(AREA_LABELS) + sorted({area for area, _ in cells} - set(AREA_LABELS))
        head = "".join(f"<th>{escape(label)}</th>" for label in LICENCE_LABELS.values())
        body = "".join(
            f"<tr><th scope=row>{escape(AREA_LABELS.get(area, area))}</th>"
            + "".join(_collection_cell(cells.get((area, licence))) for licence in LICENCE_LABELS)
            + "</tr>"
            for area in areas
        )
        parts.append(
            f'<h3>{escape(layer)}</h3><table class="collections"><thead><tr><th>Area</th>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>"
        )
    return "".join(parts)


def maps_section(maps: Mapping[str, str]) -> str:
    if not maps:
        return "<p>No coverage maps have been rendered yet.</p>"
    figures = "".join(
        f'<figure><a href="{_href(key)}"><img src="{_href(key)}" alt="Coverage map: {escape(name)}"></a>'
        f"<figcaption>{escape(name.upper() if name == 'usa' else name.title())}</figcaption></figure>"
        for name, key in maps.items()
    )
    return f'<div class="maps">{figures}</div>'


def _entry_files(row: EntryStatus) -> str:
    links = [_a(row.files[role], role) for role in ("output", "sample", "preview") if row.files.get(role)]
    log = row.last_run_log if row.status in (FAILING, FAILED) else row.files.get("log")
    if log:
        links.append(_a(log, "log"))
    return " ".join(links)


def entry_row(row: EntryStatus) -> str:
    features = f"{row.feature_count:,}" if isinstance(row.feature_count, int) else ""
    title = escape(STATUS_MEANING.get(row.status, ""), quote=True)
    status = f'<span class="status status-{escape(row.status.replace(" ", "-"))}" title="{title}">'
    problem = escape(row.problem or "")
    if row.problem_detail:
        problem += f'<br><span class="muted">{escape(row.problem_detail)}</span>'
    return (
        f"<tr><td>{escape(row.source)}</td><td>{escape(row.name)}</td><td>{escape(row.layer)}</td>"
        f"<td>{status}{escape(row.status)}</span></td><td class=num>{features}</td>"
        f"<td class=when>{_when(row.last_good)}</td>"
        f"<td>{problem}</td><td>{_entry_files(row)}</td></tr>"
    )


def headline(rows: Sequence[EntryStatus], generated: str, commit: str | None) -> str:
    """The page's first sentence: what can be downloaded, and every entry counted by what became of it."""
    served = sum(r.feature_count or 0 for r in rows if r.files.get("output"))
    count = {status: sum(1 for r in rows if r.status == status) for status in STATUSES}
    parts = [
        f"{count[GOOD]:,} good",
        f"{count[HELD]:,} held by the quality gate",
        f"{count[FAILING] + count[FAILED]:,} failing",
        *([f"{count[NOT_RUN]:,} not run yet"] if count[NOT_RUN] else []),
        f"{count[SKIPPED]:,} skipped (their sources say skip: true)",
    ]
    text = (
        f"{_count(served, 'feature', 'features')} to download. Of {_count(len(rows), 'entry', 'entries')}: "
        f"{', '.join(parts[:-1])} and {parts[-1]}; as of {_when(generated)} UTC"
    )
    return text + (f", sources at <code>{escape(commit)}</code>." if commit else ".")


def render_page(
    *,
    generated: str,
    commit: str | None,
    rows: Sequence[EntryStatus],
    collections: Sequence[Collection],
    maps: Mapping[str, str],
    coverage_files: Mapping[str, str],
) -> str:
    documents: Iterable[tuple[str, str]] = [
        (INDEX_JSON, "index.json"),
        (STATE_TXT, "state.txt"),
        (LICENSES_JSON, "licenses.json"),
        *((key, key.rsplit("/", 1)[-1]) for key in coverage_files.values()),
    ]
    nav = " · ".join(_a(key, label) for key, label in documents)
    table_rows = "\n".join(entry_row(row) for row in rows)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>OpenAddresses data</title>
<link rel="icon" href="data:,">
<style>{PAGE_STYLE}</style>
</head>
<body>
<header>
<h1>OpenAddresses data</h1>
<p>{headline(rows, generated, commit)}</p>
<p>Machine-readable: {nav}</p>
</header>
<section id="collections">
<h2>Collections</h2>
<p class="muted">Every entry's latest good output, by area and licence: a zip (GeoJSON lines, and CSV for addresses)
and one GeoParquet file. Share-alike collections hold only the sources that require it.</p>
{collections_section(collections)}
</section>
<section id="maps">
<h2>Coverage</h2>
{maps_section(maps)}
</section>
<section id="entries">
<h2>Entries</h2>
<p><label for="filter">Filter: </label><input id="filter" type="search" autocomplete="off"
 placeholder="source, layer, status or problem"> <span id="shown" class="muted">{len(rows):,} entries</span></p>
<table id="entry-table">
<thead><tr><th>Source</th><th>Entry</th><th>Layer</th><th>Status</th><th>Features</th><th>Last good</th>
<th>Problem</th><th>Files</th></tr></thead>
<tbody>
{table_rows}
</tbody>
</table>
<p id="no-match" hidden>No entry matches the filter.</p>
</section>
<script>{PAGE_SCRIPT}</script>
</body>
</html>
"""
