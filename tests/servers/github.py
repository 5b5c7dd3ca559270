"""A fake GitHub REST API for CI job tests: pull requests and their files, comparisons, file contents at a ref,
commit statuses, issue comments and collaborator permissions. It records every request in order as
(method, path, JSON body) and can answer 5xx or rate limits on demand; with a token set it answers 401 to
any other credentials, like GitHub. `delay` makes every answer that much slower (a GitHub answering in 0.25 s),
`pause` holds chosen requests until released, and `most_at_once` counts the requests it answered concurrently.
With a GitHub App (`add_app`) it issues installation tokens at `POST /app/installations/<id>/access_tokens` for a
JWT it verifies with the App's public key, and accepts those tokens until they expire."""

from __future__ import annotations

import io
import json
import secrets
import tarfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

MAX_PR_FILES = 3000  # what GitHub lists at most


@dataclass
class FakePull:
    number: int
    files: list[dict[str, Any]]
    head_sha: str
    base_sha: str
    head_ref: str = "feature"
    base_ref: str = "master"
    author: str = "contributor"
    state: str = "open"


@dataclass
class FakeApp:
    """A GitHub App as GitHub knows it: its id, public key and installation; the tokens it was given."""

    app_id: str
    public_key: str  # PEM
    installation_id: int
    token_lifetime: float = 3600.0  # GitHub's: one hour
    issued: dict[str, float] = field(default_factory=dict)  # token -> expiry (epoch seconds)
    jwt_claims: list[dict[str, Any]] = field(default_factory=list)  # of every token request accepted

    def valid(self, authorization: str | None) -> bool:
        token = (authorization or "").removeprefix("Bearer ").removeprefix("token ")
        return self.issued.get(token, 0.0) > time.time()

    def access_token(self, path: str, authorization: str | None) -> tuple[int, dict[str, Any]]:
        """`POST /app/installations/<id>/access_tokens`: as GitHub, 401 unless a JWT signed by the App's key,
        issued by its id, valid now and for at most 10 minutes."""
        import jwt

        if path != f"/app/installations/{self.installation_id}/access_tokens":
            return 404, {"message": "Not Found"}
        try:
            claims = jwt.decode(
                (authorization or "").removeprefix("Bearer "),
                self.public_key,
                algorithms=["RS256"],
                options={"require": ["iat", "exp", "iss"]},
            )
        except jwt.PyJWTError as exc:
            return 401, {"message": f"A JSON web token could not be decoded ({type(exc).__name__})"}
        if str(claims["iss"]) != self.app_id or claims["exp"] - claims["iat"] > 600:
            return 401, {"message": "'Issuer' claim ('iss') must be the App's id, expiry at most 10 minutes"}
        self.jwt_claims.append(claims)
        token = "ghs_" + secrets.token_hex(16)
        self.issued[token] = expires = time.time() + self.token_lifetime
        return 201, {"token": token, "expires_at": datetime.fromtimestamp(expires, UTC).isoformat()}


@dataclass
class _Failure:
    status: int
    headers: dict[str, str]
    message: str


