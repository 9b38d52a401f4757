"""The connection's extras behave the same in a worker (sync) and in a triggerer (async).

Real parts only: the emulator, a TLS gateway in front of it with a CA generated here (and, when
asked, requiring a client certificate), and a forward proxy (plain-HTTP forwarding and CONNECT
tunnels). Every test that can runs once per path: ``sync`` is ``requests`` (``get_video_task``),
``async`` is ``aiohttp`` (``aget_video_task``, as the trigger calls it).
"""

from __future__ import annotations

import asyncio
import json
import time
import traceback
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_grok_video.emulator import Fault, GrokVideoEmulator
from airflow_grok_video.exceptions import GrokVideoAPIError, GrokVideoUncertainCreateError
from airflow_grok_video.get_provider_info import UI_FIELD_BEHAVIOUR
from airflow_grok_video.hooks.grok_video import GrokVideoHook, RetryPolicy, VideoTask
from tests._net import GATEWAY_HOST, ForwardProxy, Gateway, Pki, make_pki
from tests.conftest import API_KEY

QUERY = "/api/open-api/v1/videos/"
PARAMS: dict[str, Any] = {"prompt": "a fox in the snow", "image_url": "https://example.com/fox.png"}
FAST = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)
ONCE = RetryPolicy(max_attempts=1)
PATHS = ["sync", "async"]
_PROXY_VARIABLES = ["http_proxy", "https_proxy", "all_proxy", "no_proxy"]


def set_connection(
    monkeypatch: pytest.MonkeyPatch,
    host: str,
    *,
    port: int | None = None,
    extra: dict[str, Any] | None = None,
    conn_id: str = "grok_video_default",
) -> None:
    """Define a Grok video connection through its ``AIRFLOW_CONN_*`` variable."""
    fields: dict[str, Any] = {"conn_type": "grok_video", "host": host, "password": API_KEY}
    if port is not None:
        fields["port"] = port
    if extra is not None:
        fields["extra"] = json.dumps(extra)
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


def query(path: str, task_id: str, policy: RetryPolicy = FAST, **hook_args: Any) -> VideoTask:
    """Query a task on the default connection, the worker's way or the triggerer's way."""
    hook = GrokVideoHook(retry_policy=policy, **hook_args)
    if path == "sync":
        return hook.get_video_task(task_id)

    async def in_a_loop() -> VideoTask:
        try:
            return await hook.aget_video_task(task_id)
        finally:
            await hook.aclose()

    return asyncio.run(in_a_loop())


def refused(path: str, task_id: str, **hook_args: Any) -> GrokVideoAPIError:
    """Query a task that must fail; the error."""
    with pytest.raises(GrokVideoAPIError) as info:
        query(path, task_id, **hook_args)
    return info.value


@pytest.fixture(autouse=True)
def _no_proxy_from_the_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def task_id(emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch) -> str:
    """A video task created straight at the emulator (its request is not counted by the gateway)."""
    set_connection(monkeypatch, emulator.base_url, conn_id="grok_video_direct")
    return str(GrokVideoHook("grok_video_direct").create_video(**PARAMS)["task_id"])


@pytest.fixture
def gateway(emulator: GrokVideoEmulator, pki: Pki) -> Iterator[Gateway]:
    """The emulator behind TLS, with the test CA's server certificate."""
    with Gateway(emulator.base_url, ssl_context=pki.server_context()) as front:
        yield front


@pytest.fixture
def mtls_gateway(emulator: GrokVideoEmulator, pki: Pki) -> Iterator[Gateway]:
    """The emulator behind TLS that requires a client certificate the test CA signed."""
    with Gateway(emulator.base_url, ssl_context=pki.server_context(require_client_cert=True)) as front:
        yield front


def api_requests(front: Gateway) -> list[str]:
    """The request targets the gateway received."""
    return [seen.target for seen in front.seen]


# -- verify ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_ca_bundle_in_verify_is_used(
    path: str, monkeypatch: pytest.MonkeyPatch, gateway: Gateway, pki: Pki, task_id: str
) -> None:
    set_connection(monkeypatch, gateway.base_url, extra={"verify": str(pki.ca)})
    assert query(path, task_id).task_id == task_id
    assert api_requests(gateway) == [QUERY + task_id]


