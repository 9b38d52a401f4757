"""What an earlier try of a task instance bought for the same request, and whether it can be handed on.

The one reading of a ledger record (:mod:`airflow_grok_video.operators._ledger`) that both the
create operator and the batch operator act on: reattach to a video still worth having, or buy
again only when the API itself has shown that the earlier video is gone or unusable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum

from airflow_grok_video.exceptions import GrokVideoNotFoundError
from airflow_grok_video.hooks.grok_video import GrokVideoHook
from airflow_grok_video.operators._ledger import CreateLedger, CreateRecord
from airflow_grok_video.video_task import VIDEO_URL_LIFETIME, VideoTask


class Found(Enum):
    """What the ledger and the API say about an earlier try's create."""

    #: No earlier create: buy.
    NOTHING = "nothing"
    #: The earlier create asked for another video (a changed prompt, image, ...): buy; it stays billed.
    CHANGED = "changed"
    #: The earlier create may have been billed, but its id is unknown.
    UNCERTAIN = "uncertain"
    #: The earlier video failed (the API's ``failed``, or a status that says it ended).
    FAILED = "failed"
    #: The API no longer knows the earlier video (its own HTTP 404), or its URL has expired: buy.
    LOST = "lost"
    #: Queued, processing, or done with a live URL: reattach to it.
    USABLE = "usable"


@dataclass(frozen=True)
class Earlier:
    """
    An earlier try's create, as found.

    :param found: what was found.
    :param record: the ledger's record (``None`` for :attr:`Found.NOTHING`).
    :param task: the earlier video as the API describes it now, when it was queried.
    :param why: why it is not reattached to, for the log (empty for ``NOTHING`` and ``USABLE``).
    """

    found: Found
    record: CreateRecord | None = None
    task: VideoTask | None = None
    why: str = ""


def find_earlier(ledger: CreateLedger, digests: dict[str, str], hook: GrokVideoHook) -> Earlier:
    """
    Read the ledger's record and, if it names a video, ask the API how that video is.

    :param ledger: the task instance's (or the batch item's) ledger.
    :param digests: the fingerprint of the create this try would send.
    :param hook: the hook to query the video through.
    :raises GrokVideoAPIError: when the query fails for any reason but the API's own 404 (a
        gateway's 404 among them): no proof that the video is gone, so nothing may be bought.
    """
    record = ledger.previous()
    if record is None:
        return Earlier(Found.NOTHING)
    changed = record.changed_fields(digests)
    if changed:
        earlier = f"video {record.video_task_id}" if record.video_task_id else "a video of unknown id"
        why = (
            f"{record.describe()} for {earlier}, but this try asks for another video (changed: "
            f"{', '.join(changed)}); that earlier create stays billed."
        )
        return Earlier(Found.CHANGED, record, why=why)
    if record.video_task_id is None:
        return Earlier(Found.UNCERTAIN, record)
    try:
        task = hook.get_video_task(record.video_task_id)
    except GrokVideoNotFoundError:
        return Earlier(Found.LOST, record, why=_made(record, "the API no longer knows it"))
    if task.failed:
        return Earlier(Found.FAILED, record, task, _made(record, f"it failed ({task.error_message})"))
    if task.url_expired(time.time()):
        why = (
            f"its URL has expired (video URLs live {VIDEO_URL_LIFETIME.days} days after the video is "
            "done); a copy kept by an earlier run is not affected"
        )
        return Earlier(Found.LOST, record, task, _made(record, why))
    return Earlier(Found.USABLE, record, task)


def _made(record: CreateRecord, why: str) -> str:
    return f"{record.describe()} made video {record.video_task_id}, but {why}"
