"""Create one Grok video, wait for it in the triggerer, then use its URL.

With a real key each run buys one video (billed at your plan's price). The wait defers: a triggerer
must run.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from airflow_grok_video.operators.grok_video import GrokCreateVideoOperator
from airflow_grok_video.sensors.grok_video import GrokVideoSensor


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["grok-video", "example"],
    params={"prompt": "A red fox runs through fresh snow at dawn, cinematic"},
)
def grok_video_example() -> None:
    create = GrokCreateVideoOperator(
        task_id="create_video",
        prompt="{{ params.prompt }}",
        # A placeholder the real API cannot fetch: use an image URL of yours.
        image_url="https://example.com/images/fox.png",
        duration=10,
        ratio="16:9",
    )
    wait = GrokVideoSensor(
        task_id="wait_for_video",
        video_task_id=create.output,
        poke_interval=5,
        timeout=30 * 60,
        deferrable=True,
    )

    @task
    def use_video(video_url: str) -> str:
        print(f"Video ready: {video_url}")
        return video_url

    use_video(wait.output)


grok_video_example()
