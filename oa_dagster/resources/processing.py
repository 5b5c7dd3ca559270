"""How runs process entries: fetch knobs, previews, the quality gate's threshold, set batching."""

import tempfile
from pathlib import Path

import dagster as dg

from oa_dagster.platform.entry_processing import EntryOptions
from oa_dagster.platform.set_probing import DEFAULT_PROBE_WORKERS

WORK_DIR_NAME = "oa-dagster-work"  # under the system temp dir when `work_dir` is not set


class ProcessingSettings(dg.ConfigurableResource):
    """Settings every layer run reads; defaults suit a laptop."""

    preview: bool = True
    cache_dir: str | None = None  # content cache for downloads (unchanged files are not re-downloaded)
    work_dir: str | None = None  # scratch space of runs (`oa-run-*` folders); None = <system temp>/oa-dagster-work
    timeout: float = 60.0
    retries: int = 4
    download_deadline: float = 6 * 3600.0  # wall clock for one HTTP/FTP download, retries included (a hung server)
    max_drop: float = 0.5  # quality gate: hold runs losing more than this share of features
    warn_drop: float = 0.1  # asset check warns at this drop from the previous materialization
    batch_target_seconds: float = 120.0  # set runs pack entries up to this much expected work
    batch_max_entries: int = 200
    set_slots: int = 2  # runs of a set at once (the `oa/set` tag limit): batches come in whole rounds of these
    full_refresh_days: float = 28.0  # incremental sets process an entry in full once its output is this old
    probe_workers: int = DEFAULT_PROBE_WORKERS  # a set's planning asks this many upstreams at once (changed? how big?)
    # a layer run on Postgres keeps a few connections instead of one per statement (assets/held_connections.py)
    hold_db_connections: bool = True
    run_max_runtime_seconds: int = 6 * 3600  # `dagster/max_runtime` on set runs (needs run_monitoring)
    # how long a layer run keeps retrying an event write on a lost database connection before failing (retried)
    instance_retry_seconds: float = 300.0

    def work_root(self) -> Path:
        """The one folder all runs' scratch space goes under (what `oa-dagster cleanup` sweeps)."""
        return Path(self.work_dir) if self.work_dir else Path(tempfile.gettempdir()) / WORK_DIR_NAME

    def fetch_options(self):  # -> oa_dagster.fetch.FetchOptions (imported lazily: it pulls in requests)
        from oa_dagster.fetch import FetchOptions

        return FetchOptions(
            cache_dir=Path(self.cache_dir) if self.cache_dir else None,
            timeout=self.timeout,
            retries=self.retries,
            download_deadline=self.download_deadline,
        )

    def entry_options(self) -> EntryOptions:
        """The plain options `platform.entry_processing` takes (it never sees a Dagster resource)."""
        return EntryOptions(
            work_root=self.work_root(),
            preview=self.preview,
            fetch_options=self.fetch_options(),
            max_drop=self.max_drop,
            full_refresh_days=self.full_refresh_days,
        )
