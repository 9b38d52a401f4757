"""Reading one field of the API's JSON answers, and quoting an answer in a message.

Shared by the HTTP layer (:mod:`airflow_grok_video.hooks._envelope`) and the model of a video task
(:mod:`airflow_grok_video.video_task`), so that neither imports the other's module.
"""

from __future__ import annotations

import json
from typing import Any

from airflow_grok_video.exceptions import GrokVideoAPIError

#: The envelope's ``code`` of a success.
SUCCESS_CODE = "20000"


def answer_text(answer: Any, limit: int = 300) -> str:
    """
    The API's JSON answer as compact text for a message, cut at ``limit`` characters.

    Only the body is shown: never a header, so never the key.

    :param answer: the decoded JSON (an envelope, or its ``data``).
    :param limit: the longest text returned.
    """
    text = json.dumps(answer, ensure_ascii=False, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def has_field(data: Any, key: str) -> bool:
    """
    Whether ``data[key]`` is a non-empty string or number (not a boolean).

    :param data: the envelope's ``data`` (any JSON value).
    :param key: the field.
    """
    value = data.get(key) if isinstance(data, dict) else None
    return isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip() != ""


def require(data: dict[str, Any], key: str, *, what: str) -> str:
    """
    Return ``data[key]`` as a non-empty string, or raise :class:`GrokVideoAPIError` naming it.

    :param data: the envelope's ``data``.
    :param key: the field that must be there.
    :param what: the call, for messages.
    """
    if not has_field(data, key):
        raise GrokVideoAPIError(
            f"{what}: the API's answer lacks the field {key!r}; its data was {answer_text(data)}",
            http_status=200,
            code=SUCCESS_CODE,
        )
    return str(data[key])
