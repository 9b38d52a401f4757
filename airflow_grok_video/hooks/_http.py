"""The HTTP side of the Grok video hook: one reading of the connection, two clients that apply it.

:func:`resolve_settings` is the one home of the connection's HTTP rules (the key's header, the
extra headers, the proxy, TLS and the timeouts). Both clients apply the :class:`HttpSettings` it
returns, so a connection behaves the same in a worker (:class:`SyncClient`, ``requests``) and in
a triggerer (:class:`AsyncClient`, ``aiohttp``). Neither library reads the environment on its
own: the proxy and CA-bundle variables are read here, once.

:func:`requests_error` and :func:`aiohttp_error` share one rule, :func:`never_reached`, for a
failure that proves nothing reached the API (only such a failure makes a create safe to send
again).

Imported only when a request is made: it pulls in requests and aiohttp, which DAG files that
merely use the operators should not pay for at parse time.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import os
import ssl
import urllib.request
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp
import requests
from airflow.providers.common.compat.sdk import Connection, mask_secret
from requests.utils import DEFAULT_CA_BUNDLE_PATH, select_proxy
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from airflow_grok_video.exceptions import GrokVideoAPIError, GrokVideoAuthError

#: Seconds to wait for a connection when neither the hook nor the connection's ``timeout`` says.
DEFAULT_CONNECT_TIMEOUT = 10.0
#: Seconds to wait for the answer once connected, when neither the hook nor the connection says.
DEFAULT_READ_TIMEOUT = 60.0

#: Extras read as options (``proxy`` and ``verify_ssl`` are the HTTP provider's other spellings).
_OPTIONS = frozenset({"proxies", "proxy", "verify", "verify_ssl", "cert", "timeout", "trust_env"})
#: The HTTP provider's other options: not supported here, so ignored rather than sent as headers.
_IGNORED = frozenset(
    {"stream", "allow_redirects", "max_redirects", "check_response", "srv_lookup", "auth_type", "auth_kwargs"}
)
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


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


# -- the connection's settings ------------------------------------------------------------------


@dataclass(frozen=True)
class HttpSettings:
    """
    A connection's HTTP settings, resolved once; both clients apply them as they are.

    :param base_url: the API's base URL, without a trailing slash.
    :param headers: every request's headers: the connection's extra headers and the key
        (left out of the repr).
    :param proxy: the proxy for the base URL (from the ``proxies`` extra or the environment), or
        ``None`` to connect directly.
    :param verify: the CA bundle (a file or a directory) that verifies the API's certificate, or
        ``False`` not to verify it.
    :param cert: the client certificate's file and its key's file (``None`` when the key is in the
        certificate's file), or ``None`` for no client certificate.
    :param connect_timeout: seconds to wait for a connection.
    :param read_timeout: seconds to wait for the next bytes of the answer once connected.
    :param ignored: the names of the extras that were ignored.
    """

    base_url: str
    headers: Mapping[str, str] = field(repr=False)
    proxy: str | None = field(repr=False)
    verify: str | Literal[False]
    cert: tuple[str, str | None] | None
    connect_timeout: float
    read_timeout: float
    ignored: tuple[str, ...] = ()

    @property
    def tls(self) -> bool:
        """Whether the API is reached over TLS."""
        return self.base_url.startswith("https://")


def resolve_settings(
    conn: Connection,
    base_url: str,
    *,
    connect_timeout: float | None = None,
    read_timeout: float | None = None,
) -> HttpSettings:
    """
    Read a Grok video connection's key and extras into the settings both clients apply.

    Extras: ``proxies`` (as ``requests`` takes them), ``verify`` (a CA bundle path, or false),
    ``cert`` (a client certificate file, or ``[certificate, key]``), ``timeout`` (seconds, or
    ``[connect, read]``) and ``trust_env`` (false ignores the proxy and CA-bundle environment
    variables); every other key is a request header. A timeout given to the hook wins over the
    connection's.

    :param conn: the Grok video connection.
    :param base_url: its base URL.
    :param connect_timeout: the hook's connect timeout; ``None`` defers to the connection.
    :param read_timeout: the hook's read timeout; ``None`` defers to the connection.
    :raises GrokVideoAuthError: when the key is missing or cannot be sent in a header.
    :raises GrokVideoAPIError: (not sent, not transient) for an extra that cannot be used.
    """
    conn_id = str(conn.conn_id)
    extras = conn.extra_dejson
    trust_env = _flag(conn_id, "trust_env", extras.get("trust_env", True))
    timeouts = _timeouts(conn_id, extras.get("timeout"))
    return HttpSettings(
        base_url=base_url,
        headers={**_extra_headers(conn_id, extras), **_bearer(conn)},
        proxy=_proxy_for(conn_id, base_url, extras.get("proxies", extras.get("proxy")), trust_env),
        verify=_verify(conn_id, extras.get("verify", extras.get("verify_ssl", True)), trust_env),
        cert=_cert(conn_id, extras.get("cert")),
        connect_timeout=timeouts[0] if connect_timeout is None else connect_timeout,
        read_timeout=timeouts[1] if read_timeout is None else read_timeout,
        ignored=tuple(sorted(key for key in extras if key in _IGNORED)),
    )


def _config_error(conn_id: str, problem: str) -> GrokVideoAPIError:
    return GrokVideoAPIError(f"Connection {conn_id!r}: {problem}", transient=False, sent=False)


def _bearer(conn: Connection) -> dict[str, str]:
    """The ``Authorization`` header; the key is stripped of surrounding whitespace and never quoted."""
    key = (conn.password or "").strip()
    if not key:
        raise GrokVideoAuthError(
            f"Connection {conn.conn_id!r} has no API key: put the key (sk_...) in its password field",
            sent=False,
        )
    problem = _unsendable(key, spaces=False)
    if problem:
        raise GrokVideoAuthError(
            f"Connection {conn.conn_id!r}: its API key (the password field) contains {problem}, which "
            "an HTTP header cannot carry, so nothing was sent; enter the key again (it is not shown here)",
            sent=False,
        )
    if key != conn.password:
        mask_secret(key)  # Airflow masks the password as stored, whitespace included
    return {"Authorization": f"Bearer {key}"}


def _unsendable(value: str, *, spaces: bool) -> str | None:
    """
    What in ``value`` an HTTP header value cannot carry, or ``None``; never quotes the value.

    :param value: the header value.
    :param spaces: whether inner spaces and tabs are allowed.
    """
    for char in value:
        if char in "\r\n":
            return "a line break"
        if char in " \t" and not spaces:
            return "whitespace"
        if ord(char) < 0x20 or ord(char) == 0x7F:
            return "a control character"
        if ord(char) > 0x7E:
            return "a non-ASCII character"
    return None


def _extra_headers(conn_id: str, extras: Mapping[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in extras.items():
        if name in _OPTIONS or name in _IGNORED or name.lower() == "authorization":
            continue
        if not name or not set(name) <= _TOKEN_CHARS:
            raise _config_error(conn_id, f"the extra {name!r} is neither an option nor a valid header name")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise _config_error(conn_id, f"the header {name!r} in the extra must be a string")
        text = str(value).strip()
        problem = _unsendable(text, spaces=True)
        if problem:
            raise _config_error(
                conn_id, f"the header {name!r} in the extra contains {problem} (value not shown)"
            )
        headers[name] = text
    return headers


def _flag(conn_id: str, name: str, value: Any) -> bool:
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if not isinstance(value, bool):
        raise _config_error(conn_id, f"the extra {name!r} must be true or false")
    return value


def _timeouts(conn_id: str, value: Any) -> tuple[float, float]:
    """The connection's ``timeout`` extra as ``(connect, read)``: seconds for both, or a pair."""
    if value is None:
        return DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT
    pair = value if isinstance(value, list | tuple) else [value, value]
    if len(pair) == 2 and all(_positive_number(part) for part in pair):
        return float(pair[0]), float(pair[1])
    raise _config_error(conn_id, "the extra 'timeout' must be seconds (a positive number) or [connect, read]")


def _positive_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _proxy_for(conn_id: str, base_url: str, configured: Any, trust_env: bool) -> str | None:
    """
    The proxy for the base URL, chosen as ``requests`` chooses it.

    The ``proxies`` extra wins, key by key, over the ``*_proxy`` environment variables, which are
    skipped for hosts that ``NO_PROXY`` (or a ``no_proxy`` key of the extra) names.
    """
    if configured is None:
        configured = {}
    if not isinstance(configured, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in configured.items()
    ):
        raise _config_error(
            conn_id,
            'the extra \'proxies\' must map schemes to proxy URLs, e.g. {"https": "http://proxy:3128"}',
        )
    proxies = {k: v for k, v in configured.items() if k != "no_proxy"}
    if trust_env:
        environment = urllib.request.getproxies_environment()
        no_proxy = configured.get("no_proxy") or environment.pop("no", None) or ""
        parts = urlsplit(base_url)
        host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
        if not urllib.request.proxy_bypass_environment(host, {"no": no_proxy}):  # type: ignore[attr-defined]
            for scheme, url in environment.items():
                proxies.setdefault(scheme, url)
    chosen = select_proxy(base_url, proxies)
    if not chosen:
        return None
    proxy = chosen if "://" in chosen else f"http://{chosen}"
    if urlsplit(proxy).scheme != "http":
        raise _config_error(conn_id, "only http:// proxies are supported (a CONNECT tunnel carries the TLS)")
    return proxy


def _verify(conn_id: str, value: Any, trust_env: bool) -> str | Literal[False]:
    """The CA bundle that verifies the API, as ``requests`` picks it; ``False`` not to verify."""
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        value = value.strip().lower() == "true"
    if value is False:
        return False
    source = "the extra 'verify'"
    if value is True:
        environment = os.environ if trust_env else {}
        variable = next((v for v in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE") if environment.get(v)), None)
        source = f"the environment variable {variable}"
        value = DEFAULT_CA_BUNDLE_PATH if variable is None else environment[variable]
    if not isinstance(value, str) or not value.strip():
        raise _config_error(conn_id, "the extra 'verify' must be true, false or the path of a CA bundle")
    if not os.path.exists(value):
        raise _config_error(conn_id, f"{source} names a CA bundle that does not exist: {value}")
    return value


def _cert(conn_id: str, value: Any) -> tuple[str, str | None] | None:
    """The client certificate: one file holding certificate and key, or ``[certificate, key]``."""
    if value is None or value == "":
        return None
    files = [value] if isinstance(value, str) else value
    if not isinstance(files, list | tuple) or len(files) not in (1, 2) or not all(map(_is_text, files)):
        raise _config_error(conn_id, "the extra 'cert' must be a file path or [certificate file, key file]")
    for path in files:
        if not os.path.exists(path):
            raise _config_error(conn_id, f"the extra 'cert' names a file that does not exist: {path}")
    return files[0], files[1] if len(files) == 2 else None


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


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
        self.session.headers.update(settings.headers)
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
            raise _not_built(exc, what) from None  # its text may quote a header
        try:
            response = self.session.send(request, **self._options)
            content = response.content
        except requests.exceptions.InvalidHeader as exc:
            raise _not_built(exc, what) from None
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
        headers = dict(settings.headers)
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
            raise _not_built(exc, what) from None

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
        raise _config_error(conn_id, f"its TLS files could not be loaded ({_describe(exc)})") from None


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


# -- failures ---------------------------------------------------------------------------------------

#: OpenSSL reasons that end a TLS handshake: the server never got the request.
_HANDSHAKE_REASONS = frozenset(
    {
        "CERTIFICATE_VERIFY_FAILED",
        "WRONG_VERSION_NUMBER",
        "UNSUPPORTED_PROTOCOL",
        "NO_PROTOCOLS_AVAILABLE",
        "NO_SHARED_CIPHER",
        "SSLV3_ALERT_HANDSHAKE_FAILURE",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "TLSV1_ALERT_UNKNOWN_CA",
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "TLSV1_ALERT_ACCESS_DENIED",
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    }
)

_CONNECT = "could not connect to the API, so nothing reached it"
_TLS = "the TLS handshake failed (check the connection's verify and cert extras), so nothing reached the API"
_PROXY = "the proxy refused the connection or could not be reached, so nothing reached the API"


def never_reached(exc: BaseException) -> str | None:
    """
    Why a failed request certainly never reached the API, or ``None`` when it may have.

    It never did when the connection was refused or timed out, the host was not found, the TLS
    handshake failed (a certificate the client does not trust, or that the server refused), or
    the proxy refused the connection or its ``CONNECT`` tunnel. Anything else (a reset, a read
    timeout, a disconnect after the request was written) may have reached it.

    :param exc: a ``requests`` or ``aiohttp`` failure.
    """
    causes = list(_causes(exc))
    if any(_tls_refused(cause) for cause in causes):
        return _TLS
    if any(_proxy_refused(cause) for cause in causes):
        return _PROXY
    if any(
        isinstance(
            cause,
            NewConnectionError
            | ConnectTimeoutError
            | requests.ConnectTimeout
            | aiohttp.ClientConnectorError
            | aiohttp.ConnectionTimeoutError,
        )
        for cause in causes
    ):
        return _CONNECT
    return None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it wraps: causes, contexts, urllib3's reasons, exception arguments."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        cause = pending.pop()
        if id(cause) in seen:
            continue
        seen.add(id(cause))
        yield cause
        linked = [cause.__cause__, cause.__context__, getattr(cause, "reason", None), *cause.args]
        pending += [link for link in linked if isinstance(link, BaseException)]


def _tls_refused(cause: BaseException) -> bool:
    if isinstance(cause, aiohttp.ClientConnectorCertificateError | aiohttp.ClientConnectorSSLError):
        return True
    if isinstance(cause, ssl.SSLCertVerificationError | ssl.CertificateError):
        return True
    return isinstance(cause, ssl.SSLError) and cause.reason in _HANDSHAKE_REASONS


def _proxy_refused(cause: BaseException) -> bool:
    # aiohttp: the proxy could not be reached, or answered the CONNECT with an error.
    if isinstance(cause, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError):
        return True
    # requests (urllib3): the proxy could not be reached, or http.client's refused CONNECT.
    if isinstance(cause, requests.exceptions.ProxyError) and any(
        isinstance(c, NewConnectionError | ConnectTimeoutError) for c in _causes(cause) if c is not cause
    ):
        return True
    return type(cause) is OSError and str(cause).startswith("Tunnel connection failed")


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
    if isinstance(exc, _REQUEST_NEVER_MADE):
        return GrokVideoAPIError(
            f"{what}: the request could not be made ({_describe(exc)})", transient=False, sent=False
        )
    return _network_error(exc, what)


def aiohttp_error(exc: aiohttp.ClientError | asyncio.TimeoutError, what: str) -> GrokVideoAPIError:
    """
    Describe an ``aiohttp`` failure, telling whether the request can have reached the server.

    :param exc: the exception.
    :param what: the call, for messages.
    """
    return _network_error(exc, what)


def _network_error(exc: BaseException, what: str) -> GrokVideoAPIError:
    reason = never_reached(exc)
    text = reason or "the connection failed or timed out after the request was sent"
    return GrokVideoAPIError(f"{what}: {text} ({_describe(exc)})", transient=True, sent=reason is None)


def _not_built(exc: BaseException, what: str) -> GrokVideoAPIError:
    return GrokVideoAPIError(
        f"{what}: the request could not be built, so nothing was sent ({type(exc).__name__}; its text is "
        "not shown as it may quote request headers)",
        transient=False,
        sent=False,
    )


def _describe(exc: BaseException) -> str:
    text = str(exc)
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
