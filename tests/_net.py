"""Real network parts for the connection tests: a CA of their own, a TLS gateway, a forward proxy.

* :func:`make_pki` writes a CA, a server certificate (``localhost``, ``127.0.0.1``,
  ``gw.example.com``) and a client certificate signed by it.
* :class:`Gateway` is an HTTP(S) front for the emulator, served by ``aiohttp`` in a thread: it
  may terminate TLS (and require a client certificate), strips a path prefix, and records what
  it received.
* :class:`ForwardProxy` is a threaded HTTP proxy: plain-HTTP forwarding and ``CONNECT``
  tunnels, optional Basic credentials, a ``CONNECT`` refusal (or no answer at all) on demand, and
  a record of every request it was asked to make.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import http.client
import ipaddress
import select
import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

GATEWAY_HOST = "gw.example.com"


@dataclass(frozen=True)
class Pki:
    """
    PEM files of a test CA and the certificates it signed.

    :param ca: the CA certificate (a CA bundle of one).
    :param server_cert: the server's certificate.
    :param server_key: the server's key.
    :param client_cert: the client's certificate.
    :param client_key: the client's key.
    :param client_combined: the client's certificate and key in one file.
    """

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client_combined: Path

    def server_context(self, *, require_client_cert: bool = False) -> ssl.SSLContext:
        """
        A server-side TLS context with the server certificate.

        :param require_client_cert: whether clients must present a certificate this CA signed.
        """
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.server_cert, self.server_key)
        if require_client_cert:
            context.load_verify_locations(self.ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context


def make_pki(directory: Path) -> Pki:
    """
    Generate a CA, a server and a client certificate into ``directory``.

    :param directory: where the PEM files are written.
    """
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "grok-video test CA")])
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.DNSName(GATEWAY_HOST),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    server_key, server_cert = _leaf(ca_cert, ca_key, "localhost", ExtendedKeyUsageOID.SERVER_AUTH, sans)
    client_key, client_cert = _leaf(ca_cert, ca_key, "grok-video client", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    paths = Pki(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        client_combined=directory / "client-combined.pem",
    )
    paths.ca.write_bytes(_pem(ca_cert))
    paths.server_cert.write_bytes(_pem(server_cert))
    paths.server_key.write_bytes(_key_pem(server_key))
    paths.client_cert.write_bytes(_pem(client_cert))
    paths.client_key.write_bytes(_key_pem(client_key))
    paths.client_combined.write_bytes(_pem(client_cert) + _key_pem(client_key))
    return paths


def _builder(subject: x509.Name, issuer: x509.Name, key: Any) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
    )


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    name: str,
    purpose: x509.ObjectIdentifier,
    sans: list[x509.GeneralName],
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        _builder(subject, ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


# -- the gateway ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """
    One request a test server received.

    :param method: the HTTP method (``CONNECT`` for a tunnel).
    :param target: the request target: a path, an absolute URL (forwarding) or ``host:port``.
    :param headers: the request's headers, names lower-cased.
    """

    method: str
    target: str
    headers: dict[str, str] = field(default_factory=dict)


class Gateway:
    """
    An HTTP(S) front for an upstream (the emulator): strips ``prefix``, forwards, records.

    A request whose path does not start with ``prefix`` gets a plain 404 that is not the API's
    envelope, so a wrongly built URL fails loudly.

    :param upstream: the upstream base URL, e.g. the emulator's.
    :param prefix: the path prefix the gateway serves the API under, e.g. ``/jimmy``.
    :param ssl_context: serve TLS with this context (plain HTTP when ``None``).
    :param not_found: paths under the prefix that start with this get the same plain 404 (as a
        gateway or CDN that cannot route them would answer), e.g. the query endpoint.
    """

    def __init__(
        self,
        upstream: str,
        *,
        prefix: str = "",
        ssl_context: ssl.SSLContext | None = None,
        not_found: str | None = None,
    ) -> None:
        self.upstream = upstream
        self.prefix = prefix
        self.not_found = not_found
        self.ssl_context = ssl_context
        self.port = 0
        self.seen: list[Seen] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None

    @property
    def base_url(self) -> str:
        """The gateway's base URL on 127.0.0.1, the prefix included."""
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}{self.prefix}"

    def __enter__(self) -> Gateway:
        self._thread = threading.Thread(target=self._run, name="test-gateway", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        self.port = int(runner.addresses[0][1])
        async with aiohttp.ClientSession() as session:
            self._session = session
            self._ready.set()
            await self._stop.wait()
        await runner.cleanup()

    async def _forward(self, request: web.Request) -> web.Response:
        self.seen.append(
            Seen(request.method, request.path_qs, {k.lower(): v for k, v in request.headers.items()})
        )
        path = request.path_qs[len(self.prefix) :]
        if not request.path.startswith(self.prefix + "/") or (
            self.not_found and path.startswith(self.not_found)
        ):
            return web.Response(status=404, text="no such path on this gateway")
        url = self.upstream + path
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
        async with self._session.request(
            request.method, url, data=await request.read(), headers=headers
        ) as answer:
            body = await answer.read()
            keep = {k: v for k, v in answer.headers.items() if k.lower() in ("content-type", "retry-after")}
            return web.Response(status=answer.status, body=body, headers=keep)


# -- the forward proxy ----------------------------------------------------------------------------


class ForwardProxy:
    """
    A threaded HTTP proxy on 127.0.0.1: plain-HTTP forwarding and ``CONNECT`` tunnels.

    :param routes: ``host:port`` -> the ``(host, port)`` really connected to (e.g. a made-up
        gateway name to the local gateway); other targets are connected to as named.
    :param refuse_connect: answer every ``CONNECT`` with this status instead of tunnelling.
    :param credentials: ``(user, password)`` required in ``Proxy-Authorization`` (407 otherwise).
    :param drop_after_connect: accept every ``CONNECT`` ("200 Connection established"), then close
        the tunnel before a byte of the TLS handshake is answered.
    :param hold_connect: never answer a ``CONNECT`` (the TCP connection stays open until the proxy
        stops): a client behind it is stuck before a byte of its request leaves.
    """

    def __init__(
        self,
        *,
        routes: dict[str, tuple[str, int]] | None = None,
        refuse_connect: int | None = None,
        credentials: tuple[str, str] | None = None,
        drop_after_connect: bool = False,
        hold_connect: bool = False,
    ) -> None:
        self.routes = routes or {}
        self.hold_connect = hold_connect
        self.refuse_connect = refuse_connect
        self.drop_after_connect = drop_after_connect
        self.credentials = credentials
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        self.closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The proxy's URL, e.g. ``http://127.0.0.1:3128``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def url_with_credentials(self, user: str, password: str) -> str:
        """
        The proxy's URL with Basic credentials in it.

        :param user: the user name.
        :param password: the password.
        """
        return f"http://{user}:{password}@127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ForwardProxy:
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.closing.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)

    def record(self, seen: Seen) -> None:
        """
        Keep one request.

        :param seen: what was received.
        """
        with self.lock:
            self.seen.append(seen)

    def upstream(self, host: str, port: int) -> tuple[str, int]:
        """
        Where a target really is.

        :param host: the target's host.
        :param port: the target's port.
        """
        return self.routes.get(f"{host}:{port}", (host, port))

    def authorized(self, header: str | None) -> bool:
        """
        Whether a ``Proxy-Authorization`` header carries the required credentials.

        :param header: the header's value.
        """
        if self.credentials is None:
            return True
        expected = base64.b64encode(":".join(self.credentials).encode()).decode()
        return header == f"Basic {expected}"