@pytest.mark.parametrize("path", PATHS)
def test_default_verify_refuses_an_unknown_ca_and_says_nothing_reached_the_api(
    path: str, monkeypatch: pytest.MonkeyPatch, gateway: Gateway, emulator: GrokVideoEmulator, task_id: str
) -> None:
    set_connection(monkeypatch, gateway.base_url)
    error = refused(path, task_id)
    assert error.sent is False
    assert "TLS handshake failed" in str(error) and "nothing reached the API" in str(error)
    assert gateway.seen == []
    assert emulator.count("GET") == 0


@pytest.mark.parametrize("path", PATHS)
def test_ca_bundle_from_the_environment_unless_trust_env_is_off(
    path: str, monkeypatch: pytest.MonkeyPatch, gateway: Gateway, pki: Pki, task_id: str
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.ca))
    set_connection(monkeypatch, gateway.base_url)
    assert query(path, task_id).task_id == task_id
    set_connection(monkeypatch, gateway.base_url, extra={"trust_env": False})
    assert refused(path, task_id).sent is False
    assert len(gateway.seen) == 1


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # what it asks for
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("verify", [False, "false"])
def test_verify_false_skips_the_check(
    path: str, verify: Any, monkeypatch: pytest.MonkeyPatch, gateway: Gateway, task_id: str
) -> None:
    set_connection(monkeypatch, gateway.base_url, extra={"verify": verify})
    assert query(path, task_id).task_id == task_id
    assert api_requests(gateway) == [QUERY + task_id]


# -- cert -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("form", ["pair", "one-file"])
def test_client_certificate_is_presented(
    path: str, form: str, monkeypatch: pytest.MonkeyPatch, mtls_gateway: Gateway, pki: Pki, task_id: str
) -> None:
    cert: Any = [str(pki.client_cert), str(pki.client_key)] if form == "pair" else str(pki.client_combined)
    set_connection(monkeypatch, mtls_gateway.base_url, extra={"verify": str(pki.ca), "cert": cert})
    assert query(path, task_id).task_id == task_id
    assert api_requests(mtls_gateway) == [QUERY + task_id]


@pytest.mark.parametrize("path", PATHS)
def test_without_the_client_certificate_the_server_refuses(
    path: str,
    monkeypatch: pytest.MonkeyPatch,
    mtls_gateway: Gateway,
    pki: Pki,
    emulator: GrokVideoEmulator,
    task_id: str,
) -> None:
    set_connection(monkeypatch, mtls_gateway.base_url, extra={"verify": str(pki.ca)})
    refused(path, task_id)
    assert mtls_gateway.seen == []
    assert emulator.count("GET") == 0


# -- proxies --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_proxies_extra_forwards_plain_http(
    path: str, monkeypatch: pytest.MonkeyPatch, emulator: GrokVideoEmulator, task_id: str
) -> None:
    with ForwardProxy() as proxy:
        set_connection(monkeypatch, emulator.base_url, extra={"proxies": {"http": proxy.url}})
        assert query(path, task_id).task_id == task_id
    assert [(s.method, s.target) for s in proxy.seen] == [("GET", f"{emulator.base_url}{QUERY}{task_id}")]


@pytest.mark.parametrize("path", PATHS)
def test_the_forms_example_proxies_extra_tunnels_https(
    path: str, monkeypatch: pytest.MonkeyPatch, gateway: Gateway, pki: Pki, task_id: str
) -> None:
    """The connection form's own placeholder extra, pointed at a real proxy: a CONNECT tunnel."""
    placeholder = UI_FIELD_BEHAVIOUR["placeholders"]["extra"]
    with ForwardProxy(routes={f"{GATEWAY_HOST}:443": ("127.0.0.1", gateway.port)}) as proxy:
        extra = json.loads(placeholder.replace("http://proxy:3128", proxy.url))
        assert list(extra) == ["proxies"]
        set_connection(monkeypatch, f"https://{GATEWAY_HOST}", extra={**extra, "verify": str(pki.ca)})
        assert query(path, task_id).task_id == task_id
    assert [(s.method, s.target) for s in proxy.seen] == [("CONNECT", f"{GATEWAY_HOST}:443")]
    assert api_requests(gateway) == [QUERY + task_id]


