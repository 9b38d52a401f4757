"""How a wait for a video ended, recorded in one XCom (``video_outcome``) by every wait when it ends.

The ``purchase`` XCom says which video a task bought; this one says which video its wait ended on,
and how. Every wait pushes it where it ends: the sensor in each mode (poke, reschedule, its look
before deferring, ``execute_complete``), the create operator (and ``@task.grok_video``) waiting in the
worker or deferred, the trigger ending the task in the triggerer (Airflow 3.3+), and the batch
operator (and ``@task.grok_video_batch``, and the batch trigger ending the task) with one record per
item. A failure is pushed right before the task raises :class:`GrokVideoGenerationFailed`, and
stays with the failed try (Airflow clears a task instance's XComs when its next try starts).

One record::

    {"video_task_id": "v1", "status": "success", "video_url": "https://...", "url_expires_at": "2026-..."}
    {"video_task_id": "v2", "status": "failed", "error": "content policy"}

- ``video_task_id``: the API's video task id the wait ended on;
- ``status``: ``success`` (the video is done and has a URL) or ``failed`` (the API says the video
  task failed, or its undocumented status says it ended);
- ``video_url``: on ``success`` only, the video's URL (as the ``video_url`` XCom, which it repeats);
- ``error``: on ``failed`` only, the API's ``error_message`` (``"the API gave no error_message"``
  when it sent none, as the task's failure says);
- ``url_expires_at``: on ``success``, when known, when the URL stops working (ISO 8601, UTC: 3 days
  after the API's ``completed_at``).

A batch pushes a list of such records, each with the item's ``index``, for the items whose wait
ended on their video's end. A wait that ends otherwise (its ``timeout``, an API error, a batch
item that timed out: the video may still finish) pushes no record.

This module imports no operator, sensor or trigger: they import it.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from airflow_grok_video.links.grok_video import VIDEO_URL_XCOM_KEY

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_grok_video.exceptions import GrokVideoGenerationFailed

#: The XCom key of the record (see the module's docstring).
OUTCOME_XCOM_KEY = "video_outcome"

#: How a wait ended, in its record.
OutcomeStatus = Literal["success", "failed"]

#: What a failure's record says when the API sent no ``error_message`` (the words of the task's failure).
NO_ERROR_MESSAGE = "the API gave no error_message"


def outcome(
    video_task_id: str,
    status: OutcomeStatus,
    *,
    video_url: str | None = None,
    error: str | None = None,
    url_expires_at: datetime | str | None = None,
) -> dict[str, str]:
    """
    The record of how the wait for one video ended (see the module's docstring for its shape).

    :param video_task_id: the API's video task id.
    :param status: ``success`` or ``failed``.
    :param video_url: the video's URL (``success`` only, where it is required).
    :param error: the API's ``error_message`` (``failed`` only); ``None`` records that it sent none.
    :param url_expires_at: when the URL stops working (``success`` only): a ``datetime``, or
        already ISO 8601 text; ``None`` when unknown.
    :raises ValueError: an unknown status, or a success without a URL.
    """
    record = {"video_task_id": str(video_task_id), "status": status}
    if status == "success":
        if not video_url:
            raise ValueError(f"a success record needs the video's URL (video task {video_task_id})")
        record["video_url"] = video_url
        if url_expires_at is not None:
            expires = url_expires_at.isoformat() if isinstance(url_expires_at, datetime) else url_expires_at
            record["url_expires_at"] = str(expires)
    elif status == "failed":
        record["error"] = error or NO_ERROR_MESSAGE
    else:
        raise ValueError(f"an outcome's status is 'success' or 'failed', not {status!r}")
    return record


def push_success(
    context: Mapping[str, Any],
    video_task_id: str,
    video_url: str,
    *,
    url_expires_at: datetime | str | None = None,
) -> None:
    """
    Push what a wait that ended with the video pushes: its URL under ``video_url``, and its record.

    The one place a worker pushes the ``video_url`` XCom (a trigger that ends the task pushes the
    same two XComs itself). Without a task instance in ``context`` (called outside a task run),
    nothing is pushed.

    :param context: the task's context.
    :param video_task_id: the API's video task id.
    :param video_url: the video's URL.
    :param url_expires_at: when the URL stops working, when known.
    """
    ti = context.get("ti")
    if ti is None:
        return
    ti.xcom_push(key=VIDEO_URL_XCOM_KEY, value=video_url)
    record = outcome(video_task_id, "success", video_url=video_url, url_expires_at=url_expires_at)
    ti.xcom_push(key=OUTCOME_XCOM_KEY, value=record)


def push_failure(context: Mapping[str, Any], failure: GrokVideoGenerationFailed) -> None:
    """
    Push the record of a wait that ended with the video failed, right before ``failure`` is raised.

    The XCom outlives the failed try (until a next try starts). Without a task instance in
    ``context`` (called outside a task run), nothing is pushed.

    :param context: the task's context.
    :param failure: the exception about to be raised: its video task id and the API's message.
    """
    ti = context.get("ti")
    if ti is None:
        return
    record = outcome(failure.video_task_id, "failed", error=failure.error_message)
    ti.xcom_push(key=OUTCOME_XCOM_KEY, value=record)


def push_outcomes(context: Mapping[str, Any], records: list[dict[str, Any]]) -> None:
    """
    Push a batch's records (one per item whose wait ended on its video's end, with its ``index``).

    Without a task instance in ``context``, nothing is pushed.

    :param context: the task's context.
    :param records: the records, in input order.
    """
    ti = context.get("ti")
    if ti is not None:
        ti.xcom_push(key=OUTCOME_XCOM_KEY, value=records)
