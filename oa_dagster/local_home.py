"""The folder `oa-dagster quickstart` sets up and `oa-dagster ui` opens (`.oa-dagster/` by default).

`dagster_home/` holds the Dagster instance (with the local `dagster.yaml`), `data/` the output store (where
`download`, `serve` and `cleanup` look by default, see `resources/deployments.py: local_data_dir`),
`workspace.yaml` the code location the UI loads, and `quickstart.json` what the quickstart was run with (its
sources directory and the port its download links point at), so the UI serves the same sources and links.
No Dagster here: the CLI imports it before deciding whether Dagster is needed.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_HOME = Path(".oa-dagster")
DEFAULT_DOWNLOAD_PORT = 8080  # the download app's port: `oa-dagster serve` and `oa-dagster ui` alike
LOCAL_HOST = "127.0.0.1"
# the local instance configuration, in the checkout this package is installed from (`pip install -e .`)
LOCAL_INSTANCE_CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "local" / "dagster.yaml"
WORKSPACE = """# Written by oa-dagster: the code location `oa-dagster ui` loads (as the repository's workspace.yaml).
load_from:
  - python_module:
      module_name: oa_dagster.definitions
      location_name: oa_dagster
"""


def instance_dir(env: Mapping[str, str]) -> Path:
    """The Dagster instance every command uses, by the data directory's rule: `$DAGSTER_HOME`, else the
    quickstart's `./.oa-dagster/dagster_home` (which may not exist yet)."""
    return Path(env["DAGSTER_HOME"]) if env.get("DAGSTER_HOME") else DEFAULT_HOME / "dagster_home"


def download_url(port: int, host: str = LOCAL_HOST) -> str:
    """The `/download` base of the download app on `port`: what metadata links start with."""
    if host in ("", "0.0.0.0", "::"):  # listening everywhere: a browser on this machine reaches it here
        host = LOCAL_HOST
    return f"http://{host}:{port}/download"


@dataclass(frozen=True)
class Settings:
    """What the quickstart ran with; the UI's defaults."""

    sources: str | None = None  # absolute path of `--sources`, None for the bundled examples
    download_port: int = DEFAULT_DOWNLOAD_PORT


@dataclass(frozen=True)
class LocalHome:
    root: Path

    @classmethod
    def at(cls, path: Path | str) -> LocalHome:
        return cls(Path(path).resolve())

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def workspace(self) -> Path:
        return self.root / "workspace.yaml"

    @property
    def settings_path(self) -> Path:
        return self.root / "quickstart.json"

    def create(self) -> None:
        """The folders, the instance configuration (unless one is there) and the workspace file."""
        self.dagster_home.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(parents=True, exist_ok=True)
        config = self.dagster_home / "dagster.yaml"
        if not config.exists() and LOCAL_INSTANCE_CONFIG.is_file():
            # without one, the UI warns and runs go unqueued, without run monitoring or retries
            shutil.copyfile(LOCAL_INSTANCE_CONFIG, config)
        if not self.workspace.exists() or self.workspace.read_text() != WORKSPACE:
            self.workspace.write_text(WORKSPACE)

    def has_instance_config(self) -> bool:
        return (self.dagster_home / "dagster.yaml").is_file()

    def save_settings(self, settings: Settings) -> None:
        self.settings_path.write_text(json.dumps(settings.__dict__, indent=1) + "\n")

    def load_settings(self) -> Settings:
        """The saved settings; defaults when the quickstart did not save any (or they are unreadable)."""
        try:
            raw: Any = json.loads(self.settings_path.read_text())
        except (OSError, ValueError):
            return Settings()
        if not isinstance(raw, dict):
            return Settings()
        sources = raw.get("sources")
        port = raw.get("download_port")
        return Settings(
            sources=sources if isinstance(sources, str) else None,
            download_port=port if isinstance(port, int) else DEFAULT_DOWNLOAD_PORT,
        )