@pytest.mark.parametrize("path", PATHS)
def test_proxy_credentials_in_the_proxy_url(
    path: str, monkeypatch: pytest.MonkeyPatch, gateway: Gateway, pki: Pki, task_id: str
) -> None:
    route = {f"{GATEWAY_HOST}:443": ("127.0.0.1", gateway.port)}
    with ForwardProxy(routes=route, credentials=("squid", "p@ss word")) as proxy:
        proxy_url = proxy.url_with_credentials("squid", "p%40ss%20word")
        set_connection(
            monkeypatch,
            f"https://{GATEWAY_HOST}",
            extra={"proxies": {"https": proxy_url}, "verify": str(pki.ca)},
        )
        assert query(path, task_id).task_id == task_id
        wrong = proxy.url_with_credentials("squid", "WRONG-PROXY-PASSWORD")
        set_connection(
            monkeypatch, f"https://{GATEWAY_HOST}", extra={"proxies": {"https": wrong}, "verify": str(pki.ca)}
        )
        error = refused(path, task_id)
    assert [s.method for s in proxy.seen] == ["CONNECT"] * (1 + FAST.max_attempts)
    assert error.sent is False and "proxy" in str(error)
    assert "WRONG-PROXY-PASSWORD" not in "".join(traceback.format_exception(error))
    assert api_requests(gateway) == [QUERY + task_id]


@pytest.mark.parametrize("path", PATHS)
def test_environment_proxies_are_honoured(
    path: str, monkeypatch: pytest.MonkeyPatch, emulator: GrokVideoEmulator, task_id: str
) -> None:
    with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        set_connection(monkeypatch, emulator.base_url)
        query(path, task_id)
        assert [s.target for s in proxy.seen] == [f"{emulator.base_url}{QUERY}{task_id}"]

        monkeypatch.setenv("NO_PROXY", "example.com,127.0.0.1")
        query(path, task_id)
        monkeypatch.delenv("NO_PROXY")
        set_connection(monkeypatch, emulator.base_url, extra={"trust_env": False})
        query(path, task_id)
    assert len(proxy.seen) == 1
    assert emulator.count("GET", QUERY) == 3


@pytest.mark.parametrize("path", PATHS)
def test_proxies_extra_wins_over_the_environment(
    path: str, monkeypatch: pytest.MonkeyPatch, emulator: GrokVideoEmulator, task_id: str
) -> None:
    with ForwardProxy() as chosen, ForwardProxy() as environment:
        monkeypatch.setenv("HTTP_PROXY", environment.url)
        set_connection(monkeypatch, emulator.base_url, extra={"proxies": {"http": chosen.url}})
        query(path, task_id)
    assert (len(chosen.seen), len(environment.seen)) == (1, 0)


# -- what nothing reached (item 4: safe to send again) -------------------------------------------


def refusing_proxy(refusal: str) -> ForwardProxy:
    """A real proxy that refuses the tunnel (403), asks for credentials the client lacks (407), or none."""
    status = 403 if refusal == "connect-403" else None
    credentials = ("squid", "secret") if refusal == "connect-407" else None
    return ForwardProxy(refuse_connect=status, credentials=credentials)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("refusal", ["connect-403", "connect-407", "proxy-down"])
def test_a_refused_proxy_means_nothing_reached_the_api(
    path: str,
    refusal: str,
    monkeypatch: pytest.MonkeyPatch,
    gateway: Gateway,
    pki: Pki,
    emulator: GrokVideoEmulator,
    task_id: str,
    closed_port_url: str,
) -> None:
    with refusing_proxy(refusal) as proxy:
        proxy_url = closed_port_url if refusal == "proxy-down" else proxy.url
        set_connection(
            monkeypatch, gateway.base_url, extra={"proxies": {"https": proxy_url}, "verify": str(pki.ca)}
        )
        error = refused(path, task_id)
    assert error.sent is False
    assert "proxy" in str(error) and "nothing reached the API" in str(error)
    assert gateway.seen == []
    assert emulator.count("GET") == 0


