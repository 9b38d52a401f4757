"""The two clients that apply a connection's HTTP settings: ``requests`` and ``aiohttp``.

The worker's client is a ``requests`` session; the triggerer's shares one ``aiohttp`` session per
connection and event loop. Both apply :class:`~._settings.HttpSettings` as they are.

Imported only when a request is made: it pulls in requests and aiohttp, which DAG files that
merely use the operators should not pay for at parse time.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import os
import ssl
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp
import requests

from airflow_grok_video.exceptions import GrokVideoAPIError
from airflow_grok_video.hooks._failures import aiohttp_error, describe, not_built, requests_error
from airflow_grok_video.hooks._settings import HttpSettings, config_error


class Answer(NamedTuple):
    """
    What the API sent back to one request.

    :param status: the HTTP status.
    :param body: the raw body.
    :param retry_after: the ``Retry-After`` header, if any.
    """

    status: int
    body: bytes
    retry_after: str | None


def with_client(headers: Mapping[str, str], client: str) -> dict[str, str]:
    """
    The headers with the HTTP library named at the end of the ``User-Agent``.

    :param headers: the connection's headers.
    :param client: the library and its version, e.g. ``aiohttp/3.11.0``.
    """
    user_agent = headers.get("User-Agent")
    return {**headers, "User-Agent": f"{user_agent} {client}" if user_agent else client}


# -- the worker's client: requests --------------------------------------------------------------


class SyncClient:
    """
    A ``requests`` session applying a connection's :class:`HttpSettings`, and nothing else.

    The session does not read the environment (``trust_env`` is off): the settings already did.

    :param settings: the resolved settings.
    """

    def __init__(self, settings: HttpSettings) -> None:
        self.settings = settings
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.headers.update(with_client(settings.headers, f"python-requests/{requests.__version__}"))
        proxies = {} if settings.proxy is None else {"http": settings.proxy, "https": settings.proxy}
        cert: str | tuple[str, str | None] | None = settings.cert
        if settings.cert is not None and settings.cert[1] is None:
            cert = settings.cert[0]
        self._options: dict[str, Any] = {
            "timeout": (settings.connect_timeout, settings.read_timeout),
            "proxies": proxies,
            "verify": settings.verify,
            "cert": cert,
        }

    def __repr__(self) -> str:
        return f"SyncClient(base_url={self.settings.base_url!r})"

    def request(self, method: str, path: str, body: dict[str, Any] | None, what: str) -> Answer:
        """
        Send one request; every failure becomes a :class:`GrokVideoAPIError` that quotes no header.

        A ``POST`` (a create) never follows a redirect: its 3xx answer is returned as it is (what a
        redirect after a billed create means is the billing table's to say), and following it
        could turn the create into a ``GET`` or send it, key and all, to another host.

        :param method: the HTTP method.
        :param path: the path under the base URL.
        :param body: the JSON body, if any.
        :param what: the call, for messages.
        """
        try:
            request = self.session.prepare_request(
                requests.Request(method, self.settings.base_url + path, json=body)
            )
        except (requests.RequestException, ValueError, TypeError) as exc:
            raise not_built(exc, what) from None  # its text may quote a header
        try:
            response = self.session.send(request, allow_redirects=method != "POST", **self._options)
            content = response.content
        except requests.exceptions.InvalidHeader as exc:
            raise not_built(exc, what) from None
        except requests.RequestException as exc:
            raise requests_error(exc, what) from exc
        except ValueError as exc:  # http.client refusing a header quotes it
            raise GrokVideoAPIError(
                f"{what}: the request failed ({type(exc).__name__}; its text is not shown as it may quote "
                "request headers)"
            ) from None
        return Answer(response.status_code, content, response.headers.get("Retry-After"))

    def close(self) -> None:
        """Close the session's connections."""
        self.session.close()


# -- the triggerer's client: aiohttp ------------------------------------------------------------


@dataclass(eq=False)
class _SharedSession:
    session: aiohttp.ClientSession
    users: int = 0


# One aiohttp session per event loop and connection id: every wait on a connection in a triggerer
# shares its connection pool (kept-alive sockets, DNS cache). Sessions hold no credentials (the key
# travels in each request's headers) and no cookies. The registry holds the sessions weakly (their
# clients hold them): a session refers to its loop, so holding it here would keep dead loops alive.
_SESSIONS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, weakref.ref[_SharedSession]]] = (
    weakref.WeakKeyDictionary()
)


def _acquire_session(loop: asyncio.AbstractEventLoop, conn_id: str) -> _SharedSession:
    sessions = _SESSIONS.setdefault(loop, {})
    ref = sessions.get(conn_id)
    shared = None if ref is None else ref()
    if shared is None or shared.session.closed:
        shared = _SharedSession(aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()))
        sessions[conn_id] = weakref.ref(shared)
    shared.users += 1
    return shared


def _release_session(loop: asyncio.AbstractEventLoop, conn_id: str, shared: _SharedSession) -> bool:
    """Give a session back; ``True`` when that was its last user."""
    shared.users -= 1
    if shared.users > 0:
        return False
    sessions = _SESSIONS.get(loop, {})
    ref = sessions.get(conn_id)
    if ref is not None and ref() is shared:
        del sessions[conn_id]
    if not sessions:
        _SESSIONS.pop(loop, None)
    return True


