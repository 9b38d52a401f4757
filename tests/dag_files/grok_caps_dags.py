"""DAGs for the spend caps: mapped creates through a capped connection (tests/test_caps.py)."""

from __future__ import annotations

import os
import signal
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, task

from airflow_grok_video.operators.grok_video import GrokCreateVideoOperator

START = pendulum.datetime(2026, 1, 1, tz="UTC")
IMAGE = "https://example.com/fox.png"
PROMPTS = [f"a fox, take {n}" for n in range(4)]

# Four 10 s videos, with retries that a cap's refusal must not use; the caps come from the connection.
with DAG("grok_caps_mapped", schedule=None, start_date=START):
    GrokCreateVideoOperator.partial(
        task_id="create", image_url=IMAGE, retries=2, retry_delay=timedelta(0)
    ).expand(prompt=PROMPTS)

# Twelve videos asked for in one run, against a run cap of ten set by the task.
with DAG("grok_caps_per_run", schedule=None, start_date=START):
    GrokCreateVideoOperator.partial(
        task_id="create",
        image_url=IMAGE,
        spend_caps={"videos_per_run": 10},
        retries=2,
        retry_delay=timedelta(0),
    ).expand(prompt=[f"a fox, take {n}" for n in range(12)])

# One create; the store's database is stopped before the second (GROK_TEST_STORE_PID: its server).
with DAG("grok_caps_store_stops", schedule=None, start_date=START):

    @task
    def stop_the_store() -> None:
        os.kill(int(os.environ["GROK_TEST_STORE_PID"]), signal.SIGKILL)

    first = GrokCreateVideoOperator(task_id="first", prompt="a fox", image_url=IMAGE)
    # A retry without delay: dag.test() waits out the retry_delay (300 s by default).
    second = GrokCreateVideoOperator(
        task_id="second", prompt="a fox again", image_url=IMAGE, retries=1, retry_delay=timedelta(0)
    )
    first >> stop_the_store() >> second