@pytest.mark.parametrize("refusal", ["untrusted-certificate", "connect-403", "connect-407", "proxy-down"])
def test_a_create_that_never_reached_the_api_is_not_an_uncertain_create(
    refusal: str,
    monkeypatch: pytest.MonkeyPatch,
    gateway: Gateway,
    pki: Pki,
    emulator: GrokVideoEmulator,
    closed_port_url: str,
) -> None:
    with refusing_proxy(refusal) as proxy:
        if refusal == "untrusted-certificate":
            set_connection(monkeypatch, gateway.base_url)
        else:
            proxy_url = closed_port_url if refusal == "proxy-down" else proxy.url
            extra = {"proxies": {"https": proxy_url}, "verify": str(pki.ca)}
            set_connection(monkeypatch, gateway.base_url, extra=extra)
        with pytest.raises(GrokVideoAPIError) as info:
            GrokVideoHook(retry_policy=FAST).create_video(**PARAMS)
    assert not isinstance(info.value, GrokVideoUncertainCreateError)
    assert info.value.sent is False
    assert "nothing reached the API" in str(info.value)
    assert "may have been" not in str(info.value)
    assert emulator.creates == 0


# -- timeout --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("timeout", [0.5, [5, 0.5]], ids=["seconds", "connect-read"])
def test_timeout_extra_is_honoured(
    path: str, timeout: Any, monkeypatch: pytest.MonkeyPatch, emulator: GrokVideoEmulator, task_id: str
) -> None:
    set_connection(monkeypatch, emulator.base_url, extra={"timeout": timeout})
    emulator.inject(Fault("slow", delay=2.0, method="GET", path_prefix=QUERY))
    started = time.monotonic()
    error = refused(path, task_id, policy=ONCE)
    assert time.monotonic() - started < 1.5
    assert error.transient and error.sent


@pytest.mark.parametrize("path", PATHS)
def test_the_hooks_own_timeout_wins_over_the_extra(
    path: str, monkeypatch: pytest.MonkeyPatch, emulator: GrokVideoEmulator, task_id: str
) -> None:
    set_connection(monkeypatch, emulator.base_url, extra={"timeout": 0.3})
    emulator.inject(Fault("slow", delay=0.8, method="GET", path_prefix=QUERY))
    assert query(path, task_id, policy=ONCE, read_timeout=5).task_id == task_id


# -- headers and ignored options -----------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_other_keys_are_headers_and_the_key_is_not_overridden(
    path: str, monkeypatch: pytest.MonkeyPatch, gateway: Gateway, pki: Pki, task_id: str
) -> None:
    extra = {"verify": str(pki.ca), "X-Gateway-Tenant": "film-team", "Authorization": "Bearer other"}
    set_connection(monkeypatch, gateway.base_url, extra=extra)
    query(path, task_id)
    [seen] = gateway.seen
    assert seen.headers["x-gateway-tenant"] == "film-team"
    assert seen.headers["authorization"] == f"Bearer {API_KEY}"


@pytest.mark.parametrize("path", PATHS)
def test_unsupported_http_provider_options_are_ignored_with_a_warning(
    path: str,
    monkeypatch: pytest.MonkeyPatch,
    gateway: Gateway,
    pki: Pki,
    task_id: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    extra = {"verify": str(pki.ca), "allow_redirects": False, "stream": True}
    set_connection(monkeypatch, gateway.base_url, extra=extra)
    query(path, task_id)
    [seen] = gateway.seen
    assert "allow_redirects" not in seen.headers and "stream" not in seen.headers
    assert "allow_redirects, stream are not supported" in caplog.text + "".join(capfd.readouterr())


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"timeout": "soon"}, "'timeout'"),
        ({"verify": "/nonexistent/ca.pem"}, "'verify'"),
        ({"cert": ["/nonexistent/c.pem", "/nonexistent/k.pem"]}, "'cert'"),
        ({"proxies": "http://proxy:3128"}, "'proxies'"),
        ({"X-Token": "a\nb"}, "'X-Token'"),
    ],
)
def test_an_unusable_extra_is_named_before_any_request(
    path: str,
    extra: dict[str, Any],
    named: str,
    monkeypatch: pytest.MonkeyPatch,
    emulator: GrokVideoEmulator,
    task_id: str,
) -> None:
    set_connection(monkeypatch, emulator.base_url, extra=extra)
    error = refused(path, task_id)
    assert named in str(error) and "grok_video_default" in str(error)
    assert error.sent is False and not error.transient
    assert "a\nb" not in str(error)
    assert emulator.count("GET") == 0


