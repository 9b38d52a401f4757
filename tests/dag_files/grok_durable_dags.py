"""DAGs for create-and-wait and durable creates; each reads its prompt from ``params``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG

from airflow_grok_video.operators.grok_video import GrokCreateVideoOperator

START = pendulum.datetime(2026, 1, 1, tz="UTC")
IMAGE = "https://example.com/fox.png"


def create_dag(dag_id: str, **create_kwargs: Any) -> DAG:
    # Tries bounded by a 2 s execution_timeout poll at a fixed 0.2 s: on a scale of seconds,
    # whole-second timestamps leave adaptive polling (tested on its own) too little to go on.
    fixed = {"max_poll_interval": None} if "execution_timeout" in create_kwargs else {}
    with DAG(dag_id, schedule=None, start_date=START, params={"prompt": "a fox"}) as dag:
        GrokCreateVideoOperator(
            task_id="create",
            image_url=IMAGE,
            **{"prompt": "{{ params.prompt }}", "poll_interval": 0.2, **fixed, **create_kwargs},
        )
    return dag


create_dag("grok_test_wait_worker", wait_for_completion=True, deferrable=False)
create_dag("grok_test_wait_deferred", wait_for_completion=True, deferrable=True)
# The first try times out after its create; the retry must reattach, not buy a second video.
create_dag(
    "grok_test_execution_timeout",
    wait_for_completion=True,
    deferrable=False,
    execution_timeout=timedelta(seconds=2),
    retries=1,
    retry_delay=timedelta(0),
)
create_dag(
    "grok_test_retry_after_failure",
    wait_for_completion=True,
    deferrable=False,
    execution_timeout=timedelta(seconds=2),
    retries=1,
    retry_delay=timedelta(seconds=2),
)
create_dag(
    "grok_test_deferred_retry",
    wait_for_completion=True,
    deferrable=True,
    timeout=1,
    retries=1,
    retry_delay=timedelta(seconds=3),
)
# Each try asks for another video: its prompt names the try.
create_dag(
    "grok_test_prompt_per_try",
    prompt="a fox, take {{ ti.try_number }}",
    wait_for_completion=True,
    deferrable=False,
    execution_timeout=timedelta(seconds=2),
    retries=1,
    retry_delay=timedelta(0),
)
create_dag("grok_test_create_retries", retries=2, retry_delay=timedelta(0))
create_dag("grok_test_create_not_durable", retries=2, retry_delay=timedelta(0), durable=False)
create_dag(
    "grok_test_recreate",
    wait_for_completion=True,
    deferrable=False,
    execution_timeout=timedelta(seconds=2),
    retries=1,
    retry_delay=timedelta(0),
    on_uncertain_create="recreate",
)

with DAG("grok_test_mapped_retry", schedule=None, start_date=START):
    GrokCreateVideoOperator.partial(
        task_id="create",
        image_url=IMAGE,
        wait_for_completion=True,
        deferrable=False,
        poll_interval=0.2,
        max_poll_interval=None,
        execution_timeout=timedelta(seconds=2),
        retries=1,
        retry_delay=timedelta(0),
    ).expand(prompt=["a fox", "a cat", "a flaky owl"])

# Try 1 is killed by its execution_timeout before the wait's first query (after 2.5-5 s): the
# retry's first request is the query that looks for try 1's video.
create_dag(
    "grok_test_killed_before_the_first_query",
    wait_for_completion=True,
    deferrable=False,
    poll_interval=5,
    execution_timeout=timedelta(seconds=2),
    retries=1,
    retry_delay=timedelta(0),
)
# A deferred create-and-wait with no bound on its wait: refused before anything is bought.
create_dag("grok_test_wait_without_timeout", wait_for_completion=True, deferrable=True, timeout=None)