def sources_tarball(repo: str, sha: str, sources: dict[str, Any]) -> bytes:
    """What `GET /repos/<repo>/tarball/<ref>` answers: `git archive`'s gzipped tar with the commit in its pax
    comment, one top folder, `sources/<key>.json` per source (JSON data, or raw bytes)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT, pax_headers={"comment": sha}) as tar:
        top = f"{repo.replace('/', '-')}-{sha[:7]}"
        for key, data in sources.items():
            raw = data if isinstance(data, bytes) else json.dumps(data).encode()
            info = tarfile.TarInfo(f"{top}/sources/{key}.json")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return buffer.getvalue()


def file_entry(filename: str, status: str = "modified", previous_filename: str | None = None) -> dict[str, Any]:
    """One item of GitHub's PR files / compare `files` list."""
    item: dict[str, Any] = {"filename": filename, "status": status, "additions": 1, "deletions": 0}
    if previous_filename:
        item["previous_filename"] = previous_filename
    return item


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeGitHubServer

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        url = urlsplit(self.path)
        server = self.server
        with server.lock:
            server.received.append((method, url.path, body))
            server.seen_headers.append(dict(self.headers.items()))
            failure = server.failures.pop(0) if server.failures else None
            server.in_flight += 1
            server.most_at_once = max(server.most_at_once, server.in_flight)
            pauses = [
                event for (m, suffix), event in server.pauses.items() if m == method and url.path.endswith(suffix)
            ]
        try:
            for event in pauses:
                event.wait(server.pause_timeout)
            if server.delay:
                time.sleep(server.delay)
            self._answer(method, url, body, failure)
        finally:
            with server.lock:
                server.in_flight -= 1

    def _answer(self, method: str, url: Any, body: Any, failure: _Failure | None) -> None:
        server = self.server
        if failure:
            self._json(failure.status, {"message": failure.message}, failure.headers)
            return
        authorization = self.headers.get("Authorization")
        if server.app is not None and method == "POST" and url.path.startswith("/app/"):
            with server.lock:
                self._json(*server.app.access_token(url.path, authorization))
            return
        if (server.token or server.app) and not (
            (server.token and authorization in (f"Bearer {server.token}", f"token {server.token}"))
            or (server.app and server.app.valid(authorization))
        ):
            self._json(401, {"message": "Bad credentials"})
            return
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        parts = [unquote(part) for part in url.path.strip("/").split("/")]
        if len(parts) < 4 or parts[0] != "repos":
            self._json(404, {"message": "Not Found"})
            return
        repo, rest = f"{parts[1]}/{parts[2]}", parts[3:]
        with server.lock:
            answer = server.answer(method, repo, rest, query, body)
        if answer is None:
            self._json(404, {"message": "Not Found"})
        elif isinstance(answer[1], bytes):
            self._reply(answer[0], answer[1], {"Content-Type": "application/vnd.github.raw+json"})
        else:
            self._json(*answer)

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._reply(status, json.dumps(data).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FakeGitHubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, token: str | None = None, bot_login: str = "oa-bot[bot]") -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.token = token
        self.bot_login = bot_login  # the author of comments posted through the API
        self.lock = threading.Lock()
        self.pulls: dict[tuple[str, int], FakePull] = {}
        self.compares: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        self.contents: dict[tuple[str, str, str], bytes] = {}
        self.tarballs: dict[tuple[str, str], bytes] = {}
        self.statuses: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.comments: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self.permissions: dict[tuple[str, str], str] = {}
        self.received: list[tuple[str, str, Any]] = []
        self.seen_headers: list[dict[str, str]] = []
        self.failures: list[_Failure] = []
        self.delay = 0.0  # seconds added to every answer
        self.pauses: dict[tuple[str, str], threading.Event] = {}
        self.pause_timeout = 10.0
        self.in_flight = 0
        self.most_at_once = 0
        self.app: FakeApp | None = None
        self._next_id = 1000
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    # ---- arranging ----------------------------------------------------------------------------------------

    def add_pull(self, repo: str, number: int, files: list[dict[str, Any]], **kwargs: Any) -> FakePull:
        kwargs.setdefault("head_sha", f"{number:040x}")
        kwargs.setdefault("base_sha", "b" * 40)
        self.pulls[(repo, number)] = FakePull(number, files, **kwargs)
        return self.pulls[(repo, number)]

    def add_app(self, app_id: str, public_key: str, installation_id: int, **options: Any) -> FakeApp:
        self.app = FakeApp(app_id, public_key, installation_id, **options)
        return self.app

    def add_compare(self, repo: str, base: str, head: str, files: list[dict[str, Any]]) -> None:
        self.compares[(repo, base, head)] = files

    def add_file(self, repo: str, path: str, ref: str, content: bytes | str) -> None:
        self.contents[(repo, path, ref)] = content.encode() if isinstance(content, str) else content

    def add_tarball(self, repo: str, ref: str, body: bytes) -> None:
        self.tarballs[(repo, ref)] = body

    def add_comment(self, repo: str, number: int, body: str, user: str = "someone") -> int:
        return self._comment(repo, number, body, user)["id"]

    def fail_next(self, n: int = 1, status: int = 502) -> None:
        """The next `n` requests, whatever they are, answer `status`."""
        self.failures += [_Failure(status, {}, "Server Error") for _ in range(n)]

    def rate_limit_next(
        self, n: int = 1, *, retry_after: int | None = None, reset: int | None = None, status: int = 403
    ) -> None:
        """The next `n` requests answer a rate limit: `Retry-After: retry_after`, or an exhausted primary limit
        resetting at epoch second `reset`."""
        headers: dict[str, str] = {}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        if reset is not None:
            headers.update({"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)})
        message = "API rate limit exceeded" if reset is not None else "You have exceeded a secondary rate limit"
        self.failures += [_Failure(status, headers, message) for _ in range(n)]

    def pause(self, method: str, path_suffix: str) -> threading.Event:
        """Hold every `method` request whose path ends with `path_suffix` (recorded at once, answered when the
        returned event is set, or after `pause_timeout`)."""
        event = self.pauses[(method, path_suffix)] = threading.Event()
        return event

    def writes(self) -> list[tuple[str, str, Any]]:
        """What was posted or patched, in order."""
        return [request for request in self.received if request[0] != "GET"]

    # ---- answering ----------------------------------------------------------------------------------------

    def answer(
        self, method: str, repo: str, rest: list[str], query: dict[str, str], body: Any
    ) -> tuple[int, Any] | tuple[int, Any, dict[str, str]] | None:
        """(status, JSON data or raw bytes[, headers]) for one request, None for 404."""
        match method, rest:
            case "GET", ["pulls", number]:
                pull = self.pulls.get((repo, int(number)))
                return (200, self._pull_json(repo, pull)) if pull else None
            case "GET", ["pulls", number, "files"]:
                pull = self.pulls.get((repo, int(number)))
                return self._page(pull.files[:MAX_PR_FILES], query) if pull else None
            case "GET", ["compare", spec]:
                base, _, head = spec.partition("...")
                files = self.compares.get((repo, base, head))
                return None if files is None else (200, {"status": "ahead", "files": files[:300]})
            case "GET", ["tarball", ref]:
                tarball = self.tarballs.get((repo, ref))
                return None if tarball is None else (200, tarball)
            case "GET", ["contents", *path]:
                content = self.contents.get((repo, "/".join(path), query.get("ref", "")))
                return None if content is None else (200, content)
            case "POST", ["statuses", sha]:
                if body.get("state") not in ("error", "failure", "pending", "success"):
                    return 422, {"message": "Validation Failed"}
                if len(body.get("description") or "") > 140:
                    return 422, {"message": "Validation Failed: description is too long (maximum is 140 characters)"}
                self.statuses.setdefault((repo, sha), []).append(body)
                return 201, {"id": len(self.statuses[(repo, sha)]), **body}
            case "GET", ["issues", number, "comments"]:
                return self._page(self.comments.get((repo, int(number)), []), query)
            case "POST", ["issues", number, "comments"]:
                return 201, self._comment(repo, int(number), body["body"], self.bot_login)
            case "PATCH", ["issues", "comments", comment_id]:
                for comments in self.comments.values():
                    for comment in comments:
                        if comment["id"] == int(comment_id):
                            if comment["user"]["login"] != self.bot_login:  # as GitHub: only one's own
                                return 403, {"message": "Resource not accessible by integration"}
                            comment["body"] = body["body"]
                            return 200, comment
                return None
            case "GET", ["collaborators", login, "permission"]:
                permission = self.permissions.get((repo, login))
                return None if permission is None else (200, {"permission": permission, "role_name": permission})
        return None

    def _comment(self, repo: str, number: int, body: str, user: str) -> dict[str, Any]:
        self._next_id += 1
        comment = {"id": self._next_id, "body": body, "user": {"login": user}}
        self.comments.setdefault((repo, number), []).append(comment)
        return comment

    def _page(self, items: list[Any], query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        per_page = min(int(query.get("per_page", 30)), 100)
        page = max(int(query.get("page", 1)), 1)
        headers = {}
        if page * per_page < len(items):
            headers["Link"] = f'<{self.url("")}?per_page={per_page}&page={page + 1}>; rel="next"'
        return 200, items[(page - 1) * per_page : page * per_page], headers

    def _pull_json(self, repo: str, pull: FakePull) -> dict[str, Any]:
        return {
            "number": pull.number,
            "state": pull.state,
            "merged": False,
            "user": {"login": pull.author},
            "head": {"sha": pull.head_sha, "ref": pull.head_ref, "repo": {"full_name": repo}},
            "base": {"sha": pull.base_sha, "ref": pull.base_ref, "repo": {"full_name": repo}},
        }

    # ---- running ------------------------------------------------------------------------------------------

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def start(self) -> FakeGitHubServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
