"""Spend you can see: metrics through Airflow's own stats client (here StatsD), tagged with DAG and task."""

from __future__ import annotations

import socket

import pytest

from airflow_grok_video.emulator import Fault, GrokVideoEmulator, Rule
from tests.conftest import received
from tests.test_dags import run_dag, states

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


def test_reattached_and_refused_are_counted(emulator: GrokVideoEmulator, statsd: socket.socket) -> None:
    received(statsd)
    emulator.add_rule(Rule(prompt_contains="fox", generation_seconds=3.5, times=1))
    assert states(run_dag("grok_test_execution_timeout")) == {"create": "success"}
    emulator.inject(Fault("slow", delay=4, method="POST"))
    assert states(run_dag("grok_test_execution_timeout")) == {"create": "failed"}
    lines = grok_metrics(statsd)
    tags = "dag_id=grok_test_execution_timeout,task_id=create:1|c"
    assert any(f"grok_video.reattached,{tags}" in x for x in lines)
    assert any(f"grok_video.uncertain_create_refused,{tags}" in x for x in lines)
