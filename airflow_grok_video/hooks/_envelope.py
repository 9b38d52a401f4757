"""The Jimmy AI video API's wire rules: its paths and its ``{"code", "msg", "data"}`` envelope.

This module is the one home of the envelope rules; the sync and async paths of
:class:`~airflow_grok_video.hooks.grok_video.GrokVideoHook` both call :func:`unwrap`.
"""

from __future__ import annotations

import json
from typing import Any

from airflow_grok_video.exceptions import GrokVideoAPIError, GrokVideoAuthError, GrokVideoRequestError

DEFAULT_BASE_URL = "https://www.jimmyai.cn"
CREATE_PATH = "/api/open-api/v1/grok/videos"
QUERY_PATH = "/api/open-api/v1/videos/{task_id}"
SUCCESS_CODE = "20000"

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
