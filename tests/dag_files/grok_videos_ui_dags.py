"""DAGs whose videos the Videos plugin shows (tests/test_videos_plugin.py)."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_grok_video.operators.grok_video import GrokCreateVideoOperator
from airflow_grok_video.operators.grok_video_batch import GrokCreateVideoBatchOperator
from airflow_grok_video.sensors.grok_video import GrokVideoSensor
from airflow_grok_video.transfers.grok_video_to_storage import GrokVideoToStorageOperator

START = pendulum.datetime(2026, 1, 1, tz="UTC")
IMAGE = "https://example.com/fox.png"

# Create and wait in one task, then keep the video at params.dest.
with DAG("grok_ui_keep", schedule=None, start_date=START, params={"dest": "memory://ui/none.mp4"}):
    made = GrokCreateVideoOperator(
        task_id="make",
        prompt="a heron lands on a quiet pond",
        image_url=IMAGE,
        duration=15,
        ratio="16:9",
        wait_for_completion=True,
        deferrable=False,
        poll_interval=0.2,
    )
    GrokVideoToStorageOperator(
        task_id="keep",
        video_url=made.output["video_url"],
        dest="{{ params.dest }}",
        purchase=made.output["purchase"],
    )

# Create, then wait with a sensor: the prompt comes from params (a rule may fail it).
with DAG("grok_ui_sensor", schedule=None, start_date=START, params={"prompt": "a fox in the snow"}):
    created = GrokCreateVideoOperator(
        task_id="create", prompt="{{ params.prompt }}", image_url=IMAGE, orientation="portrait"
    )
    GrokVideoSensor(
        task_id="wait",
        video_task_id=created.output,
        poke_interval=0.2,
        mode="poke",
        deferrable=False,
        timeout=60,
    )

# A batch of three, the last one failed by a rule in the test.
with DAG("grok_ui_batch", schedule=None, start_date=START):
    GrokCreateVideoBatchOperator(
        task_id="nightly",
        image_url=IMAGE,
        items=["a fox and owls", {"prompt": "a fox and hares", "duration": 15}, "a doomed fox"],
        poll_interval=0.2,
        min_success=1,
        deferrable=False,
    )
