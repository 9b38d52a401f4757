"""Network failures of either client, and the one rule for a failure that proves nothing reached the API.

:func:`requests_error` and :func:`aiohttp_error` share :func:`never_reached`: only such a
failure makes a create safe to send again.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator

import aiohttp
import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from airflow_grok_video.exceptions import GrokVideoAPIError

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
    handshake failed or did not finish (a certificate the client does not trust, or that the server
    refused, or a tunnel dropped during the handshake), or the proxy refused the connection or its
    ``CONNECT`` tunnel. Anything else (a reset, a read
    timeout, a disconnect after the request was written) may have reached it.

    :param exc: a ``requests`` or ``aiohttp`` failure.
    """
    causes = list(_causes(exc))
    if any(_tls_refused(cause) or _raised_in_tls_handshake(cause) for cause in causes):
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


def _raised_in_tls_handshake(cause: BaseException) -> bool:
    """
    Whether ``cause`` was raised while the TLS handshake was under way, so before any request byte.

    A tunnel that a proxy accepts and then drops, or a server that closes during the handshake, ends
    in an error inside ``SSLSocket.do_handshake`` (``requests``; ``aiohttp`` says
    ``ClientConnectorError``). The request is written only once the handshake has finished.
    """
    if not isinstance(cause, OSError):  # ssl.SSLError and ConnectionResetError among them
        return False
    frame = cause.__traceback__
    while frame is not None:
        code = frame.tb_frame.f_code
        if code.co_name == "do_handshake" and code.co_filename == ssl.__file__:
            return True
        frame = frame.tb_next
    return False


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
            f"{what}: the request could not be made ({describe(exc)})", transient=False, sent=False
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
    return GrokVideoAPIError(f"{what}: {text} ({describe(exc)})", transient=True, sent=reason is None)


def not_built(exc: BaseException, what: str) -> GrokVideoAPIError:
    return GrokVideoAPIError(
        f"{what}: the request could not be built, so nothing was sent ({type(exc).__name__}; its text is "
        "not shown as it may quote request headers)",
        transient=False,
        sent=False,
    )


def describe(exc: BaseException) -> str:
    text = str(exc)
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
