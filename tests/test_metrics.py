"""Spend you can see: metrics through Airflow's own stats client (here StatsD), tagged with DAG and task."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest

from airflow_grok_video.emulator import Fault, GrokVideoEmulator, Rule
from tests.conftest import API_KEY, received
from tests.test_dags import run_dag, states
from tests.test_durable import SPANS_ONE_TIMEOUT, needs_state_store

pytestmark = pytest.mark.usefixtures("airflow_db")


def grok_metrics(sock: socket.socket) -> list[str]:
    return [line for line in received(sock) if ".grok_video." in line or line.startswith("grok_video.")]


def test_created_failed_and_uncertain_are_counted(emulator: GrokVideoEmulator, statsd: socket.socket) -> None:
    received(statsd)  # drop what earlier tests sent
    assert states(run_dag("grok_test_wait_worker")) == {"create": "success"}
    emulator.add_rule(Rule(prompt_contains="doomed", outcome="failed"))
    assert states(run_dag("grok_test_wait_worker", prompt="a doomed fox")) == {"create": "failed"}
    emulator.inject(Fault("status", status=502, method="POST", after_accept=True))
    assert states(run_dag("grok_test_create_retries")) == {"create": "failed"}
    lines = grok_metrics(statsd)
    assert sum("grok_video.created,dag_id=grok_test_wait_worker,task_id=create:1|c" in x for x in lines) == 2
    assert any("grok_video.failed,dag_id=grok_test_wait_worker,task_id=create:1|c" in x for x in lines)
    assert any(
        "grok_video.uncertain_create,dag_id=grok_test_create_retries,task_id=create:1|c" in x for x in lines
    )


@needs_state_store  # a retry reattaches (or refuses) from the create recorded there
def test_reattached_and_refused_are_counted(emulator: GrokVideoEmulator, statsd: socket.socket) -> None:
    received(statsd)
    emulator.add_rule(Rule(prompt_contains="fox", generation_seconds=SPANS_ONE_TIMEOUT, times=1))
    assert states(run_dag("grok_test_execution_timeout")) == {"create": "success"}
    emulator.inject(Fault("slow", delay=4, method="POST"))
    assert states(run_dag("grok_test_execution_timeout")) == {"create": "failed"}
    lines = grok_metrics(statsd)
    tags = "dag_id=grok_test_execution_timeout,task_id=create:1|c"
    assert any(f"grok_video.reattached,{tags}" in x for x in lines)
    assert any(f"grok_video.uncertain_create_refused,{tags}" in x for x in lines)


def priced(base_url: str, price: object, currency: str = "USD") -> str:
    return json.dumps(
        {
            "conn_type": "grok_video",
            "host": base_url,
            "password": API_KEY,
            "extra": {"price_per_second": price, "currency": currency},
        }
    )


@pytest.mark.parametrize("dag_id", ["grok_test_wait_worker", "grok_test_wait_deferred"])
def test_spend_in_the_open(
    emulator: GrokVideoEmulator,
    statsd: socket.socket,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    dag_id: str,
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_GROK_VIDEO_DEFAULT", priced(emulator.base_url, 0.05))
    received(statsd)
    run = run_dag(dag_id, prompt="a fox")  # explicit: dag.test() keeps an earlier run's conf in params
    assert states(run) == {"create": "success"}
    [video_id] = list(emulator.tasks)
    [create] = run.get_task_instances()
    assert create.xcom_pull(task_ids="create", key="purchase") == {
        "video_task_id": video_id,
        "model": "grok-imagine-video-1.5",
        "seconds": 10,
        "prompt": "a fox",
        "prompt_sha256": hashlib.sha256(b"a fox").hexdigest(),
        "estimated_cost": 0.5,
        "currency": "USD",
        "reattached": False,
    }
    lines = grok_metrics(statsd)
    tags = f"dag_id={dag_id},task_id=create"
    assert any(f"grok_video.video_seconds,{tags}:10|c" in x for x in lines)
    assert any(f"grok_video.estimated_cost_micros,{tags}:500000|c" in x for x in lines)
    out, err = capfd.readouterr()
    assert (
        f"Created Grok video task {video_id} (model grok-imagine-video-1.5, 10 s; estimated cost 0.5 USD)"
        in out + err
    )
    assert API_KEY not in json.dumps(create.xcom_pull(task_ids="create", key="purchase"))


def test_without_a_price_what_was_bought_is_still_pushed(emulator: GrokVideoEmulator) -> None:
    run = run_dag("grok_test_wait_worker", prompt="a fox")
    [video_id] = list(emulator.tasks)
    [create] = run.get_task_instances()
    purchase = create.xcom_pull(task_ids="create", key="purchase")
    assert purchase == {
        "video_task_id": video_id,
        "model": "grok-imagine-video-1.5",
        "seconds": 10,
        "prompt": "a fox",
        "prompt_sha256": hashlib.sha256(b"a fox").hexdigest(),
        "reattached": False,
    }


def test_a_bad_price_fails_before_anything_is_bought(
    emulator: GrokVideoEmulator, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_GROK_VIDEO_DEFAULT", priced(emulator.base_url, "cheap"))
    run = run_dag("grok_test_create_retries")  # retries=2
    assert states(run) == {"create": "failed"}
    [create] = run.get_task_instances()
    assert create.try_number == 1
    assert emulator.creates == 0
    out, err = capfd.readouterr()
    assert "Invalid price_per_second='cheap'" in out + err


def test_spend_cap_refusals_are_counted(
    emulator: GrokVideoEmulator, statsd: socket.socket, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests.test_caps import capped_connection, sqlite_store

    received(statsd)
    sqlite_store(monkeypatch, tmp_path / "spend.db")
    capped_connection(monkeypatch, emulator.base_url, {"videos_per_day": 3})
    assert sorted(states(run_dag("grok_caps_mapped")).values()) == ["failed", "success", "success", "success"]
    tags = "dag_id=grok_caps_mapped,task_id=create:1|c"
    assert sum(f"grok_video.spend_cap_refused,{tags}" in x for x in grok_metrics(statsd)) == 1


def test_a_run_cap_refusing_a_whole_expansion_is_counted_for_every_index(
    emulator: GrokVideoEmulator, statsd: socket.socket, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests.test_caps import capped_connection, sqlite_store

    received(statsd)
    sqlite_store(monkeypatch, tmp_path / "spend.db")
    capped_connection(monkeypatch, emulator.base_url, {})
    run = run_dag("grok_caps_per_run")  # 12 mapped creates, a task's videos_per_run of 10
    assert set(states(run).values()) == {"failed"} and len(states(run)) == 12
    assert emulator.requests == []
    tags = "dag_id=grok_caps_per_run,task_id=create:1|c"
    assert sum(f"grok_video.spend_cap_refused,{tags}" in x for x in grok_metrics(statsd)) == 12
