"""The sources repository at a ref: a local directory (default: the bundled examples) or GitHub."""

from pathlib import Path

from .github import GitHubCredentials

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples" / "sources"


class SourcesRepository(GitHubCredentials):
    """Where `source_catalog` reads sources; `kind` is `local` or `github` (signed in as `GitHubCredentials` say:
    optional for a public repository, it raises the API rate limit)."""

    kind: str = "local"
    path: str | None = None  # local: a checkout or its `sources/` directory; None = bundled examples
    repo: str = "openaddresses/openaddresses"
    default_ref: str = "master"

    def local_root(self) -> Path:
        return Path(self.path) if self.path else EXAMPLES_DIR

    def describe(self, ref: str | None = None) -> str:
        if self.kind == "github":
            return f"github:{self.repo}@{ref or self.default_ref}"
        return f"local:{self.local_root()}"
