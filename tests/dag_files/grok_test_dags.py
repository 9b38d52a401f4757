"""DAGs the tests run with ``dag.test()``; each reads its prompt from ``params`` (override with run_conf)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, task

from airflow_grok_video.operators.grok_video import GrokCreateVideoOperator
from airflow_grok_video.sensors.grok_video import GrokVideoSensor

START = pendulum.datetime(2026, 1, 1, tz="UTC")


def video_dag(dag_id: str, **sensor_kwargs: Any) -> DAG:
    with DAG(dag_id, schedule=None, start_date=START, params={"prompt": "a fox"}) as dag:
        create = GrokCreateVideoOperator(
            task_id="create", prompt="{{ params.prompt }}", image_url="https://example.com/fox.png"
        )
        GrokVideoSensor(
            task_id="wait",
            video_task_id=create.output,
            **{"poke_interval": 0.2, "retry_delay": timedelta(0), **sensor_kwargs},
        )
    return dag


video_dag("grok_test_poke", deferrable=False)
video_dag("grok_test_reschedule", deferrable=False, mode="reschedule")
video_dag("grok_test_deferrable", deferrable=True)
video_dag("grok_test_poke_retries", deferrable=False, retries=2)
video_dag("grok_test_deferrable_retries", deferrable=True, retries=2)
# Fixed-interval polling: the timeout tests count the queries sent while the video never ends.
for _mode, _deferrable in (("poke", False), ("deferrable", True)):
    video_dag(f"grok_test_timeout_{_mode}", deferrable=_deferrable, timeout=1, max_poll_interval=None)
    video_dag(
        f"grok_test_timeout_{_mode}_soft_fail",
        deferrable=_deferrable,
        timeout=1,
        soft_fail=True,
        max_poll_interval=None,
    )
video_dag("grok_test_timeout_reschedule", deferrable=False, mode="reschedule", timeout=1)

with DAG("grok_test_templated_invalid", schedule=None, start_date=START, params={"prompt": "  "}):
    GrokCreateVideoOperator(
        task_id="create",
        prompt="{{ params.prompt }}",
        image_url="https://example.com/fox.png",
        retries=2,
        retry_delay=timedelta(0),
    )

with DAG("grok_test_taskflow", schedule=None, start_date=START):
    _create = GrokCreateVideoOperator(task_id="create", prompt="a fox", image_url="https://example.com/f.png")
    _wait = GrokVideoSensor(task_id="wait", video_task_id=_create.output, poke_interval=0.2, deferrable=True)

    @task
    def length(url: str) -> int:
        return len(url)

    length(_wait.output)

# Statuses the API does not document (tests/test_statuses.py): a status that ends the wait fails it at
# once, without the retries these DAGs allow, or skips it; a wait that goes on ends by the 30 s timeout.
for _mode, _sensor_kwargs in (
    ("poke", {"deferrable": False}),
    ("reschedule", {"deferrable": False, "mode": "reschedule"}),
    ("deferrable", {"deferrable": True}),
):
    video_dag(f"grok_test_status_{_mode}", **_sensor_kwargs, retries=2, timeout=30, max_poll_interval=None)
    video_dag(
        f"grok_test_status_{_mode}_soft_fail",
        **_sensor_kwargs,
        timeout=30,
        soft_fail=True,
        max_poll_interval=None,
    )
for _mode, _deferrable in (("worker", False), ("deferred", True)):
    with DAG(f"grok_test_status_create_{_mode}", schedule=None, start_date=START, params={"prompt": "a fox"}):
        GrokCreateVideoOperator(
            task_id="create",
            prompt="{{ params.prompt }}",
            image_url="https://example.com/fox.png",
            wait_for_completion=True,
            deferrable=_deferrable,
            poll_interval=0.2,
            max_poll_interval=None,
            timeout=30,
            retries=2,
            retry_delay=pendulum.duration(0),
        )