# -- a base URL with a path and a port (item 17) -------------------------------------------------


@pytest.fixture
def jimmy_gateway(emulator: GrokVideoEmulator, pki: Pki) -> Iterator[Gateway]:
    """The emulator served under ``/jimmy`` over TLS."""
    with Gateway(emulator.base_url, prefix="/jimmy", ssl_context=pki.server_context()) as front:
        yield front


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("form", ["port-field", "no-scheme"])
def test_base_url_with_a_path_and_the_port_field(
    path: str, form: str, monkeypatch: pytest.MonkeyPatch, jimmy_gateway: Gateway, pki: Pki, task_id: str
) -> None:
    host = "https://localhost/jimmy" if form == "port-field" else "localhost/jimmy/"
    set_connection(monkeypatch, host, port=jimmy_gateway.port, extra={"verify": str(pki.ca)})
    assert query(path, task_id).task_id == task_id
    assert [s.target for s in jimmy_gateway.seen] == [f"/jimmy{QUERY}{task_id}"]


@pytest.mark.parametrize("path", PATHS)
def test_base_url_with_a_port_and_a_path_through_a_tunnel(
    path: str, monkeypatch: pytest.MonkeyPatch, jimmy_gateway: Gateway, pki: Pki, task_id: str
) -> None:
    with ForwardProxy(routes={f"{GATEWAY_HOST}:8443": ("127.0.0.1", jimmy_gateway.port)}) as proxy:
        extra = {"proxies": {"https": proxy.url}, "verify": str(pki.ca)}
        set_connection(monkeypatch, f"https://{GATEWAY_HOST}:8443/jimmy", port=9999, extra=extra)
        assert query(path, task_id).task_id == task_id
    assert [(s.method, s.target) for s in proxy.seen] == [("CONNECT", f"{GATEWAY_HOST}:8443")]
    assert [s.target for s in jimmy_gateway.seen] == [f"/jimmy{QUERY}{task_id}"]


@pytest.mark.parametrize("path", PATHS)
def test_base_url_with_a_path_and_a_port_as_the_proxy_sees_it(
    path: str, monkeypatch: pytest.MonkeyPatch, emulator: GrokVideoEmulator, task_id: str
) -> None:
    with (
        Gateway(emulator.base_url, prefix="/jimmy") as plain,
        ForwardProxy(routes={f"{GATEWAY_HOST}:8080": ("127.0.0.1", plain.port)}) as proxy,
    ):
        set_connection(
            monkeypatch, f"http://{GATEWAY_HOST}/jimmy", port=8080, extra={"proxies": {"http": proxy.url}}
        )
        assert query(path, task_id).task_id == task_id
    assert [s.target for s in proxy.seen] == [f"http://{GATEWAY_HOST}:8080/jimmy{QUERY}{task_id}"]


def test_create_through_a_gateway_path_and_port(
    monkeypatch: pytest.MonkeyPatch, jimmy_gateway: Gateway, pki: Pki, emulator: GrokVideoEmulator
) -> None:
    set_connection(
        monkeypatch, "https://localhost/jimmy", port=jimmy_gateway.port, extra={"verify": str(pki.ca)}
    )
    data = GrokVideoHook(retry_policy=FAST).create_video(**PARAMS)
    assert list(emulator.tasks) == [data["task_id"]]
    assert [s.target for s in jimmy_gateway.seen] == ["/jimmy/api/open-api/v1/grok/videos"]
