"""A video task as the API's query endpoint describes it, and the rules about its video URL."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from airflow_grok_video._answer import require

#: How long the API keeps ``result.video_url`` valid after the video is done (its docs: 3 days).
VIDEO_URL_LIFETIME = timedelta(days=3)

WAITING_STATUSES = frozenset({"queued", "pending", "submitted", "processing"})
SUCCESS_STATUSES = frozenset({"completed", "success"})
FAILED_STATUS = "failed"

#: Words that make a status the API does not document read as "the task ended without a video":
#: such a status ends the wait as ``failed`` does (a wait on it could only end at the timeout).
ENDED_WORDS = frozenset(
    {
        "abort", "aborted", "cancel", "canceled", "canceling", "cancelled", "cancelling", "deleted",
        "denied", "error", "errored", "errors", "expire", "expired", "fail", "failed", "failure", "invalid",
        "killed", "refused", "rejected", "removed", "stopped", "terminated", "timedout", "timeout",
    }
)  # fmt: skip
#: Words that make a status the API does not document read as "still going" whatever else it says
#: (``error_retrying``): a task that will be tried again has not ended.
RETRYING_WORDS = frozenset({"requeued", "restarting", "resubmitted", "retry", "retrying"})
#: Words that make a status the API does not document read as "done": with a ``result.video_url``
#: the video is handed on; without one the wait goes on (bounded by its timeout), as for ``completed``.
DONE_WORDS = frozenset(
    {"complete", "completed", "done", "finished", "ready", "succeeded", "success", "successful"}
)

#: What a status means for a wait: ``waiting`` (query again), ``done`` (the video is ready, once
#: ``result.video_url`` is there) or ``failed`` (the task ended without a video).
StatusFamily = Literal["waiting", "done", "failed"]


def status_family(status: str) -> StatusFamily:
    """
    What a (lower-cased) status means for a wait, including statuses the API does not document.

    The documented ones mean what the API says. Any other is read by its words (split at anything
    but a letter, e.g. ``cancelled_by_user``, ``timed-out``): one of :data:`RETRYING_WORDS` is
    ``waiting``; else one of :data:`ENDED_WORDS` ends the wait (``failed``: a status that says the
    task ended is not one to wait on for an hour); else one of :data:`DONE_WORDS` is ``done``;
    anything else (``rendering``) is ``waiting``, as the API's docs ask: still running, bounded by
    the wait's timeout, and logged.

    :param status: the status, lower-cased.
    """
    if status in WAITING_STATUSES:
        return "waiting"
    if status in SUCCESS_STATUSES:
        return "done"
    if status == FAILED_STATUS:
        return "failed"
    words = set(re.findall("[a-z]+", status))
    if words & RETRYING_WORDS:
        return "waiting"
    if words & ENDED_WORDS or re.sub("[^a-z]", "", status) in ENDED_WORDS:  # also "timed_out"
        return "failed"
    if words & DONE_WORDS:
        return "done"
    return "waiting"


@dataclass(frozen=True)
class VideoTask:
    """
    One answer of the query endpoint, read once so callers need not know its shape.

    What the answer means for a wait is decided here, for every wait (the sensor in each mode, the
    trigger, the create operator's wait and its reattach): :attr:`succeeded`, :attr:`failed`, or
    neither (still waiting). A status the API does not document is read by :func:`status_family`.

    :param task_id: the API's video task id.
    :param status: the status, lower-cased (``queued``, ``processing``, ``completed``, ...).
    :param progress: 0-100, when the API sent it.
    :param video_url: ``result.video_url``, once there is one.
    :param error_message: why the task ended without a video: the API's ``error_message``; for a
        status the API does not document that ends the wait, a sentence naming the status (and the
        API's ``error_message``, if any), so that every failure raised from it names the status.
    :param created_at: Unix timestamp of the create, when sent.
    :param completed_at: Unix timestamp of completion, when sent.
    """

    task_id: str
    status: str
    progress: int | None = None
    video_url: str | None = None
    error_message: str | None = None
    created_at: int | None = None
    completed_at: int | None = None

    @classmethod
    def from_data(cls, data: dict[str, Any], *, video_task_id: str) -> VideoTask:
        """
        Read a query's ``data``.

        :param data: the envelope's ``data``.
        :param video_task_id: the id that was queried (used when the answer omits it).
        """
        what = f"query video task {video_task_id}"
        result = data.get("result")
        video_url = result.get("video_url") if isinstance(result, dict) else None
        status = require(data, "status", what=what).strip().lower()
        error_message = str(data["error_message"]) if data.get("error_message") else None
        return cls(
            task_id=str(data.get("task_id") or video_task_id),
            status=status,
            progress=_int_or_none(data.get("progress")),
            video_url=video_url if isinstance(video_url, str) and video_url else None,
            error_message=_why_it_ended(status, error_message),
            created_at=_int_or_none(data.get("created_at")),
            completed_at=_int_or_none(data.get("completed_at")),
        )

    @property
    def says_done(self) -> bool:
        """
        The status says the video is done (``completed``, ``success``, or an undocumented ``succeeded``...).

        Its URL may still be missing: then the wait goes on, bounded by its timeout.
        """
        return status_family(self.status) == "done"

    @property
    def succeeded(self) -> bool:
        """The video is done and its URL is known: the wait ends and hands the URL on."""
        return self.says_done and self.video_url is not None

    @property
    def failed(self) -> bool:
        """
        The task ended without a video: ``failed``, or a status the API does not document that says so.

        Such a status (``cancelled``, ``expired``, ``error``...: see :data:`ENDED_WORDS`) ends the
        wait as ``failed`` does, without Airflow retries, with a message naming it (in
        :attr:`error_message`), even if the answer has a ``result.video_url``.
        """
        return status_family(self.status) == "failed"

    def url_expires_at(self) -> datetime | None:
        """
        When a done video's URL stops working (:data:`VIDEO_URL_LIFETIME` after ``completed_at``).

        ``None`` before the video is done, or when the API sent no time.
        """
        done_at = self.completed_at or self.created_at
        if not self.succeeded or done_at is None:
            return None
        return datetime.fromtimestamp(done_at, tz=timezone.utc) + VIDEO_URL_LIFETIME

    def url_expired(self, now: float) -> bool:
        """
        Whether a done video's URL has outlived :data:`VIDEO_URL_LIFETIME`.

        Counted from ``completed_at`` (from ``created_at`` when the API omits it); a video whose
        times are unknown is taken as live.

        :param now: the current Unix time.
        """
        expires = self.url_expires_at()
        return expires is not None and now > expires.timestamp()

    @property
    def known_status(self) -> bool:
        """Whether the status is one the API documents."""
        return (
            self.status in WAITING_STATUSES or self.status in SUCCESS_STATUSES or self.status == FAILED_STATUS
        )

    def describe(self) -> str:
        """Say where the task stands, e.g. ``processing 45%``, and whether its status is undocumented."""
        text = self.status if self.progress is None else f"{self.status} {self.progress}%"
        no_url = self.says_done and self.video_url is None
        if self.known_status:
            return f"{text} (no result.video_url yet)" if no_url else text
        if self.failed:
            return f"{text} (undocumented status; the task has ended)"
        if self.says_done:
            return f"{text} (undocumented status; done{', no result.video_url yet' if no_url else ''})"
        return f"{text} (undocumented status; still waiting)"


def _why_it_ended(status: str, error_message: str | None) -> str | None:
    """
    An answer's :attr:`VideoTask.error_message`: the API's, after the status if the API does not document it.

    :param status: the status, lower-cased.
    :param error_message: the API's ``error_message``, if any.
    """
    if status == FAILED_STATUS or status_family(status) != "failed":
        return error_message
    why = f"status {status!r}, which the API does not document, read as the end of the task"
    return f"{why}: {error_message}" if error_message else f"{why} (no error_message)"


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def url_for_logs(url: str) -> str:
    """
    A video URL as logs and messages may show it: without its query string, fragment or credentials.

    The API's video URLs may be signed, and the signature (in the query) grants access.

    :param url: the URL.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
