"""Batches of videos in a real Airflow deployment (tests/test_deployment_batch.py)."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_grok_video.operators.grok_video_batch import GrokCreateVideoBatchOperator

START = pendulum.datetime(2026, 1, 1, tz="UTC")
IMAGE = "https://example.com/fox.png"
BATCH_VIDEOS = 12
BATCH_IN_FLIGHT = 3
# Each prompt holds "batch fox": the tests' emulator rules set those videos' generation time.
BATCH_PROMPTS = [f"a batch fox number {i}" for i in range(BATCH_VIDEOS)]

with DAG("grok_deploy_batch", schedule=None, start_date=START):
    GrokCreateVideoBatchOperator(
        task_id="batch",
        items=BATCH_PROMPTS,
        image_url=IMAGE,
        max_in_flight=BATCH_IN_FLIGHT,
        poll_interval=1,
        timeout=10 * 60,
        deferrable=True,
    )

# Its worker is killed in the middle of the creates: the retry reattaches to every video bought,
# buys what was never sent, and reports the creates that were in flight (at most max_in_flight)
# as uncertain, which min_success allows.
with DAG("grok_deploy_batch_killed", schedule=None, start_date=START):
    GrokCreateVideoBatchOperator(
        task_id="batch",
        items=BATCH_PROMPTS,
        image_url=IMAGE,
        max_in_flight=BATCH_IN_FLIGHT,
        min_success=BATCH_VIDEOS - BATCH_IN_FLIGHT,
        poll_interval=1,
        timeout=10 * 60,
        deferrable=True,
        retries=1,
        retry_delay=timedelta(seconds=2),
    )
