"""DAGs buying a batch of videos in one task (tests/test_batch.py); each reads its items from ``params``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, task

from airflow_grok_video.operators.grok_video_batch import GrokCreateVideoBatchOperator

START = pendulum.datetime(2026, 1, 1, tz="UTC")
IMAGE = "https://example.com/fox.png"
ITEMS = ["a fox 0", "a fox 1", "a fox 2"]


def batch_dag(dag_id: str, **batch_kwargs: Any) -> DAG:
    # Tries bounded by a 2 s execution_timeout poll at a fixed 0.2 s (see grok_durable_dags.py).
    fixed = {"max_poll_interval": None} if "execution_timeout" in batch_kwargs else {}
    # The items are a template rendered as a Python list: a DAG author's params or an upstream XCom.
    with DAG(
        dag_id, schedule=None, start_date=START, params={"items": ITEMS}, render_template_as_native_obj=True
    ) as dag:
        GrokCreateVideoBatchOperator(
            task_id="batch",
            image_url=IMAGE,
            **{"items": "{{ params['items'] }}", "poll_interval": 0.2, **fixed, **batch_kwargs},
        )
    return dag


batch_dag("grok_test_batch_worker", deferrable=False)
batch_dag("grok_test_batch_deferred", deferrable=True)
batch_dag("grok_test_batch_deferred_one_at_a_time", deferrable=True, max_in_flight=1)
batch_dag("grok_test_batch_some_may_fail", deferrable=False, min_success=1)
batch_dag("grok_test_batch_paced", deferrable=False, max_in_flight=2)
batch_dag("grok_test_batch_capped", deferrable=False, spend_caps={"videos_per_run": 2})
# Try 1 is killed by its 2 s execution_timeout while it waits; try 2 reattaches to every video.
for rebuy in (False, True):
    batch_dag(
        f"grok_test_batch_retry{'_rebuy' if rebuy else ''}",
        deferrable=False,
        min_success=1,
        rebuy_failed=rebuy,
        execution_timeout=timedelta(seconds=2),
        retries=1,
        retry_delay=timedelta(0),
    )


# The same in TaskFlow: the function builds the items from its argument.
with DAG(
    "grok_test_batch_taskflow",
    schedule=None,
    start_date=START,
    params={"subjects": ["owls", "hares"]},
    render_template_as_native_obj=True,
):

    @task.grok_video_batch(image_url=IMAGE, duration=15, poll_interval=0.2, min_success=1)
    def nightly(subjects: list[str]) -> list[Any]:
        return [f"a fox and {subject}" for subject in subjects] + [{"prompt": "a doomed fox", "duration": 10}]

    nightly("{{ params.subjects }}")
