"""Where coverage writes in the store (cheap to import: the assets and the results index read these names)."""

STATS_KEY = "coverage/stats.json"
RENDER_GEOJSON_KEY = "coverage/render-world.geojson"
LOST_SOURCES_KEY = "coverage/lost-sources.json"
# the coverage asset's documents, by role (what write_coverage returns, what the results index links to)
COVERAGE_FILES = {"geojson": RENDER_GEOJSON_KEY, "stats": STATS_KEY, "lost_sources": LOST_SOURCES_KEY}


def map_key(name: str) -> str:
    """The PNG of one map: `world`, `usa` or `europe`."""
    return f"coverage/render-{name}.png"


def thumbnail_key(name: str) -> str:
    """The same map drawn small, for the Dagster UI (what `coverage_maps` metadata shows in place)."""
    return f"coverage/render-{name}-thumbnail.png"