def _handler_for(proxy: ForwardProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(_ProxyHandler):
        owner = proxy

    return Handler


_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "trailer", "upgrade"}
)


class _ProxyHandler(BaseHTTPRequestHandler):
    owner: ForwardProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet."""

    def _refuse(self, status: int) -> bool:
        self.send_response(status)
        if status == 407:
            self.send_header("Proxy-Authenticate", 'Basic realm="test"')
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        return True

    def _record(self) -> bool:
        """Record the request; answer 407 (and return True) when credentials are missing."""
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.owner.record(Seen(self.command, self.path, headers))
        if not self.owner.authorized(self.headers.get("Proxy-Authorization")):
            return self._refuse(407)
        return False

    def do_CONNECT(self) -> None:
        """Open a tunnel to ``host:port`` (or refuse it)."""
        if self._record():
            return
        if self.owner.refuse_connect is not None:
            self._refuse(self.owner.refuse_connect)
            return
        if self.owner.hold_connect:
            self.owner.closing.wait()
            self.close_connection = True
            return
        if self.owner.drop_after_connect:
            self.send_response(200, "Connection established")
            self.end_headers()
            self.wfile.flush()
            self.close_connection = True
            return
        host, _, port = self.path.rpartition(":")
        try:
            upstream = socket.create_connection(self.owner.upstream(host, int(port)), timeout=5)
        except OSError:
            self._refuse(502)
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        with upstream:
            _pipe(self.connection, upstream, self.owner.closing)

    def _forward(self) -> None:
        if self._record():
            return
        url = urlsplit(self.path)
        if url.scheme != "http" or not url.hostname:
            self._refuse(400)
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        host, port = self.owner.upstream(url.hostname, url.port or 80)
        upstream = http.client.HTTPConnection(host, port, timeout=30)
        try:
            upstream.request(self.command, url.path + (f"?{url.query}" if url.query else ""), body, headers)
            answer = upstream.getresponse()
            data = answer.read()
        except OSError:
            self._refuse(502)
            return
        finally:
            upstream.close()
        self.send_response(answer.status, answer.reason)
        for name, value in answer.getheaders():
            if name.lower() not in _HOP_BY_HOP | {"content-length", "transfer-encoding", "date", "server"}:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward


def _pipe(left: socket.socket, right: socket.socket, closing: threading.Event) -> None:
    """Copy bytes both ways until either side closes (or the proxy stops)."""
    sockets = [left, right]
    while not closing.is_set():
        readable, _, _ = select.select(sockets, [], [], 0.1)
        for sock in readable:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            other = right if sock is left else left
            with contextlib.suppress(OSError):
                other.sendall(data)
