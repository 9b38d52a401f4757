"""What the Jimmy AI video API sends back: its envelope and its video task.

This module is the one home of the envelope rules; the sync and async paths of
:class:`~airflow_grok_video.hooks.grok_video.GrokVideoHook` both call :func:`unwrap`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from airflow_grok_video.exceptions import GrokVideoAPIError, GrokVideoAuthError, GrokVideoRequestError

DEFAULT_BASE_URL = "https://www.jimmyai.cn"
CREATE_PATH = "/api/open-api/v1/grok/videos"
QUERY_PATH = "/api/open-api/v1/videos/{task_id}"
SUCCESS_CODE = "20000"
#: The XCom key under which the sensor and the waiting create operator push the video URL.
VIDEO_URL_XCOM_KEY = "video_url"
#: How long the API keeps ``result.video_url`` valid after the video is done (its docs: 3 days).
VIDEO_URL_LIFETIME = timedelta(days=3)

WAITING_STATUSES = frozenset({"queued", "pending", "submitted", "processing"})
SUCCESS_STATUSES = frozenset({"completed", "success"})
FAILED_STATUS = "failed"

_TRANSIENT_HTTP_STATUSES = frozenset({408, 429})


def is_transient_status(http_status: int) -> bool:
    """Whether an HTTP status says "try again later": 408, 429 or any 5xx."""
    return http_status in _TRANSIENT_HTTP_STATUSES or http_status >= 500


def unwrap(
    http_status: int,
    body: bytes,
    *,
    what: str,
    retry_after: float | None = None,
) -> dict[str, Any]:
    """
    Return the ``data`` of a ``{"code", "msg", "data"}`` envelope, or raise what went wrong.

    The error never quotes the body: a server's error page may echo request headers.

    :param http_status: the response's HTTP status.
    :param body: the response's raw body.
    :param what: the call, for messages (e.g. ``"create video"``).
    :param retry_after: the response's ``Retry-After``, in seconds, if any.
    :raises GrokVideoAuthError: on HTTP 401/403.
    :raises GrokVideoAPIError: on any other error.
    """
    transient = is_transient_status(http_status)
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    envelope = payload if isinstance(payload, dict) and "code" in payload else None
    code = None if envelope is None else str(envelope.get("code"))
    msg = None if envelope is None else str(envelope.get("msg") or "")
    detail = f"HTTP {http_status}" + ("" if envelope is None else f", code {code}: {msg}")

    if http_status in (401, 403):
        raise GrokVideoAuthError(
            f"{what}: the API key was refused ({detail}); check the connection's password",
            http_status=http_status,
            code=code,
            msg=msg,
        )
    if envelope is None:
        garbled = transient or 200 <= http_status < 300
        raise (GrokVideoAPIError if garbled else GrokVideoRequestError)(
            f"{what}: HTTP {http_status} with a body that is not the API's JSON envelope ({len(body)} bytes)"
            + ("" if garbled else "; is the connection's base URL right?"),
            http_status=http_status,
            transient=garbled,
            retry_after=retry_after,
        )
    if code != SUCCESS_CODE or not 200 <= http_status < 300:
        # The API answered "no" with its own code: the same request gets the same answer. A 5xx
        # (or 408/429) says "later" instead, and stays retryable.
        refused = not transient
        raise (GrokVideoRequestError if refused else GrokVideoAPIError)(
            f"{what}: API error ({detail})",
            http_status=http_status,
            code=code,
            msg=msg,
            transient=transient,
            retry_after=retry_after,
        )
    data = envelope.get("data")
    if not isinstance(data, dict):
        raise GrokVideoAPIError(
            f"{what}: the API's answer has no 'data' object ({detail}); it sent {answer_text(envelope)}",
            http_status=http_status,
            code=code,
            msg=msg,
        )
    return data


def answer_text(answer: Any, limit: int = 300) -> str:
    """
    The API's JSON answer as compact text for a message, cut at ``limit`` characters.

    Only the body is shown: never a header, so never the key.

    :param answer: the decoded JSON (an envelope, or its ``data``).
    :param limit: the longest text returned.
    """
    text = json.dumps(answer, ensure_ascii=False, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


def require(data: dict[str, Any], key: str, *, what: str) -> str:
    """
    Return ``data[key]`` as a non-empty string, or raise :class:`GrokVideoAPIError` naming it.

    :param data: the envelope's ``data``.
    :param key: the field that must be there.
    :param what: the call, for messages.
    """
    value = data.get(key)
    if not isinstance(value, str | int) or isinstance(value, bool) or str(value).strip() == "":
        raise GrokVideoAPIError(
            f"{what}: the API's answer lacks the field {key!r}; its data was {answer_text(data)}",
            http_status=200,
            code=SUCCESS_CODE,
        )
    return str(value)


@dataclass(frozen=True)
class VideoTask:
    """
    One answer of the query endpoint, read once so callers need not know its shape.

    :param task_id: the API's task id.
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

    def url_expired(self, now: float) -> bool:
        """
        Whether a done video's URL has outlived :data:`VIDEO_URL_LIFETIME`.

        Counted from ``completed_at`` (from ``created_at`` when the API omits it); a video whose
        times are unknown is taken as live.

        :param now: the current Unix time.
        """
        done_at = self.completed_at or self.created_at
        return self.succeeded and done_at is not None and now > done_at + VIDEO_URL_LIFETIME.total_seconds()

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
