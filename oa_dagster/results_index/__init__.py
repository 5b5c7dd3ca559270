"""The results index (no Dagster): `index.json`, `state.txt`, `licenses.json` and the download page `index.html`
at the store root, built from the current catalog, the pointers, the newest runs and whatever collections and
coverage maps exist (`build.py`). The `results_index` asset (`assets/results_index.py`) only calls it.
"""

from .build import ResultsIndex, build_results_index
from .keys import CONTENT_TYPES, INDEX_HTML, INDEX_JSON, LICENSES_JSON, ROOT_FILES, STATE_TXT

__all__ = [
    "CONTENT_TYPES",
    "INDEX_HTML",
    "INDEX_JSON",
    "LICENSES_JSON",
    "ROOT_FILES",
    "STATE_TXT",
    "ResultsIndex",
    "build_results_index",
]
