"""The billing table, row by row, over real HTTP: each row's verdict and what the hook then does.

Every row of :data:`airflow_grok_video.billing.TABLE` has at least one scenario here, played against
the emulator (or a small local server where the emulator cannot give that answer). Each scenario
says which verdict the outcome must get; the test checks the table agrees and that the hook acts on
it: what it sends again, what it tells the journal (the operator's ledger), what it raises.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_grok_video.billing import (
    TABLE,
    CreateOutcome,
    Row,
    Stage,
    Verdict,
    decide,
    table_markdown,
)
from airflow_grok_video.emulator import Fault, GrokVideoEmulator
from airflow_grok_video.exceptions import (
    GrokVideoAPIError,
    GrokVideoRequestError,
    GrokVideoUncertainCreateError,
)
from airflow_grok_video.hooks.grok_video import GrokVideoHook, RetryPolicy
from tests._net import ForwardProxy
from tests.conftest import API_KEY, REPO

CREATE = "/api/open-api/v1/grok/videos"
PARAMS: dict[str, Any] = {"prompt": "a fox in the snow", "image_url": "https://example.com/fox.png"}
FAST = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)


@dataclass
class Journal:
    """What the hook told the journal, in order (the operator's ledger is told the same)."""

    events: list[tuple[str, ...]] = field(default_factory=list)

    def sending(self) -> None:
        self.events.append(("sending",))

    def settled(self, verdict: Verdict, video_task_id: str | None) -> None:
        self.events.append(("settled", verdict.value, str(video_task_id)))


class Answering:
    """A local server answering every request with one fixed HTTP status and body."""

    def __init__(self, status: int, body: bytes, content_type: str = "text/html") -> None:
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                """Stay quiet."""

            def do_POST(self) -> None:
                owner.requests += 1
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Answering:
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass(frozen=True)
class Setup:
    """Where the create goes: the base URL, the connection's extras, how many creates reached a server."""

    base_url: str
    sent: Callable[[], int]
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    """
    One outcome of a create, and the verdict it must get.

    :param verdict: the verdict this outcome must get, said here, independently of the table.
    :param stage: the stage of the table's row; with ``status`` and ``body``, the row it must hit.
    :param status: the status class of the row.
    :param body: the body class of the row.
    :param setup: make the outcome happen, against the emulator or a server of its own.
    """

    verdict: Verdict
    stage: Stage
    status: str
    body: str
    setup: Callable[[GrokVideoEmulator, pytest.MonkeyPatch], Iterator[Setup]]


def on_emulator(
    *faults: Fault, **extras: Any
) -> Callable[[GrokVideoEmulator, pytest.MonkeyPatch], Iterator[Setup]]:
    def setup(emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
        for fault in faults:
            emulator.inject(Fault(**{**fault.__dict__, "method": "POST"}))
        yield Setup(emulator.base_url, lambda: emulator.creates, extras)

    return setup


def answering(status: int, body: bytes) -> Callable[[GrokVideoEmulator, pytest.MonkeyPatch], Iterator[Setup]]:
    def setup(emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
        with Answering(status, body) as server:
            yield Setup(server.base_url, lambda: server.requests)

    return setup


def nothing_listens(emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    with Answering(200, b"") as server:
        url = server.base_url
    yield Setup(url, lambda: 0)  # closed: connection refused


def tunnel_dropped_in_the_handshake(
    emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Setup]:
    # The proxy accepts the CONNECT, then closes before the TLS handshake finishes: nothing was sent.
    with ForwardProxy(drop_after_connect=True) as proxy:
        yield Setup("https://api.jimmy.test", lambda: 0, {"proxies": {"https": proxy.url}})


def redirect_to_a_refusing_host(
    emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Setup]:
    with Answering(401, b'{"code": "40100", "msg": "no"}') as refusing:
        emulator.inject(Fault("redirect", status=307, location=refusing.base_url + CREATE, method="POST"))
        yield Setup(emulator.base_url, lambda: emulator.creates + refusing.requests)


ANSWERED = Stage.ANSWERED
SCENARIOS: dict[str, Scenario] = {
    "connection refused": Scenario(Verdict.NOT_ACCEPTED, Stage.NOT_SENT, "-", "-", nothing_listens),
    "CONNECT accepted, tunnel dropped during the TLS handshake": Scenario(
        Verdict.NOT_ACCEPTED, Stage.NOT_SENT, "-", "-", tunnel_dropped_in_the_handshake
    ),
    "reset after accepting": Scenario(
        Verdict.UNCERTAIN, Stage.NO_ANSWER, "-", "-", on_emulator(Fault("reset", after_accept=True))
    ),
    "303 after accepting": Scenario(
        Verdict.UNCERTAIN,
        ANSWERED,
        "3xx",
        "not the API's envelope",
        on_emulator(Fault("redirect", status=303, location="/api/open-api/v1/videos/x", after_accept=True)),
    ),
    "307 to a host that refuses": Scenario(
        Verdict.UNCERTAIN, ANSWERED, "3xx", "not the API's envelope", redirect_to_a_refusing_host
    ),
    "429, then accepted": Scenario(
        Verdict.NOT_ACCEPTED, ANSWERED, "429", "any other code", on_emulator(Fault("status", status=429))
    ),
    "429 with resend_create_on_429 false": Scenario(
        Verdict.UNCERTAIN,
        ANSWERED,
        "429 with resend_create_on_429 false",
        "any other code",
        on_emulator(Fault("status", status=429), resend_create_on_429=False),
    ),
    "401": Scenario(
        Verdict.REFUSED, ANSWERED, "401, 403", "code 4xxxx", on_emulator(Fault("status", status=401))
    ),
    "408 with an envelope": Scenario(
        Verdict.UNCERTAIN, ANSWERED, "408", "code 4xxxx", on_emulator(Fault("status", status=408))
    ),
    "400 with an envelope": Scenario(
        Verdict.REFUSED, ANSWERED, "other 4xx", "code 4xxxx", on_emulator(Fault("status", status=400))
    ),
    "404 page without an envelope": Scenario(
        Verdict.REFUSED,
        ANSWERED,
        "other 4xx",
        "not the API's envelope",
        answering(404, b"<h1>Not Found</h1>"),
    ),
    "409 with a server-error code": Scenario(
        Verdict.UNCERTAIN,
        ANSWERED,
        "other 4xx",
        "any other code",
        on_emulator(Fault("status", status=409, code="50001", after_accept=True)),
    ),
    "500 after accepting": Scenario(
        Verdict.UNCERTAIN,
        ANSWERED,
        "5xx",
        "any other code",
        on_emulator(Fault("status", status=500, after_accept=True)),
    ),
    "503 without an envelope": Scenario(
        Verdict.UNCERTAIN, ANSWERED, "5xx", "not the API's envelope", answering(503, b"<h1>busy</h1>")
    ),
    "200, created": Scenario(
        Verdict.ACCEPTED, ANSWERED, "2xx", "code 20000 with data.task_id", on_emulator()
    ),
    "200 with a client-error code": Scenario(
        Verdict.REFUSED,
        ANSWERED,
        "2xx",
        "code 4xxxx",
        on_emulator(Fault("envelope", code="40200", msg="insufficient balance")),
    ),
    "200 with code 50001 after accepting": Scenario(
        Verdict.UNCERTAIN,
        ANSWERED,
        "2xx",
        "any other code",
        on_emulator(Fault("envelope", code="50001", msg="upstream error", after_accept=True)),
    ),
    "200 with code 20000 and no data": Scenario(
        Verdict.UNCERTAIN,
        ANSWERED,
        "2xx",
        "code 20000 without data.task_id",
        on_emulator(Fault("envelope", code="20000", msg="ok", after_accept=True)),
    ),
    "200 HTML after accepting": Scenario(
        Verdict.UNCERTAIN,
        ANSWERED,
        "2xx",
        "not the API's envelope",
        on_emulator(Fault("html", after_accept=True)),
    ),
    "an unknown status": Scenario(
        Verdict.UNCERTAIN, ANSWERED, "any other", "code 20000 with data.task_id", answering(600, b"{}")
    ),
}


def row_of(scenario: Scenario) -> Row:
    """The row the scenario's outcome falls in: the first that matches, as :func:`decide` finds it."""
    return next(row for row in TABLE if row.matches(scenario.stage, scenario.status, scenario.body))


def test_every_row_of_the_table_has_a_scenario() -> None:
    covered = {id(row_of(s)) for s in SCENARIOS.values()}
    missing = [f"{r.stage.value} | {r.status} | {r.body}" for r in TABLE if id(r) not in covered]
    assert not missing, f"rows without a scenario: {missing}"


def test_the_table_gives_one_verdict_to_every_outcome() -> None:
    statuses = [None, *range(100, 700)]
    codes = [None, "20000", "40000", "40800", "42900", "50001", "abc", ""]
    for stage in Stage:
        for status in statuses if stage is Stage.ANSWERED else [None]:
            for code in codes if stage is Stage.ANSWERED else [None]:
                if stage is Stage.ANSWERED and status is None:
                    continue
                for has_id in (False, True):
                    row = decide(CreateOutcome(stage, status, code, has_task_id=has_id))
                    assert row.verdict in Verdict
    assert decide(CreateOutcome(ANSWERED, 200, "20000", has_task_id=True)).verdict is Verdict.ACCEPTED


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_each_outcome_gets_its_verdict_and_the_hook_acts_on_it(
    emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    scenario = SCENARIOS[name]
    row = row_of(scenario)
    assert row.verdict is scenario.verdict, f"the table says {row.verdict.value}"
    for setup in scenario.setup(emulator, monkeypatch):
        connection = {
            "conn_type": "grok_video",
            "host": setup.base_url,
            "password": API_KEY,
            "extra": setup.extras,
        }
        monkeypatch.setenv("AIRFLOW_CONN_GROK_VIDEO_DEFAULT", json.dumps(connection))
        journal = Journal()
        try:
            data = GrokVideoHook(retry_policy=FAST).create_video(**PARAMS, journal=journal)
        except GrokVideoAPIError as error:
            raised: GrokVideoAPIError | None = error
        else:
            raised = None
        verdicts = [event[1] for event in journal.events if event[0] == "settled"]
        # The journal hears of every request, right before it leaves and right after its verdict.
        assert journal.events[::2] == [("sending",)] * len(verdicts)
        if scenario.verdict is Verdict.ACCEPTED:
            assert raised is None and verdicts == ["accepted"]
            assert journal.events[-1] == ("settled", "accepted", data["task_id"])
        elif scenario.verdict is Verdict.NOT_ACCEPTED:
            # Sent again: by the hook, then (when it gives up) by Airflow's retries.
            assert verdicts[0] == "not accepted" and len(verdicts) >= 2
            assert raised is None or not isinstance(raised, AirflowFailException)
            assert raised is None or raised.verdict is Verdict.NOT_ACCEPTED
        elif scenario.verdict is Verdict.REFUSED:
            assert verdicts == ["refused"] and setup.sent() == 1
            assert isinstance(raised, GrokVideoRequestError | AirflowFailException)
            assert raised.verdict is Verdict.REFUSED
        else:
            assert verdicts == ["uncertain"] and setup.sent() == 1
            assert isinstance(raised, GrokVideoUncertainCreateError)
            assert "may have been created and billed" in str(raised)
        if scenario.verdict is not Verdict.ACCEPTED:
            assert API_KEY not in str(raised)


def test_the_docs_show_the_table_as_the_code_has_it() -> None:
    page = (Path(REPO) / "docs" / "spend-safety.md").read_text()
    assert table_markdown() in page
