"""DAGs a real Airflow deployment runs in the tests (see tests/deployment.py)."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, task

from airflow_grok_video.operators.grok_video import GrokCreateVideoOperator
from airflow_grok_video.sensors.grok_video import GrokVideoSensor

START = pendulum.datetime(2026, 1, 1, tz="UTC")
IMAGE = "https://example.com/fox.png"

with DAG("grok_deploy_fan_out", schedule=None, start_date=START, max_active_tasks=32):
    creates = GrokCreateVideoOperator.partial(task_id="create", image_url=IMAGE).expand(
        prompt=[f"video number {i}" for i in range(20)]
    )
    GrokVideoSensor.partial(task_id="wait", poke_interval=2, timeout=15 * 60, deferrable=True).expand(
        video_task_id=creates.output
    )

with DAG("grok_deploy_create_and_wait", schedule=None, start_date=START):
    GrokCreateVideoOperator(
        task_id="create",
        prompt="a fox in the worker",
        image_url=IMAGE,
        wait_for_completion=True,
        deferrable=False,
        poll_interval=1,
        retries=1,
        retry_delay=timedelta(seconds=2),
    )

with DAG("grok_deploy_single", schedule=None, start_date=START):
    _create = GrokCreateVideoOperator(task_id="create", prompt="a quick fox", image_url=IMAGE)
    _wait = GrokVideoSensor(task_id="wait", video_task_id=_create.output, poke_interval=1, deferrable=True)

    @task
    def use(video_url: str) -> str:
        return video_url

    use(_wait.output)
