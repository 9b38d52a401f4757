"""The Jimmy AI video API's wire rules: its paths and its ``{"code", "msg", "data"}`` envelope.

This module is the one home of the envelope rules; the sync and async paths of
:class:`~airflow_grok_video.hooks.grok_video.GrokVideoHook` both call :func:`unwrap`. What a
create's answer means for billing is not decided here but by :mod:`airflow_grok_video.billing`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from airflow_grok_video._answer import SUCCESS_CODE, answer_text, has_field
from airflow_grok_video.billing import CreateOutcome, Stage, Verdict, create_error, decide
from airflow_grok_video.exceptions import (
    GrokVideoAPIError,
    GrokVideoAuthError,
    GrokVideoNotFoundError,
    GrokVideoRequestError,
)

__all__ = ["CREATE_PATH", "DEFAULT_BASE_URL", "QUERY_PATH", "SUCCESS_CODE", "is_transient_status", "unwrap"]

DEFAULT_BASE_URL = "https://www.jimmyai.cn"
CREATE_PATH = "/api/open-api/v1/grok/videos"
QUERY_PATH = "/api/open-api/v1/videos/{task_id}"

_TRANSIENT_HTTP_STATUSES = frozenset({408, 429})


def is_transient_status(http_status: int) -> bool:
    """Whether an HTTP status says "try again later": 408, 429 or any 5xx."""
    return http_status in _TRANSIENT_HTTP_STATUSES or http_status >= 500


@dataclass(frozen=True)
class Envelope:
    """
    A body that is, or looks like, the API's envelope.

    :param code: its ``code``, as a string.
    :param msg: its ``msg`` (empty when absent).
    :param data: its ``data``, whatever JSON it is.
    :param strict: whether ``code`` and ``msg`` are JSON strings, as in the API's own envelope. A
        body with a ``code`` of another kind (a gateway's ``{"code": 404, "message": "no route"}``)
        only looks like one, and says nothing of the API's.
    """

    code: str
    msg: str
    data: Any
    strict: bool = True

    @classmethod
    def read(cls, body: bytes) -> Envelope | None:
        """
        The envelope of a body, or ``None`` when the body is not one (not JSON, or no ``code``).

        :param body: the response's raw body.
        """
        try:
            payload = json.loads(body)
        except ValueError:
            return None
        if not isinstance(payload, dict) or "code" not in payload:
            return None
        code, msg = payload["code"], payload.get("msg")
        strict = isinstance(code, str) and isinstance(msg, str)
        return cls(str(code), str(msg or ""), payload.get("data"), strict)

    def succeeded(self, http_status: int) -> bool:
        """
        Whether this answer is a success: HTTP 2xx with the success code.

        :param http_status: the response's HTTP status.
        """
        return self.code == SUCCESS_CODE and 200 <= http_status < 300


def unwrap(
    http_status: int,
    body: bytes,
    *,
    what: str,
    retry_after: float | None = None,
    creates: bool = False,
    resend_on_429: bool = True,
) -> dict[str, Any]:
    """
    Return the ``data`` of a ``{"code", "msg", "data"}`` envelope, or raise what went wrong.

    A create's answer is judged by the billing table (:func:`airflow_grok_video.billing.decide`):
    only an accepted create returns, and its error carries the verdict. A query's error is
    transient (retried) on HTTP 408, 429 and 5xx; a 404 in the API's own envelope (``code`` and
    ``msg`` JSON strings, whatever the code) is :class:`GrokVideoNotFoundError`; any other answer
    without the API's envelope fails without being final (a gateway's page says nothing about the
    video), an error that only looks like the envelope (see :attr:`Envelope.strict`) among them.

    The error never quotes the body: a server's error page may echo request headers.

    :param http_status: the response's HTTP status.
    :param body: the response's raw body.
    :param what: the call, for messages (e.g. ``"create video"``).
    :param retry_after: the response's ``Retry-After``, in seconds, if any.
    :param creates: whether the request was a create.
    :param resend_on_429: for a create, whether HTTP 429 means "not accepted" (the connection's
        ``resend_create_on_429`` extra).
    :raises GrokVideoAuthError: on HTTP 401/403.
    :raises GrokVideoAPIError: on any other error.
    """
    envelope = Envelope.read(body)
    if not creates and envelope is not None and not envelope.strict and not envelope.succeeded(http_status):
        envelope = None  # an error only the API's own envelope can tell; a look-alike is a gateway's
    if envelope is None:
        detail = f"HTTP {http_status}, {len(body)} bytes"
    else:
        detail = f"HTTP {http_status}, code {envelope.code}: {envelope.msg}"
    if creates:
        return _create_data(http_status, envelope, detail, what, retry_after, resend_on_429)
    fields: dict[str, Any] = {"http_status": http_status, "retry_after": retry_after}
    if envelope is not None:
        fields.update(code=envelope.code, msg=envelope.msg)
    transient = is_transient_status(http_status)
    if http_status in (401, 403):
        raise GrokVideoAuthError(
            f"{what}: the API key was refused ({detail}); check the connection's password", **fields
        )
    if envelope is None:
        hint = "" if transient or 200 <= http_status < 300 else "; is the connection's base URL right?"
        raise GrokVideoAPIError(
            f"{what}: a body that is not the API's JSON envelope ({detail}){hint}",
            transient=transient or 200 <= http_status < 300,
            **fields,
        )
    if not envelope.succeeded(http_status):
        # The API answered "no" with its own code: the same request gets the same answer. A 5xx
        # (or 408/429) says "later" instead, and stays retryable.
        if transient:
            raise GrokVideoAPIError(f"{what}: API error ({detail})", transient=True, **fields)
        refused = GrokVideoNotFoundError if http_status == 404 else GrokVideoRequestError
        raise refused(f"{what}: API error ({detail})", **fields)
    if not isinstance(envelope.data, dict):
        raise GrokVideoAPIError(
            f"{what}: the API's answer has no 'data' object ({detail}); it sent {answer_text(envelope.data)}",
            **fields,
        )
    return envelope.data


def _create_data(
    http_status: int,
    envelope: Envelope | None,
    detail: str,
    what: str,
    retry_after: float | None,
    resend_on_429: bool,
) -> dict[str, Any]:
    """A create's ``data`` when the billing table says accepted; its verdict's error otherwise."""
    outcome = CreateOutcome(
        Stage.ANSWERED,
        http_status,
        None if envelope is None else envelope.code,
        has_task_id=envelope is not None and has_field(envelope.data, "task_id"),
        resend_on_429=resend_on_429,
    )
    row = decide(outcome)
    if row.verdict is Verdict.ACCEPTED and envelope is not None:
        data: dict[str, Any] = envelope.data
        return data
    if http_status in (401, 403):
        problem = "the API key was refused; check the connection's password"
    elif envelope is None:
        problem = "an answer that is not the API's JSON envelope"
    elif envelope.code == SUCCESS_CODE and not outcome.has_task_id:
        sent = {"code": envelope.code, "msg": envelope.msg, "data": envelope.data}
        problem = f"a success without a video task id (it sent {answer_text(sent)})"
    else:
        problem = "an API error"
    raise create_error(
        row,
        f"{what}: {problem} ({detail})",
        http_status=http_status,
        code=None if envelope is None else envelope.code,
        msg=None if envelope is None else envelope.msg,
        retry_after=retry_after,
    )
