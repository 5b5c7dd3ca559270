"""GitHub App authentication: an installation token from the App's id and private key, refreshed before it expires.

A public organisation's bot is a GitHub App, not a user with a personal token: the App signs a short JWT
(RS256, PyJWT) with its private key, trades it at `POST /app/installations/<id>/access_tokens` for an
installation token valid one hour, and uses that like any token. `InstallationTokens` is a token source for
`GitHubClient`: called before each request, it answers the cached token until it is within `refresh_margin`
seconds of its expiry, then fetches a new one (one thread at a time; the others wait and reuse it).

One source per App, installation and API in a process (`installation_tokens`): the CI sensor builds a client on
every tick, and each would otherwise ask GitHub for a new token. The private key and the tokens never appear in
a repr, a message or a log line.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from datetime import datetime

import requests

from .github_api import API_VERSION, DEFAULT_API_URL, GitHubError

JWT_LIFETIME_SECONDS = 540  # GitHub accepts at most 10 minutes
JWT_BACKDATE_SECONDS = 60  # GitHub's advice: issued a minute ago, in case our clock is ahead of theirs
REFRESH_MARGIN_SECONDS = 300.0  # a token is replaced this long before it expires (a request may take a while)


class InstallationTokens:
    """Installation tokens of one GitHub App installation; `token()` (or calling it) gives a valid one."""

    def __init__(
        self,
        app_id: str,
        private_key: str,
        installation_id: int,
        *,
        api_url: str = DEFAULT_API_URL,
        refresh_margin: float = REFRESH_MARGIN_SECONDS,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        session: requests.Session | None = None,
    ) -> None:
        self.app_id = str(app_id)
        self.installation_id = int(installation_id)
        self.api_url = api_url.rstrip("/")
        self.refresh_margin = refresh_margin
        self.timeout = timeout
        self._private_key = private_key
        self._clock = clock
        self._session = session or requests.Session()
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0

    def __repr__(self) -> str:
        return f"InstallationTokens(app {self.app_id}, installation {self.installation_id}, {self.api_url!r})"

    def __call__(self) -> str:
        return self.token()

    def app_jwt(self) -> str:
        """The App's own credential: a JWT signed with its private key, valid for minutes."""
        import jwt  # PyJWT: imported by App deployments only

        now = int(self._clock())
        claims = {"iat": now - JWT_BACKDATE_SECONDS, "exp": now + JWT_LIFETIME_SECONDS, "iss": self.app_id}
        try:
            return jwt.encode(claims, self._private_key, algorithm="RS256")
        except (jwt.PyJWTError, ValueError, TypeError) as exc:  # never the key itself in the message
            reason = f"GitHub App {self.app_id}: the private key cannot sign ({type(exc).__name__})"
            raise GitHubError(None, reason) from None

    def token(self) -> str:
        """A token valid for at least `refresh_margin` more seconds (a new one fetched when needed)."""
        with self._lock:
            if self._token is None or self._expires_at - self._clock() <= self.refresh_margin:
                self._token, self._expires_at = self._fetch()
            return self._token

    def _fetch(self) -> tuple[str, float]:
        path = f"/app/installations/{self.installation_id}/access_tokens"
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": "oa-dagster",
            "Authorization": f"Bearer {self.app_jwt()}",
        }
        try:
            response = self._session.post(self.api_url + path, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise GitHubError(None, f"GitHub App {self.app_id}: {type(exc).__name__} asking for a token") from None
        with response:
            try:
                data = response.json()
            except ValueError:
                data = {}
        if response.status_code != 201 or not isinstance(data, dict) or not data.get("token"):
            message = data.get("message") if isinstance(data, dict) else None
            raise GitHubError(
                response.status_code,
                f"GitHub App {self.app_id} installation {self.installation_id}: no token ({message or 'no message'})",
            )
        expires = datetime.fromisoformat(str(data["expires_at"]).replace("Z", "+00:00")).timestamp()
        return str(data["token"]), expires


_shared: dict[tuple[str, str, int, str], InstallationTokens] = {}
_shared_lock = threading.Lock()


def installation_tokens(api_url: str, app_id: str, private_key: str, installation_id: int) -> InstallationTokens:
    """The process's one token source for this App installation (see the module docstring)."""
    key = (api_url.rstrip("/"), str(app_id), int(installation_id), hashlib.sha256(private_key.encode()).hexdigest())
    with _shared_lock:
        if key not in _shared:
            _shared[key] = InstallationTokens(app_id, private_key, installation_id, api_url=api_url)
        return _shared[key]