@dataclass(frozen=True, eq=False)
class AsyncClient:
    """
    Everything a query needs, resolved once: the shared session, the settings, the options.

    A client belongs to the event loop it was opened in. Its session is shared by every client
    of the same connection in that loop; :meth:`close` gives it back, and the last one out
    closes it.

    :param conn_id: the connection id the session is shared under.
    :param loop: the event loop the client belongs to.
    :param shared: the shared session.
    :param settings: the connection's resolved settings.
    :param options: keyword arguments of each ``session.get`` (headers with the key, proxy, TLS, timeout).
    """

    conn_id: str
    loop: asyncio.AbstractEventLoop
    shared: _SharedSession
    settings: HttpSettings
    options: dict[str, Any] = field(repr=False)

    def __repr__(self) -> str:
        return f"AsyncClient(base_url={self.settings.base_url!r})"

    @property
    def session(self) -> aiohttp.ClientSession:
        """The ``aiohttp`` session this client uses."""
        return self.shared.session

    @classmethod
    def open(cls, conn_id: str, settings: HttpSettings) -> AsyncClient:
        """
        Join the running loop's shared session of the connection and apply ``settings`` to it.

        The TLS context is built once per CA bundle and certificate files (and rebuilt when one of
        them changes), so queries do no file I/O.

        :param conn_id: the connection id.
        :param settings: the connection's resolved settings.
        """
        headers = with_client(settings.headers, f"aiohttp/{aiohttp.__version__}")
        options: dict[str, Any] = {
            "timeout": aiohttp.ClientTimeout(
                total=None, sock_connect=settings.connect_timeout, sock_read=settings.read_timeout
            ),
        }
        if settings.tls:
            options["ssl"] = tls_context(conn_id, settings)
        if settings.proxy is not None:
            options["proxy"] = _without_userinfo(settings.proxy)
            authorization = _proxy_authorization(settings.proxy)
            if authorization is not None and settings.tls:
                options["proxy_headers"] = {"Proxy-Authorization": authorization}  # on the CONNECT
            elif authorization is not None:
                headers["Proxy-Authorization"] = authorization  # on the forwarded request
        options["headers"] = headers
        loop = asyncio.get_running_loop()
        return cls(conn_id, loop, _acquire_session(loop, conn_id), settings, options)

    async def get(self, path: str, what: str) -> Answer:
        """
        Send one GET; every failure becomes a :class:`GrokVideoAPIError` that quotes no header.

        :param path: the path under the base URL.
        :param what: the call, for messages.
        """
        try:
            async with self.session.get(self.settings.base_url + path, **self.options) as response:
                return Answer(response.status, await response.read(), response.headers.get("Retry-After"))
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise aiohttp_error(exc, what) from exc
        except ValueError as exc:  # building the request: its text may quote a header
            raise not_built(exc, what) from None

    async def close(self) -> None:
        """Give the shared session back; the last client of the connection in its loop closes it."""
        if not _release_session(self.loop, self.conn_id, self.shared):
            return
        if self.loop is asyncio.get_running_loop() or self.loop.is_closed():
            await self.session.close()  # a closed loop took its sockets along: nothing is awaited on it
        elif self.loop.is_running():
            asyncio.run_coroutine_threadsafe(self.session.close(), self.loop)


def tls_context(conn_id: str, settings: HttpSettings) -> ssl.SSLContext:
    """
    The TLS context the async path uses, from the same CA bundle and client certificate as ``requests``.

    :param conn_id: the connection id, for messages.
    :param settings: the resolved settings.
    :raises GrokVideoAPIError: (not sent) when a file cannot be loaded.
    """
    files = [f for f in (settings.verify or None, *(settings.cert or ())) if f]
    try:
        stamps = tuple(os.stat(f).st_mtime_ns for f in files)
        return _tls_context(settings.verify, settings.cert, stamps)
    except (OSError, ssl.SSLError) as exc:
        raise config_error(
            conn_id, f"its TLS files (the extras verify and cert) could not be loaded ({describe(exc)})"
        ) from None


@functools.lru_cache(maxsize=32)
def _tls_context(
    verify: str | Literal[False], cert: tuple[str, str | None] | None, stamps: tuple[int, ...]
) -> ssl.SSLContext:
    """
    Build (once per files and their modification times) a client TLS context.

    :param verify: the CA bundle, or ``False`` not to verify the server.
    :param cert: the client certificate and its key, if any.
    :param stamps: the files' modification times: a changed file builds a new context.
    """
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif os.path.isdir(verify):
        context = ssl.create_default_context(capath=verify)
    else:
        context = ssl.create_default_context(cafile=verify)
    if cert is not None:
        context.load_cert_chain(cert[0], cert[1])
    return context


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _proxy_authorization(proxy: str) -> str | None:
    """A proxy URL's credentials as a ``Proxy-Authorization`` value, as ``requests`` sends them."""
    parts = urlsplit(proxy)
    if parts.username is None:
        return None
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    return "Basic " + base64.b64encode(pair.encode("latin-1")).decode("ascii")
