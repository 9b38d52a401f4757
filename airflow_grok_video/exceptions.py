"""Exceptions raised by the Grok video provider.

Errors a retry cannot fix, and that a retry might pay for again, derive from Airflow's
``AirflowFailException`` so that Airflow does not retry the task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

if TYPE_CHECKING:
    from airflow_grok_video.billing import Verdict


class GrokVideoValidationError(AirflowFailException, ValueError):
    """
    A parameter was refused before any request was sent.

    :param field: the parameter's name.
    :param value: the value that was given.
    :param allowed: what the API allows for that parameter.
    """

    def __init__(self, field: str, value: Any, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"Invalid {field}={value!r} ({type(value).__name__}): {allowed}.")


class GrokVideoAPIError(AirflowException):
    """
    The Jimmy AI video API answered with an error, an unexpected body, or could not be reached.

    :param message: what went wrong, for people.
    :param http_status: the HTTP status of the response, or ``None`` when there was no response.
    :param code: the envelope's ``code`` when the API sent one (``"20000"`` means success).
    :param msg: the envelope's ``msg`` when the API sent one.
    :param transient: whether the same request may succeed when sent again later
        (network errors, timeouts, HTTP 408/429/5xx, a body that is not the API's JSON).
    :param sent: ``False`` only when the request certainly never reached the server
        (connection refused, DNS failure, connect timeout).
    :param retry_after: seconds the server asked us to wait (``Retry-After``), if it did.
    :param verdict: for a create, what the failure says about the video it asked for (see
        :mod:`airflow_grok_video.billing`); ``None`` for any other call.
    """

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: str | None = None,
        msg: str | None = None,
        transient: bool = False,
        sent: bool = True,
        retry_after: float | None = None,
        verdict: Verdict | None = None,
    ) -> None:
        self.http_status = http_status
        self.code = code
        self.msg = msg
        self.transient = transient
        self.sent = sent
        self.retry_after = retry_after
        self.verdict = verdict
        super().__init__(message)


class GrokVideoAuthError(GrokVideoAPIError, AirflowFailException):
    """The API refused the API key (HTTP 401 or 403); retrying cannot help."""


class GrokVideoRequestError(GrokVideoAPIError, AirflowFailException):
    """
    The API refused the request itself.

    For a query: the API's own error code with HTTP 2xx or 4xx (other than 401, 403, 408 and 429).
    For a create, what the billing table (:mod:`airflow_grok_video.billing`) calls refused: a
    client-error code (``4xxxx``) with HTTP 2xx or 4xx, or a server's HTTP 4xx without the API's
    envelope.

    The same request would be refused again (e.g. a parameter the API rejects, or a video task id the
    API does not know), so Airflow does not retry it.
    """


class GrokVideoNotFoundError(GrokVideoRequestError):
    """
    The API says, in its own envelope with HTTP 404, that the queried video task does not exist.

    Only this answer tells a create operator's retry that an earlier try's video is gone (and a new
    one may be bought); any other failure of the query (a gateway's HTML 404 among them) fails the try.
    """


class GrokVideoUncertainCreateError(GrokVideoAPIError, AirflowFailException):
    """
    A create request failed after it may have reached the API.

    A video may have been created and billed, and its video task id is unknown, so the request is
    not sent again.
    """


class GrokVideoGenerationFailed(AirflowFailException):
    """
    The API reports the video task as ``failed`` (or as having ended).

    Also raised for a status the API does not document that says the task ended (``cancelled``,
    ``expired``, ...; ``error_message`` then names the status).

    :param video_task_id: the API's video task id.
    :param error_message: the API's ``error_message``.
    """

    def __init__(self, video_task_id: str, error_message: str | None) -> None:
        self.video_task_id = video_task_id
        self.error_message = error_message
        super().__init__(
            f"Grok video task {video_task_id} failed: {error_message or 'the API gave no error_message'}"
        )


class GrokVideoSpendCapError(AirflowFailException):
    """
    A create was refused before it was sent: it would cross a spend cap.

    See :mod:`airflow_grok_video.spend_caps`.

    Airflow does not retry it: the cap holds until its window resets, or until it is raised.

    :param cap: the cap's name, e.g. ``videos_per_day``.
    :param message: the whole explanation: the cap, its limit and source, what the window holds,
        and when it resets.
    """

    def __init__(self, cap: str, message: str) -> None:
        self.cap = cap
        super().__init__(message)


class GrokVideoSpendStoreError(AirflowException):
    """
    The spend caps' store could not be read or written, so no create was sent (caps fail closed).

    Nothing was bought, so Airflow's retries may try again once the store is back.
    """
