"""``@task.grok_video`` in a real Airflow deployment (tests/test_deployment_taskflow.py)."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

START = pendulum.datetime(2026, 1, 1, tz="UTC")
IMAGE = "https://example.com/fox.png"
# Each prompt holds "taskflow quick": the test's emulator rule makes those videos short.
TASKFLOW_PROMPTS = [f"a taskflow quick fox number {i}" for i in range(3)]

with DAG("grok_deploy_taskflow", schedule=None, start_date=START, max_active_tasks=8):

    @task.grok_video(image_url=IMAGE, poll_interval=1)
    def taskflow_video(prompt: str) -> str:
        return prompt

    @task
    def received(video_urls: list[str]) -> list[str]:
        return list(video_urls)

    received(taskflow_video.expand(prompt=TASKFLOW_PROMPTS))
