"""Where the results index lives in the store, and what each file is served as.

All four sit at the store root beside `runs/`, `latest/`, `collections/` and `coverage/`, so the page can link to
everything with relative keys and work both through the download app (`/download/index.html`) and straight from a
public bucket.
"""

from __future__ import annotations

from oa_dagster.coverage.keys import map_key
from oa_dagster.platform.content_types import content_type

INDEX_HTML = "index.html"
INDEX_JSON = "index.json"
STATE_TXT = "state.txt"
LICENSES_JSON = "licenses.json"

CONTENT_TYPES = {key: content_type(key) for key in (INDEX_HTML, INDEX_JSON, STATE_TXT, LICENSES_JSON)}
ROOT_FILES = tuple(CONTENT_TYPES)

COLLECTIONS_PREFIX = "collections/"
# the coverage maps (and coverage.keys.COVERAGE_FILES): shown on the page when present, listed in index.json
MAPS = {name: map_key(name) for name in ("world", "usa", "europe")}
