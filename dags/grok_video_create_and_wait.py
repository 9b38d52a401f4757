"""Create a video and wait for it in one task, then use the URL it pushed under the XCom key ``video_url``.

With a real key each run buys one video (billed at your plan's price). The wait defers: a triggerer
must run.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from airflow_grok_video.operators.grok_video import GrokCreateVideoOperator


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["grok-video", "example"],
)
def grok_video_create_and_wait() -> None:
    video = GrokCreateVideoOperator(
        task_id="make_video",
        prompt="A lighthouse in a storm, waves crashing, dramatic lighting",
        # A placeholder the real API cannot fetch: use an image URL of yours.
        image_url="https://example.com/images/lighthouse.png",
        orientation="portrait",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=5,
        timeout=30 * 60,
        # Safe on Airflow 3.3+: a retry reattaches to the video already bought. On 3.1 and 3.2 a
        # retry may buy a second video: set retries=0 there.
        retries=2,
    )

    @task
    def publish(video_url: str) -> str:
        print(f"Video ready: {video_url}")
        return video_url

    publish(video.output["video_url"])


grok_video_create_and_wait()
