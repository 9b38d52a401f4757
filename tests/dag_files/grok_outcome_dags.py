"""DAGs of tests/test_outcome.py (the ``video_outcome`` XCom); it runs the other files' waits too."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import AirflowException
from airflow.sdk import DAG, task

from airflow_grok_video.exceptions import GrokVideoGenerationFailed
from airflow_grok_video.operators.grok_video import GrokCreateVideoOperator
from airflow_grok_video.outcome import OUTCOME_XCOM_KEY, push_failure
from airflow_grok_video.transfers.grok_video_to_storage import GrokVideoToStorageOperator

START = pendulum.datetime(2026, 1, 1, tz="UTC")
IMAGE = "https://example.com/fox.png"
#: The storage connection id the kept copy is opened with (``file://`` reads no connection).
KEEP_CONN_ID = "grok_outcome_storage"

# How long a failed try's outcome lives, in Airflow itself: try 1 records a failure, as a wait does
# before raising, then fails (a retryable error); try 2 returns what it finds of that record.
with DAG("grok_test_outcome_next_try", schedule=None, start_date=START):

    @task(retries=1, retry_delay=timedelta(0))
    def wait(**context: Any) -> dict[str, Any]:
        ti = context["ti"]
        if ti.try_number == 1:
            push_failure(context, GrokVideoGenerationFailed("video_of_try_1", "content policy"))
            raise AirflowException("try 1 fails after recording its outcome")
        return {"seen": ti.xcom_pull(task_ids=ti.task_id, key=OUTCOME_XCOM_KEY)}

    wait()

# Create and wait in one task, then keep the video at params.dest, opened with a storage connection.
with DAG("grok_test_outcome_keep", schedule=None, start_date=START, params={"dest": "file:///tmp/none.mp4"}):
    _made = GrokCreateVideoOperator(
        task_id="make",
        prompt="a fox keeps its den",
        image_url=IMAGE,
        wait_for_completion=True,
        deferrable=False,
        poll_interval=0.2,
    )
    GrokVideoToStorageOperator(
        task_id="keep",
        video_url=_made.output["video_url"],
        dest="{{ params.dest }}",
        dest_conn_id=KEEP_CONN_ID,
        purchase=_made.output["purchase"],
    )
