"""A Grok video connection's HTTP settings: one reading of its key and extras, for both paths.

:func:`resolve_settings` is the one home of the connection's HTTP rules (the key's header, the
extra headers, the proxy, TLS and the timeouts). Both clients (:mod:`._clients`) apply the
:class:`HttpSettings` it returns, so a connection behaves the same in a worker (``requests``) and
in a triggerer (``aiohttp``). Neither library reads the environment on its own: the proxy and
CA-bundle variables are read here, once.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from airflow.providers.common.compat.sdk import Connection, mask_secret
from requests.utils import DEFAULT_CA_BUNDLE_PATH, select_proxy

from airflow_grok_video import __version__
from airflow_grok_video.exceptions import GrokVideoAPIError, GrokVideoAuthError

#: Every request's ``User-Agent`` starts with the provider and its version (each client adds its own).
USER_AGENT = f"airflow-provider-grok-video/{__version__}"

#: Seconds to wait for a connection when neither the hook nor the connection's ``timeout`` says.
DEFAULT_CONNECT_TIMEOUT = 10.0
#: Seconds to wait for the answer once connected, when neither the hook nor the connection says.
DEFAULT_READ_TIMEOUT = 60.0

#: Extras read as options (``proxy`` and ``verify_ssl`` are the HTTP provider's other spellings).
_OPTIONS = frozenset({"proxies", "proxy", "verify", "verify_ssl", "cert", "timeout", "trust_env"})
#: Extras of the provider's own that are not about HTTP (see ``GrokVideoHook.price``,
#: ``GrokVideoHook.resend_create_on_429`` and ``GrokVideoHook.spend_policy``), never headers.
PROVIDER_EXTRAS = frozenset(
    {"price_per_second", "currency", "resend_create_on_429", "spend_caps", "spend_cap_conn_id"}
)
#: The HTTP provider's other options: not supported here, so ignored rather than sent as headers.
_IGNORED = frozenset(
    {"stream", "allow_redirects", "max_redirects", "check_response", "srv_lookup", "auth_type", "auth_kwargs"}
)
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


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
        headers={"User-Agent": USER_AGENT, **_extra_headers(conn_id, extras), **_bearer(conn)},
        proxy=_proxy_for(conn_id, base_url, extras.get("proxies", extras.get("proxy")), trust_env),
        verify=_verify(conn_id, extras.get("verify", extras.get("verify_ssl", True)), trust_env),
        cert=_cert(conn_id, extras.get("cert")),
        connect_timeout=timeouts[0] if connect_timeout is None else connect_timeout,
        read_timeout=timeouts[1] if read_timeout is None else read_timeout,
        ignored=tuple(sorted(key for key in extras if key in _IGNORED)),
    )


def config_error(conn_id: str, problem: str) -> GrokVideoAPIError:
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
        if name in _OPTIONS or name in _IGNORED or name in PROVIDER_EXTRAS or name.lower() == "authorization":
            continue
        if not name or not set(name) <= _TOKEN_CHARS:
            raise config_error(conn_id, f"the extra {name!r} is neither an option nor a valid header name")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise config_error(conn_id, f"the header {name!r} in the extra must be a string")
        text = str(value).strip()
        problem = _unsendable(text, spaces=True)
        if problem:
            raise config_error(
                conn_id, f"the header {name!r} in the extra contains {problem} (value not shown)"
            )
        headers[name] = text
    return headers


def _flag(conn_id: str, name: str, value: Any) -> bool:
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if not isinstance(value, bool):
        raise config_error(conn_id, f"the extra {name!r} must be true or false")
    return value


def _timeouts(conn_id: str, value: Any) -> tuple[float, float]:
    """The connection's ``timeout`` extra as ``(connect, read)``: seconds for both, or a pair."""
    if value is None:
        return DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT
    pair = value if isinstance(value, list | tuple) else [value, value]
    if len(pair) == 2 and all(_positive_number(part) for part in pair):
        return float(pair[0]), float(pair[1])
    raise config_error(conn_id, "the extra 'timeout' must be seconds (a positive number) or [connect, read]")


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
        raise config_error(
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
        raise config_error(conn_id, "only http:// proxies are supported (a CONNECT tunnel carries the TLS)")
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
        raise config_error(conn_id, "the extra 'verify' must be true, false or the path of a CA bundle")
    if not os.path.exists(value):
        raise config_error(conn_id, f"{source} names a CA bundle that does not exist: {value}")
    return value


def _cert(conn_id: str, value: Any) -> tuple[str, str | None] | None:
    """The client certificate: one file holding certificate and key, or ``[certificate, key]``."""
    if value is None or value == "":
        return None
    files = [value] if isinstance(value, str) else value
    if not isinstance(files, list | tuple) or len(files) not in (1, 2) or not all(map(_is_text, files)):
        raise config_error(conn_id, "the extra 'cert' must be a file path or [certificate file, key file]")
    for path in files:
        if not os.path.exists(path):
            raise config_error(conn_id, f"the extra 'cert' names a file that does not exist: {path}")
    return files[0], files[1] if len(files) == 2 else None


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


@dataclass(frozen=True)
class DownloadSettings:
    """
    What a download from another host (the video's CDN) takes from a connection: its proxy and CA bundle.

    Never the key, the extra headers or the client certificate: those are for the API's host only.

    :param proxy: the proxy for the download's URL (from the ``proxies`` extra or the environment),
        or ``None`` to connect directly.
    :param verify: the CA bundle that verifies the download host's certificate, or ``False`` not to
        verify it.
    """

    proxy: str | None = field(repr=False)
    verify: str | Literal[False]


def resolve_download_settings(conn_id: str, extras: Mapping[str, Any], url: str) -> DownloadSettings:
    """
    Read a connection's proxy and CA-bundle extras for a download from ``url``, as the API's calls read them.

    The same rules as :func:`resolve_settings`: the ``proxies`` extra (chosen for ``url``'s scheme
    and host, ``no_proxy`` honoured), then the ``*_proxy`` environment variables unless
    ``trust_env`` is false; the ``verify`` extra, then ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``.

    :param conn_id: the connection's id, for error messages.
    :param extras: the connection's extras (``{}`` for none: the environment's settings).
    :param url: the URL downloaded.
    :raises GrokVideoAPIError: (not sent, not transient) for an extra that cannot be used.
    """
    trust_env = _flag(conn_id, "trust_env", extras.get("trust_env", True))
    return DownloadSettings(
        proxy=_proxy_for(conn_id, url, extras.get("proxies", extras.get("proxy")), trust_env),
        verify=_verify(conn_id, extras.get("verify", extras.get("verify_ssl", True)), trust_env),
    )
