"""DAGs of ``@task.grok_video`` that tests/test_decorators.py runs with ``dag.test()``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, task

START = pendulum.datetime(2026, 1, 1, tz="UTC")
IMAGE = "https://example.com/fox.png"
OTHER_IMAGE = "https://example.com/owl.png"
# The function's arguments of the mapped DAG: one video each.
SUBJECTS = ["a fox", "an owl", "a hare"]

# The prompt returned as a str; the decorator's image_url is a template (rendered), the returned
# prompt holds one too (never rendered: it is already Python). Deferred (the default) and in the worker.
for _path, _kwargs in (("deferred", {}), ("worker", {"deferrable": False})):
    with DAG(
        f"grok_test_tf_prompt_{_path}",
        schedule=None,
        start_date=START,
        params={"image": IMAGE, "season": "winter"},
    ):

        @task.grok_video(image_url="{{ params.image }}", poll_interval=0.2, **_kwargs)
        def fox(season: str) -> str:
            return f"a fox in {season}, shot on {{{{ ds }}}}"

        @task
        def length(video_url: str) -> int:
            return len(video_url)

        length(fox(season="{{ params.season }}"))

# A mapping over the decorator's arguments: another duration, image and shape.
with DAG("grok_test_tf_mapping", schedule=None, start_date=START):

    @task.grok_video(image_url=IMAGE, duration=10, orientation="landscape", poll_interval=0.2)
    def owl() -> dict[str, Any]:
        return {"prompt": "an owl at night", "duration": 15, "image_urls": [OTHER_IMAGE], "ratio": "1:1"}

    owl()

# Mapped over the function's arguments (one partial, one expanded), the URLs collected downstream.
with DAG("grok_test_tf_expand", schedule=None, start_date=START):

    @task.grok_video(image_url=IMAGE, poll_interval=0.2)
    def scene(subject: str, style: str) -> str:
        return f"{subject} at dawn, {style}"

    @task
    def collect(video_urls: list[str]) -> list[str]:
        return list(video_urls)

    collect(scene.partial(style="cinematic").expand(subject=SUBJECTS))

# What the function returns, chosen by params["returns"]: each a mistake refused before any request.
BAD_RETURNS: dict[str, Any] = {
    "unknown field": {"prompt": "a fox", "seconds": 15},
    "bad value": {"prompt": "a fox", "duration": "15"},
    "not a prompt": 42,
    "no prompt": {"duration": 15},
}

with DAG("grok_test_tf_bad_return", schedule=None, start_date=START, params={"returns": "unknown field"}):

    @task.grok_video(image_url=IMAGE, retries=2, retry_delay=timedelta(0))
    def bad(params: dict[str, Any] | None = None) -> Any:
        assert params is not None
        return BAD_RETURNS[params["returns"]]

    bad()

# Try 1 defers and its wait times out (1 s) while the video is generating; the retry (3 s later)
# calls the function again, gets the same prompt, and reattaches to the finished video.
with DAG("grok_test_tf_retry", schedule=None, start_date=START):

    @task.grok_video(
        image_url=IMAGE, poll_interval=0.2, timeout=1, retries=1, retry_delay=timedelta(seconds=3)
    )
    def retried() -> str:
        return "a patient fox"

    retried()
