"""The fan-out in TaskFlow: ``@task.grok_video`` buys one video per subject and returns its URL.

The function returns the prompt; the decorator creates the video (validated first, recorded so that
a retry reattaches), waits for it deferred, and returns the URL, which the next task receives.

Costs money: with a real key each run buys one video per subject, three a run (each billed at your
plan's price). Try it on the emulator first. The waits defer: a triggerer must run.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

# One billed video per subject, on every run.
SUBJECTS = [
    "A paper boat drifting down a rainy street",
    "A city skyline going from dusk to night",
    "A hummingbird hovering over a red flower",
]


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["grok-video", "example"],
)
def grok_video_taskflow() -> None:
    @task.grok_video(
        # A placeholder the real API cannot fetch: use an image URL of yours.
        image_url="https://example.com/images/reference.png",
        orientation="landscape",
        poll_interval=5,
        timeout=30 * 60,
        # Safe on Airflow 3.3+: a retry reattaches to the video already bought. On 3.1 and 3.2 a
        # retry may buy a second video: set retries=0 there.
        retries=2,
    )
    def make_video(subject: str, style: str) -> str:
        # Build the prompt from the arguments (or the context, XComs, ...); return a mapping such as
        # {"prompt": ..., "duration": 15} to override the decorator's arguments too.
        return f"{subject}, {style}"

    @task
    def publish(video_urls: list[str]) -> list[str]:
        urls = list(video_urls)
        for url in urls:
            print(f"Video ready: {url}")  # valid for 3 days: copy it somewhere durable
        return urls

    publish(make_video.partial(style="cinematic, slow motion").expand(subject=SUBJECTS))


grok_video_taskflow()
