"""DAGs for the spend caps' race in the production topology (tests/test_scale.py): N mapped creates.

Each DAG buys through a capped connection that the topology gives every component
(``tests/topology.py``, ``CAPPED_CONNECTIONS``): the caps and their store come from the connection.
The creates only buy (no wait), so a run ends as soon as each create was accepted or refused.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_grok_video.operators.grok_video import GrokCreateVideoOperator

START = pendulum.datetime(2026, 1, 1, tz="UTC")
IMAGE = "https://example.com/fox.png"
PARAMS = {"videos": Param(20, type="integer", minimum=1)}
#: DAG id -> the capped connection it buys through; the two "shared" DAGs share one connection.
CAPPED_DAGS = {
    "grok_scale_capped_videos": "grok_capped_videos",
    "grok_scale_capped_seconds": "grok_capped_seconds",
    "grok_scale_capped_shared_a": "grok_capped_shared",
    "grok_scale_capped_shared_b": "grok_capped_shared",
}


@task
def prompts(params: dict[str, Any] | None = None) -> list[str]:
    """One prompt per video the run asks for."""
    assert params is not None
    return [f"capped video {i}" for i in range(int(params["videos"]))]


for _dag_id, _conn_id in CAPPED_DAGS.items():
    with DAG(_dag_id, schedule=None, start_date=START, params=PARAMS, max_active_tasks=200):
        # Retries that a cap's refusal must not use; 10 s videos (the operator's default duration).
        GrokCreateVideoOperator.partial(
            task_id="create",
            image_url=IMAGE,
            grok_conn_id=_conn_id,
            retries=2,
            retry_delay=timedelta(seconds=2),
        ).expand(prompt=prompts())
