"""DAGs a real Airflow deployment runs in the tests (see tests/deployment.py)."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, TaskGroup, task, task_group

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


# Every way a deferrable sensor starts in the triggerer (Airflow 3.3+), in one run: each wait reads
# its own video (tests/test_deployment.py).
START_PATTERN_VIDEOS = 3

with DAG("grok_deploy_start_patterns", schedule=None, start_date=START, max_active_tasks=32):
    _one = GrokCreateVideoOperator(task_id="create", prompt="a quick start fox", image_url=IMAGE)
    # Not mapped, at the top and in a (not mapped) task group.
    GrokVideoSensor(task_id="wait", video_task_id=_one.output, poke_interval=1, deferrable=True)
    with TaskGroup("nested"):
        GrokVideoSensor(task_id="wait", video_task_id=_one.output, poke_interval=1, deferrable=True)

    # Mapped over a mapped create's output.
    _creates = GrokCreateVideoOperator.partial(task_id="creates", image_url=IMAGE).expand(
        prompt=[f"a quick mapped fox {i}" for i in range(START_PATTERN_VIDEOS)]
    )
    GrokVideoSensor.partial(task_id="waits", poke_interval=1, deferrable=True).expand(
        video_task_id=_creates.output
    )

    # A mapped task group: each index waits for its own create, also from a group nested in it,
    # and for the one video made outside the group.
    @task_group
    def one_video(prompt: str) -> None:
        create = GrokCreateVideoOperator(task_id="create", prompt=prompt, image_url=IMAGE)
        GrokVideoSensor(task_id="wait", video_task_id=create.output, poke_interval=1, deferrable=True)
        with TaskGroup("nested"):
            GrokVideoSensor(task_id="wait", video_task_id=create.output, poke_interval=1, deferrable=True)
        GrokVideoSensor(task_id="wait_outside", video_task_id=_one.output, poke_interval=1, deferrable=True)

    one_video.expand(prompt=[f"a quick grouped fox {i}" for i in range(START_PATTERN_VIDEOS)])


# Many waits starting together in the triggerer (tests/test_deployment.py, issue 25): every sensor
# reads the one create's video, so the scheduler defers them all at once when the create ends. Their
# first queries come 10-20 s after each starts, once the triggerer has started them all.
TOGETHER_WAITS = 100

with DAG("grok_deploy_together", schedule=None, start_date=START, max_active_tasks=TOGETHER_WAITS + 1):
    _video = GrokCreateVideoOperator(task_id="create", prompt="a fox for everyone", image_url=IMAGE)
    for _i in range(TOGETHER_WAITS):
        GrokVideoSensor(task_id=f"wait_{_i}", video_task_id=_video.output, poke_interval=20, deferrable=True)


# Many waits taken over together by a new triggerer (tests/test_deployment.py, issue 25): each create
# defers its own wait from its worker (no start in the triggerer, so Airflow renders no template
# there), and a triggerer that starts after the first one died takes every wait at once.
TAKEOVER_WAITS = 20

with DAG("grok_deploy_takeover", schedule=None, start_date=START, max_active_tasks=TAKEOVER_WAITS):
    GrokCreateVideoOperator.partial(
        task_id="make", image_url=IMAGE, wait_for_completion=True, deferrable=True, poll_interval=10
    ).expand(prompt=[f"a fox taken over {_i}" for _i in range(TAKEOVER_WAITS)])
