"""The HTTP provider's hooks bound to a resolved Grok video connection, and their network errors.

Imported only when a request is made: it pulls in requests, aiohttp and the HTTP provider,
which DAG files that merely use the operators should not pay for at parse time.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from typing import Any

import aiohttp
import requests
from airflow.providers.common.compat.sdk import Connection
from airflow.providers.http.hooks.http import HttpAsyncHook, HttpHook
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from airflow_grok_video.exceptions import GrokVideoAPIError


class _BoundConnection:
    """Hands the HTTP provider's hooks one connection resolved beforehand, so none looks it up again."""

    _bound: Connection

    def get_connection(self, conn_id: str) -> Connection:  # type: ignore[override]
        return self._bound

    async def aget_connection(self, conn_id: str) -> Connection:  # type: ignore[override]
        return self._bound


class SyncHttp(_BoundConnection, HttpHook):
    """
    ``HttpHook`` on a resolved connection whose host is the full base URL.

    :param connection: the connection to use; its ``login`` must be empty (no basic auth).
    :param method: the HTTP method.
    """

    def __init__(self, connection: Connection, method: str) -> None:
        super().__init__(method=method, http_conn_id=connection.conn_id)
        self._bound = connection


class AsyncHttp(_BoundConnection, HttpAsyncHook):
    """
    ``HttpAsyncHook`` on a resolved connection whose host is the full base URL.

    :param connection: the connection to use; its ``login`` must be empty (no basic auth).
    """

    def __init__(self, connection: Connection) -> None:
        super().__init__(method="GET", http_conn_id=connection.conn_id, retry_limit=1)
        self._bound = connection


# requests-only extras the HTTP provider passes on, which aiohttp's request methods refuse.
_NOT_FOR_AIOHTTP = frozenset({"stream", "cert", "trust_env", "check_response"})


@dataclass
class _SharedSession:
    session: aiohttp.ClientSession
    users: int = 0


# One aiohttp session per event loop and connection id: every wait on a connection in a triggerer
# shares its connection pool (kept-alive sockets, DNS cache). Sessions hold no credentials (the key
# travels in each request's headers) and no cookies.
_SESSIONS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _SharedSession]] = (
    weakref.WeakKeyDictionary()
)


def _acquire_session(conn_id: str) -> aiohttp.ClientSession:
    sessions = _SESSIONS.setdefault(asyncio.get_running_loop(), {})
    shared = sessions.get(conn_id)
    if shared is None or shared.session.closed:
        shared = sessions[conn_id] = _SharedSession(
            aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        )
    shared.users += 1
    return shared.session


async def _release_session(conn_id: str, session: aiohttp.ClientSession) -> None:
    sessions = _SESSIONS.get(asyncio.get_running_loop(), {})
    shared = sessions.get(conn_id)
    if shared is not None and shared.session is session:
        shared.users -= 1
        if shared.users > 0:
            return
        del sessions[conn_id]
    await session.close()


@dataclass(frozen=True)
class AsyncClient:
    """
    Everything a query needs, resolved once: the session, the base URL, the headers, the options.

    The session is shared by every client of the same connection in the same event loop (see
    :meth:`open`); :meth:`close` gives it back, and the last one out closes it.

    :param conn_id: the connection id the session is shared under.
    :param session: the ``aiohttp`` session that serves every call.
    :param base_url: the API's base URL.
    :param options: keyword arguments of each ``session.get`` (headers with the key, timeout, extras).
    """

    conn_id: str
    session: aiohttp.ClientSession
    base_url: str
    options: dict[str, Any]

    def __repr__(self) -> str:
        return f"AsyncClient(base_url={self.base_url!r})"

    @classmethod
    async def open(
        cls,
        conn: Connection,
        base_url: str,
        auth: dict[str, str],
        connect_timeout: float,
        read_timeout: float,
    ) -> AsyncClient:
        """
        Resolve the connection's HTTP settings through ``HttpAsyncHook``; join its shared session.

        :param conn: the Grok video connection.
        :param base_url: its base URL.
        :param auth: the ``Authorization`` header.
        :param connect_timeout: seconds to wait for a connection.
        :param read_timeout: seconds to wait for the answer once connected.
        """
        config = await AsyncHttp(http_connection(conn, base_url)).config()
        extras = {k: v for k, v in (config.extra_options or {}).items() if k not in _NOT_FOR_AIOHTTP}
        options = {
            **extras,
            "headers": {**(config.headers or {}), **auth},
            "timeout": aiohttp.ClientTimeout(
                total=connect_timeout + read_timeout, sock_connect=connect_timeout
            ),
        }
        conn_id = str(conn.conn_id)
        return cls(conn_id, _acquire_session(conn_id), config.base_url.rstrip("/"), options)

    async def close(self) -> None:
        """Give the shared session back; the last client of the connection closes it."""
        await _release_session(self.conn_id, self.session)


def http_connection(conn: Connection, base_url: str) -> Connection:
    """
    A copy of ``conn`` as the HTTP hooks should see it: host set to the base URL, no secrets.

    :param conn: the Grok video connection.
    :param base_url: its base URL.
    """
    return Connection(conn_id=conn.conn_id, conn_type="http", host=base_url, extra=conn.extra)


# Raised before anything is sent, for a request that no retry can fix.
_REQUEST_NEVER_MADE = (
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidHeader,
    requests.exceptions.URLRequired,
)


def requests_error(exc: requests.RequestException, what: str) -> GrokVideoAPIError:
    """
    Describe a ``requests`` failure, telling whether the request can have reached the server.

    :param exc: the exception.
    :param what: the call, for messages.
    """
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    never_sent = isinstance(exc, requests.ConnectTimeout) or isinstance(
        reason, NewConnectionError | ConnectTimeoutError
    )
    transient = not isinstance(exc, _REQUEST_NEVER_MADE)
    return GrokVideoAPIError(
        f"{what}: {_network_text(never_sent, transient)} ({_describe(exc)})",
        transient=transient,
        sent=transient and not never_sent,
    )


def aiohttp_error(exc: aiohttp.ClientError | asyncio.TimeoutError, what: str) -> GrokVideoAPIError:
    """
    Describe an ``aiohttp`` failure, telling whether the request can have reached the server.

    :param exc: the exception.
    :param what: the call, for messages.
    """
    never_sent = isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)
    return GrokVideoAPIError(
        f"{what}: {_network_text(never_sent, True)} ({_describe(exc)})",
        transient=True,
        sent=not never_sent,
    )


def _network_text(never_sent: bool, transient: bool) -> str:
    if never_sent:
        return "could not connect to the API"
    if transient:
        return "the connection failed or timed out after the request was sent"
    return "the request could not be made"


def _describe(exc: BaseException) -> str:
    text = str(exc)
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
