"""Telling a host name that does not exist from a network hiccup, so the fetchers do not retry it.

Retrying is for failures that may pass (a refused or reset connection, a 5xx). A resolver that answers "no
such name" (`EAI_NONAME`, `EAI_NODATA`) or fails for good (`EAI_FAIL`) will answer the same in a few seconds,
so the download fails at once with "could not resolve host <name>". `EAI_AGAIN` ("temporary failure in name
resolution": the resolver could not get an answer, e.g. a DNS timeout) is left to the retries.
"""

from __future__ import annotations

import socket

PERMANENT_DNS_ERRORS = frozenset(
    code for code in (socket.EAI_NONAME, socket.EAI_FAIL, getattr(socket, "EAI_NODATA", None)) if code is not None
)


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and the errors it wraps: causes, contexts, and the `reason`/`args` urllib3 and requests nest them in."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo and len(seen) < 20:
        current = todo.pop(0)
        if any(current is s for s in seen):
            continue
        seen.append(current)
        nested = [
            current.__cause__,
            current.__context__,
            getattr(current, "reason", None),
            *(a for a in current.args if isinstance(a, BaseException)),
        ]
        todo += [n for n in nested if isinstance(n, BaseException)]
    return seen


def unresolvable_host(exc: BaseException, default_host: str | None) -> str | None:
    """The host name `exc` says does not resolve, or None when `exc` is no permanent name-resolution failure.

    The name comes from the failed connection when the error carries it (a redirect may lead to another
    host than the URL's), else `default_host`.
    """
    chain = _chain(exc)
    if not any(isinstance(e, socket.gaierror) and e.errno in PERMANENT_DNS_ERRORS for e in chain):
        return None
    for error in chain:
        host = getattr(getattr(error, "conn", None), "host", None)  # urllib3's NameResolutionError
        if isinstance(host, str) and host:
            return host
    return default_host or "(unknown)"


def resolution_message(host: str) -> str:
    return f"could not resolve host {host}"
