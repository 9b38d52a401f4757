"""DAGs the production-topology tests run (tests/test_scale.py): N mapped videos, N from the run's conf."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task, task_group

from airflow_grok_video.operators.grok_video import GrokCreateVideoOperator
from airflow_grok_video.sensors.grok_video import GrokVideoSensor

START = pendulum.datetime(2026, 1, 1, tz="UTC")
IMAGE = "https://example.com/fox.png"
PARAMS = {"videos": Param(4, type="integer", minimum=1)}
RETRIES: dict[str, Any] = {"retries": 2, "retry_delay": timedelta(seconds=2)}


@task
def prompts(params: dict[str, Any] | None = None) -> list[str]:
    """One prompt per video the run asks for."""
    assert params is not None
    return [f"scale video {i}" for i in range(int(params["videos"]))]


@task
def delivered(urls: list[str]) -> list[str]:
    """The downstream task: every video URL, in map order."""
    return list(urls)


with DAG("grok_scale_sensor", schedule=None, start_date=START, params=PARAMS, max_active_tasks=200):
    _creates = GrokCreateVideoOperator.partial(task_id="create", image_url=IMAGE, **RETRIES).expand(
        prompt=prompts()
    )
    _waits = GrokVideoSensor.partial(
        task_id="wait", poke_interval=2, timeout=30 * 60, deferrable=True, **RETRIES
    ).expand(video_task_id=_creates.output)
    delivered(_waits.output)

with DAG("grok_scale_group", schedule=None, start_date=START, params=PARAMS, max_active_tasks=200):

    @task_group
    def one_video(prompt: str) -> Any:
        """A mapped task group: each index waits for its own create, as soon as that create ends."""
        create = GrokCreateVideoOperator(task_id="create", prompt=prompt, image_url=IMAGE, **RETRIES)
        wait = GrokVideoSensor(
            task_id="wait",
            video_task_id=create.output,
            poke_interval=2,
            timeout=30 * 60,
            deferrable=True,
            **RETRIES,
        )
        return wait.output

    delivered(one_video.expand(prompt=prompts()))

with DAG("grok_scale_create_and_wait", schedule=None, start_date=START, params=PARAMS, max_active_tasks=200):
    _videos = GrokCreateVideoOperator.partial(
        task_id="create",
        image_url=IMAGE,
        wait_for_completion=True,
        deferrable=True,
        poll_interval=2,
        **RETRIES,
    ).expand(prompt=prompts())
    delivered(_videos.output["video_url"])

with DAG("grok_scale_worker_wait", schedule=None, start_date=START, params=PARAMS, max_active_tasks=200):
    # Waits in the worker, so that killing a worker kills tries whose video is already bought.
    _held = GrokCreateVideoOperator.partial(
        task_id="create",
        image_url=IMAGE,
        wait_for_completion=True,
        deferrable=False,
        poll_interval=1,
        **RETRIES,
    ).expand(prompt=prompts())
