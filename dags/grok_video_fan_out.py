"""Generate one video per prompt with dynamic task mapping, then collect the URLs.

Costs money: with a real key each run buys one video per prompt, three a run (each billed at your
plan's price). Try it on the emulator first. The waits defer: a triggerer must run.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from airflow_grok_video.operators.grok_video import GrokCreateVideoOperator
from airflow_grok_video.sensors.grok_video import GrokVideoSensor

# One billed video per prompt, on every run.
PROMPTS = [
    "A paper boat drifts down a rainy street",
    "Time-lapse of a city skyline from dusk to night",
    "A hummingbird hovers over a red flower, slow motion",
]


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["grok-video", "example"],
)
def grok_video_fan_out() -> None:
    creates = GrokCreateVideoOperator.partial(
        task_id="create_video",
        # A placeholder the real API cannot fetch: use an image URL of yours.
        image_url="https://example.com/images/reference.png",
        orientation="landscape",
    ).expand(prompt=PROMPTS)

    videos = GrokVideoSensor.partial(
        task_id="wait_for_video",
        poke_interval=5,
        timeout=30 * 60,
        deferrable=True,
    ).expand(video_task_id=creates.output)

    @task
    def collect(video_urls: list[str]) -> list[str]:
        urls = list(video_urls)
        for url in urls:
            print(f"Video ready: {url}")
        return urls

    collect(videos.output)


grok_video_fan_out()
