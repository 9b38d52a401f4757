"""The provider's metrics, sent through the stats client Airflow itself uses (StatsD or OpenTelemetry)."""

from __future__ import annotations


def count(event: str, *, dag_id: str, task_id: str, by: int = 1) -> None:
    """
    Count a spend event as ``grok_video.<event>``, tagged with the DAG and the task.

    Events: ``created``, ``reattached``, ``failed``, ``uncertain_create`` (a create whose outcome is
    unknown), ``uncertain_create_refused`` (a retry that refused to create again),
    ``spend_cap_refused`` (a create a spend cap refused, nothing sent), and the amounts
    bought: ``video_seconds`` (seconds of video created) and ``estimated_cost_micros`` (millionths
    of the currency of the connection's ``price_per_second``).

    :param event: what happened.
    :param dag_id: the DAG's id.
    :param task_id: the task's id.
    :param by: how much to add (1 for an event; seconds or millionths for an amount).
    """
    from airflow.providers.common.compat.sdk import Stats

    Stats.incr(f"grok_video.{event}", count=by, tags={"dag_id": dag_id, "task_id": task_id})


def count_bought(*, dag_id: str, task_id: str, seconds: int, cost: float | None) -> None:
    """
    Count one video bought: ``created``, its ``video_seconds`` and, with a price, ``estimated_cost_micros``.

    :param dag_id: the DAG's id.
    :param task_id: the task's id.
    :param seconds: the video's length.
    :param cost: its estimated cost, when the connection has a price.
    """
    count("created", dag_id=dag_id, task_id=task_id)
    count("video_seconds", dag_id=dag_id, task_id=task_id, by=seconds)
    if cost is not None:
        count("estimated_cost_micros", dag_id=dag_id, task_id=task_id, by=round(cost * 1_000_000))
