"""Create a video, wait for it, and keep it: copy it from its 3-day URL to durable storage.

With a real key each run buys one video (billed at your plan's price). The wait defers: a triggerer
must run. ``file://`` is the disk of the worker that runs the keep task.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from airflow_grok_video.operators.grok_video import GrokCreateVideoOperator
from airflow_grok_video.transfers.grok_video_to_storage import GrokVideoToStorageOperator


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["grok-video", "example"],
)
def grok_video_keep() -> None:
    video = GrokCreateVideoOperator(
        task_id="make_video",
        prompt="Waves rolling onto a black sand beach at sunset",
        # A placeholder the real API cannot fetch: use an image URL of yours.
        image_url="https://example.com/images/beach.png",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=5,
    )
    stored = GrokVideoToStorageOperator(
        task_id="keep_video",
        video_url=video.output["video_url"],
        # Any ObjectStoragePath: s3://bucket/... with dest_conn_id="aws_default", gs://..., file://...
        dest="file://{{ var.value.get('grok_video_dir', '/tmp/grok-videos') }}/{{ run_id }}.mp4",
        # What was bought goes into the asset event (see grok_video_on_kept.py, scheduled on it).
        purchase=video.output["purchase"],
    )

    @task
    def announce(uri: str) -> str:
        print(f"Video stored: {uri}")
        return uri

    announce(stored.output)


grok_video_keep()
