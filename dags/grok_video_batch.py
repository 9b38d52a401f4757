"""A nightly batch: ``@task.grok_video_batch`` buys a list of videos in one task and waits for all of them.

One task instance for the whole list, instead of one create and one wait per video: each item is
checked before the first is bought, each is bought at most once (a retry reattaches to every video
already bought, on Airflow 3.3+), at most ``max_in_flight`` creates are in flight at once, and one
trigger waits for every video. The task returns one result per item, in input order.

Costs money: with a real key each run buys one video per subject, four a run (each billed at your
plan's price). Try it on the emulator first. The wait defers: a triggerer must run.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import dag, task

# One billed video per subject, on every run.
SUBJECTS = ["a lighthouse at dawn", "a tram in the rain", "a kite over the dunes", "a heron at a pond"]


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["grok-video", "example"],
)
def grok_video_batch() -> None:
    @task.grok_video_batch(
        # A placeholder the real API cannot fetch: use an image URL of yours.
        image_url="https://example.com/images/reference.png",
        duration=10,
        max_in_flight=4,
        min_success=3,  # the task fails only if more than one video fails; every failure is named
        poll_interval=5,
        timeout=30 * 60,
        retries=2,  # safe on Airflow 3.3+: a retry buys only what is missing (failed items stay failed)
    )
    def nightly(subjects: list[str]) -> list[Any]:
        # Each item: a prompt, or a mapping of the create's fields over the decorator's.
        items: list[Any] = [f"{subject}, cinematic" for subject in subjects[:-1]]
        return [*items, {"prompt": f"{subjects[-1]}, cinematic", "duration": 15}]

    @task
    def publish(results: list[dict[str, Any]]) -> list[str]:
        urls = [result["video_url"] for result in results if result["status"] == "success"]
        for result in results:
            print(f"Item {result['index']}: {result['status']} {result['video_url'] or result['error']}")
        return urls  # each valid for 3 days: copy it somewhere durable

    publish(nightly(SUBJECTS))


grok_video_batch()
