"""Where the results index lives in the store, and what each file is served as.

All four sit at the store root beside `runs/`, `latest/`, `collections/` and `coverage/`, so the page can link to
everything with relative keys and work both through the download app (`/download/index.html`) and straight from a
public bucket.
"""

from __future__ import annotations

from oa_dagster.coverage.keys import map_key

INDEX_HTML = "index.html"
INDEX_JSON = "index.json"
STATE_TXT = "state.txt"
LICENSES_JSON = "licenses.json"

CONTENT_TYPES = {
    INDEX_HTML: "text/html; charset=utf-8",
    INDEX_JSON: "application/json",
    STATE_TXT: "text/plain; charset=utf-8",
    LICENSES_JSON: "application/json",
}
ROOT_FILES = tuple(CONTENT_TYPES)

COLLECTIONS_PREFIX = "collections/"
# the coverage maps (and coverage.keys.COVERAGE_FILES): shown on the page when present, listed in index.json
MAPS = {name: map_key(name) for name in ("world", "usa", "europe")}
