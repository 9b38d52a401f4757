"""The provider's metrics, sent through the stats client Airflow itself uses (StatsD or OpenTelemetry)."""

from __future__ import annotations


def count(event: str, *, dag_id: str, task_id: str) -> None:
    """
    Count one spend event as ``grok_video.<event>``, tagged with the DAG and the task.

    Events: ``created``, ``reattached``, ``failed``, ``uncertain_create`` (a create whose outcome is
    unknown) and ``uncertain_create_refused`` (a retry that refused to create again).

    :param event: what happened.
    :param dag_id: the DAG's id.
    :param task_id: the task's id.
    """
    from airflow.providers.common.compat.sdk import Stats

    Stats.incr(f"grok_video.{event}", tags={"dag_id": dag_id, "task_id": task_id})
