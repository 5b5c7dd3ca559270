"""GitHub App authentication against the fake GitHub: a JWT signed with the App's private key (verified there with
its public key) traded for installation tokens, reused while valid and replaced before they expire; a pull request
checked and reported with them, from the variables an operator sets."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from oa_dagster.ci.github_api import GitHubError
from oa_dagster.ci.github_auth import REFRESH_MARGIN_SECONDS, InstallationTokens
from oa_dagster.resources.deployments import deployment
from oa_dagster.resources.github import GitHubResource
from tests.servers.downloads import DownloadServer
from tests.servers.github import FakeGitHubServer, file_entry
from tests.test_ci_jobs import CSV, HEAD, NUMBER, PATH, REPO, _run, _setup, _source, _states, _tick

APP_ID = "424242"
INSTALLATION = 77


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture(scope="module")
def app_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def app_github(app_key: rsa.RSAPrivateKey) -> Iterator[FakeGitHubServer]:
    """A fake GitHub that knows the App and accepts only its installation tokens."""
    server = FakeGitHubServer().start()
    public = app_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    server.add_app(APP_ID, public.decode(), INSTALLATION)
    yield server
    server.stop()


def test_installation_tokens_are_reused_while_valid_and_replaced_before_they_expire(
    app_github: FakeGitHubServer, app_key: rsa.RSAPrivateKey
) -> None:
    assert app_github.app is not None
    app_github.app.token_lifetime = REFRESH_MARGIN_SECONDS + 2  # valid 2 s beyond the margin
    tokens = InstallationTokens(APP_ID, _pem(app_key), INSTALLATION, api_url=app_github.url())
    first = tokens.token()
    assert tokens.token() == first and len(app_github.app.jwt_claims) == 1  # reused
    claims = app_github.app.jwt_claims[0]
    assert claims["iss"] == APP_ID and claims["exp"] - claims["iat"] <= 600
    time.sleep(2.2)
    refreshed_at = time.time()
    second = tokens.token()
    assert second != first and len(app_github.app.jwt_claims) == 2
    assert app_github.app.issued[first] > refreshed_at  # replaced while the old one still worked
    assert _pem(app_key) not in repr(tokens) and APP_ID in repr(tokens)


def test_a_wrong_key_or_installation_is_refused_with_a_message_that_names_the_app(
    app_github: FakeGitHubServer, app_key: rsa.RSAPrivateKey
) -> None:
    stranger = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    for key, installation in ((stranger, INSTALLATION), (_pem(app_key), INSTALLATION + 1)):
        with pytest.raises(GitHubError) as raised:
            InstallationTokens(APP_ID, key, installation, api_url=app_github.url()).token()
        assert APP_ID in str(raised.value) and "PRIVATE KEY" not in str(raised.value)
    assert raised.value.status == 404 and app_github.app is not None and not app_github.app.issued
    with pytest.raises(GitHubError, match="cannot sign"):
        InstallationTokens(APP_ID, "not a key", INSTALLATION, api_url=app_github.url()).token()


def test_a_pull_request_is_checked_and_reported_as_the_app(
    tmp_path: Path,
    app_github: FakeGitHubServer,
    app_key: rsa.RSAPrivateKey,
    download_server: DownloadServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The variables an operator sets (no GITHUB_TOKEN): the CI sensor runs, statuses and the comment are posted
    with installation tokens, and the production sources repository signs in the same way."""
    env = {
        "OA_ENV": "production",
        "OA_GITHUB_API_URL": app_github.url(),
        "OA_GITHUB_APP_ID": APP_ID,
        "OA_GITHUB_APP_PRIVATE_KEY": _pem(app_key),
        "OA_GITHUB_APP_INSTALLATION_ID": str(INSTALLATION),
        "OA_SOURCES_REPO": REPO,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    chosen = deployment(env).resources
    github: GitHubResource = chosen["github"]
    assert github.token is None and isinstance(github.app_private_key, dg.EnvVar)  # the UI shows the name only
    download_server.route("/addresses.csv", body=CSV.encode(), content_type="text/csv")
    app_github.add_file(REPO, PATH, HEAD, _source(download_server.url("/addresses.csv")))
    port = download_server.server_address[1]
    resources = {
        **_setup(tmp_path, app_github, [file_entry(PATH, "added")], allowed_hosts=f"127.0.0.1:{port}"),
        "github": github.model_copy(update={"retries": 0}),
    }
    with dg.instance_for_test() as instance:
        [request] = _tick(instance, resources).run_requests
        assert _run(instance, resources, request).success
    assert _states(app_github)[-1] == ("success", "1 entry processed: 5 features")
    assert len(app_github.comments[(REPO, NUMBER)]) == 1
    assert app_github.app is not None
    used = {headers.get("Authorization") for headers in app_github.seen_headers if "Authorization" in headers}
    assert used and all(app_github.app.valid(value) or "." in value for value in used)  # tokens, or the JWT
    with dg.build_resources({"sources_repo": chosen["sources_repo"]}) as built:  # EnvVars resolved, as in a run
        assert built.sources_repo.current_token() in app_github.app.issued  # the sources tarball's too

    for missing in ("OA_GITHUB_APP_PRIVATE_KEY", "OA_GITHUB_APP_INSTALLATION_ID"):
        with pytest.raises(ValueError, match=missing):
            deployment({**env, missing: ""})
