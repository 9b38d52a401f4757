"""A video task as the API's query endpoint describes it, and the rules about its video URL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from airflow_grok_video.hooks._envelope import require

#: How long the API keeps ``result.video_url`` valid after the video is done (its docs: 3 days).
VIDEO_URL_LIFETIME = timedelta(days=3)

WAITING_STATUSES = frozenset({"queued", "pending", "submitted", "processing"})
SUCCESS_STATUSES = frozenset({"completed", "success"})
FAILED_STATUS = "failed"


@dataclass(frozen=True)
class VideoTask:
    """
    One answer of the query endpoint, read once so callers need not know its shape.

    :param task_id: the API's video task id.
    :param status: the status, lower-cased (``queued``, ``processing``, ``completed``, ...).
    :param progress: 0-100, when the API sent it.
    :param video_url: ``result.video_url``, once there is one.
    :param error_message: the API's ``error_message`` of a failed task.
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
        return cls(
            task_id=str(data.get("task_id") or video_task_id),
            status=require(data, "status", what=what).strip().lower(),
            progress=_int_or_none(data.get("progress")),
            video_url=video_url if isinstance(video_url, str) and video_url else None,
            error_message=str(data["error_message"]) if data.get("error_message") else None,
            created_at=_int_or_none(data.get("created_at")),
            completed_at=_int_or_none(data.get("completed_at")),
        )

    @property
    def succeeded(self) -> bool:
        """The video is done and its URL is known."""
        return self.status in SUCCESS_STATUSES and self.video_url is not None

    @property
    def failed(self) -> bool:
        """The API gave up on the video."""
        return self.status == FAILED_STATUS

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
        return self.status in WAITING_STATUSES or self.status in SUCCESS_STATUSES or self.failed

    def describe(self) -> str:
        """Say where the task stands, e.g. ``processing 45%``."""
        text = self.status if self.progress is None else f"{self.status} {self.progress}%"
        if self.status in SUCCESS_STATUSES and self.video_url is None:
            text += " (no result.video_url yet)"
        elif not self.known_status:
            text += " (undocumented status; still waiting)"
        return text


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
