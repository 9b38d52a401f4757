"""Could this create have been accepted, and billed? The one table every path reads.

Every create is billed once the API accepts it, and the API has no idempotency key, so what a
failed create means decides whether a second one may be sent. :data:`TABLE` is that decision,
written once: for the stage the request reached and the answer it got, exactly one
:class:`Verdict`. The hook's create (its retries and its final error), the envelope reader and the
create operator's ledger all read :func:`decide`; the docs' table ("Spend safety") is
:func:`table_markdown`, checked by the test suite.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol

from airflow_grok_video._answer import SUCCESS_CODE
from airflow_grok_video.exceptions import (
    GrokVideoAPIError,
    GrokVideoAuthError,
    GrokVideoRequestError,
    GrokVideoUncertainCreateError,
)


class Verdict(str, enum.Enum):
    """What one create's outcome says about the video it asked for."""

    #: The API cannot have accepted it: nothing was bought, the create may be sent again.
    NOT_ACCEPTED = "not accepted"
    #: The API refused the request itself: nothing was bought, and the same request would be refused
    #: again, so the task fails without Airflow retries.
    REFUSED = "refused"
    #: The API accepted it and said which video task it made.
    ACCEPTED = "accepted"
    #: It may have been accepted (and billed) without its id being known: never sent again
    #: automatically; the task fails without retries saying so.
    UNCERTAIN = "uncertain"


class Stage(str, enum.Enum):
    """How far one create request got."""

    NOT_SENT = "not sent"
    NO_ANSWER = "sent, no answer"
    ANSWERED = "answered"


#: Matches any value in a :class:`Row`.
ANY = "any"


@dataclass(frozen=True)
class Row:
    """
    One row of the billing table: the first row matching an outcome gives its verdict.

    :param stage: how far the request got.
    :param status: the HTTP status class (see :func:`status_class`), or :data:`ANY`.
    :param body: the body's class (see :func:`body_class`), or :data:`ANY`.
    :param verdict: the verdict.
    :param why: the reason, for the docs and for messages.
    """

    stage: Stage
    status: str
    body: str
    verdict: Verdict
    why: str

    def matches(self, stage: Stage, status: str, body: str) -> bool:
        """
        Whether this row applies.

        :param stage: the outcome's stage.
        :param status: its status class.
        :param body: its body class.
        """
        return self.stage is stage and self.status in (ANY, status) and self.body in (ANY, body)


# Status classes.
REDIRECT = "3xx"
TOO_MANY = "429"
TOO_MANY_DISTRUSTED = "429 with resend_create_on_429 false"
AUTH = "401, 403"
REQUEST_TIMEOUT = "408"
CLIENT_ERROR = "other 4xx"
SERVER_ERROR = "5xx"
SUCCESS = "2xx"
OTHER_STATUS = "any other"

# Body classes.
NOT_ENVELOPE = "not the API's envelope"
CREATED = "code 20000 with data.task_id"
SUCCESS_WITHOUT_ID = "code 20000 without data.task_id"
CLIENT_CODE = "code 4xxxx"
OTHER_CODE = "any other code"

NOT_ANSWERED = "-"

TABLE: tuple[Row, ...] = (
    Row(
        Stage.NOT_SENT,
        NOT_ANSWERED,
        NOT_ANSWERED,
        Verdict.NOT_ACCEPTED,
        "nothing left this machine, or it never reached the API: the request could not be built, the "
        "connection was refused or timed out, the host was not found, the TLS handshake did not finish, "
        "or the proxy refused the connection or its CONNECT",
    ),
    Row(
        Stage.NO_ANSWER,
        NOT_ANSWERED,
        NOT_ANSWERED,
        Verdict.UNCERTAIN,
        "the request was sent and the connection failed (reset, read timeout) before an answer: the API "
        "may have accepted it",
    ),
    Row(
        Stage.ANSWERED,
        REDIRECT,
        ANY,
        Verdict.UNCERTAIN,
        "a redirect is not the API's answer, and the API may have accepted the request before sending "
        "it; the create never follows redirects",
    ),
    Row(
        Stage.ANSWERED,
        TOO_MANY,
        ANY,
        Verdict.NOT_ACCEPTED,
        "rests on HTTP 429 meaning the request was turned away before it was processed; it is sent again "
        "after Retry-After (set the connection extra resend_create_on_429 to false not to rely on it)",
    ),
    Row(
        Stage.ANSWERED,
        TOO_MANY_DISTRUSTED,
        ANY,
        Verdict.UNCERTAIN,
        "the connection does not rely on HTTP 429 meaning 'not accepted'",
    ),
    Row(Stage.ANSWERED, AUTH, ANY, Verdict.REFUSED, "the API key was refused"),
    Row(
        Stage.ANSWERED,
        REQUEST_TIMEOUT,
        ANY,
        Verdict.UNCERTAIN,
        "a timeout answered by the server or a gateway may come after the API accepted the request",
    ),
    Row(Stage.ANSWERED, CLIENT_ERROR, CLIENT_CODE, Verdict.REFUSED, "the request itself was refused"),
    Row(
        Stage.ANSWERED,
        CLIENT_ERROR,
        NOT_ENVELOPE,
        Verdict.REFUSED,
        "a server or gateway refused the request itself (the create never follows redirects, so it is "
        "the connection's host that refused)",
    ),
    Row(
        Stage.ANSWERED,
        CLIENT_ERROR,
        ANY,
        Verdict.UNCERTAIN,
        "the status and the envelope's code disagree",
    ),
    Row(
        Stage.ANSWERED,
        SERVER_ERROR,
        ANY,
        Verdict.UNCERTAIN,
        "a server error may come after the API accepted the request",
    ),
    Row(Stage.ANSWERED, SUCCESS, CREATED, Verdict.ACCEPTED, "the video task was created"),
    Row(
        Stage.ANSWERED,
        SUCCESS,
        CLIENT_CODE,
        Verdict.REFUSED,
        "the API's own client-error code: the request itself was refused",
    ),
    Row(
        Stage.ANSWERED,
        SUCCESS,
        ANY,
        Verdict.UNCERTAIN,
        "a success without a video task id, a server-error or unknown code (the API may have accepted "
        "the request, then failed), or a body that is not the API's",
    ),
    Row(Stage.ANSWERED, OTHER_STATUS, ANY, Verdict.UNCERTAIN, "an answer the API does not give"),
)


def status_class(http_status: int, *, resend_on_429: bool = True) -> str:
    """
    The table's class of an HTTP status.

    :param http_status: the answer's HTTP status.
    :param resend_on_429: whether HTTP 429 is taken as "not accepted" (the connection's
        ``resend_create_on_429`` extra).
    """
    if http_status == 429:
        return TOO_MANY if resend_on_429 else TOO_MANY_DISTRUSTED
    if http_status in (401, 403):
        return AUTH
    if http_status == 408:
        return REQUEST_TIMEOUT
    classes = {2: SUCCESS, 3: REDIRECT, 4: CLIENT_ERROR, 5: SERVER_ERROR}
    return classes.get(http_status // 100, OTHER_STATUS) if 100 <= http_status < 600 else OTHER_STATUS


def body_class(code: str | None, *, has_task_id: bool) -> str:
    """
    The table's class of an answer's body.

    :param code: the envelope's ``code``; ``None`` when the body is not the API's envelope.
    :param has_task_id: whether the envelope's ``data`` holds a ``task_id``.
    """
    if code is None:
        return NOT_ENVELOPE
    if code == SUCCESS_CODE:
        return CREATED if has_task_id else SUCCESS_WITHOUT_ID
    if len(code) == 5 and code.isdigit() and code.startswith("4"):
        return CLIENT_CODE
    return OTHER_CODE


@dataclass(frozen=True)
class CreateOutcome:
    """
    What became of one create request.

    :param stage: how far it got.
    :param http_status: the answer's HTTP status, when there was one.
    :param code: the envelope's ``code``; ``None`` when there was no answer or it was not an envelope.
    :param has_task_id: whether the envelope's ``data`` held a ``task_id``.
    :param resend_on_429: whether HTTP 429 is taken as "not accepted".
    """

    stage: Stage
    http_status: int | None = None
    code: str | None = None
    has_task_id: bool = False
    resend_on_429: bool = True


def decide(outcome: CreateOutcome) -> Row:
    """
    The row of :data:`TABLE` that gives this outcome's verdict.

    :param outcome: what became of the create.
    """
    status = body = NOT_ANSWERED
    if outcome.stage is Stage.ANSWERED:
        if outcome.http_status is None:
            raise ValueError("an answered create has an HTTP status")
        status = status_class(outcome.http_status, resend_on_429=outcome.resend_on_429)
        body = body_class(outcome.code, has_task_id=outcome.has_task_id)
    for row in TABLE:
        if row.matches(outcome.stage, status, body):
            return row
    raise AssertionError(f"the billing table has no row for {outcome}")  # the table ends with catch-alls


def create_error(
    row: Row,
    message: str,
    *,
    transient: bool = True,
    http_status: int | None = None,
    code: str | None = None,
    msg: str | None = None,
    retry_after: float | None = None,
) -> GrokVideoAPIError:
    """
    The exception a failed create raises, by its row's verdict.

    **not accepted**: a :class:`GrokVideoAPIError`, sent again while ``transient`` (and by Airflow's
    retries). **refused**: a :class:`GrokVideoRequestError` (:class:`GrokVideoAuthError` for a refused
    key), which Airflow does not retry. **uncertain**: a :class:`GrokVideoUncertainCreateError` saying
    a video may have been billed, which Airflow does not retry either. Each carries the verdict.

    :param row: the outcome's row (see :func:`decide`); not an accepted one.
    :param message: what happened, for people.
    :param transient: for a create not accepted, whether sending it again may succeed.
    :param http_status: the answer's HTTP status, if any.
    :param code: the envelope's ``code``, if any.
    :param msg: the envelope's ``msg``, if any.
    :param retry_after: the answer's ``Retry-After``, in seconds, if any.
    """
    fields: dict[str, Any] = {"http_status": http_status, "code": code, "msg": msg, "verdict": row.verdict}
    if row.verdict is Verdict.NOT_ACCEPTED:
        sent = row.stage is not Stage.NOT_SENT
        return GrokVideoAPIError(message, transient=transient, sent=sent, retry_after=retry_after, **fields)
    if row.verdict is Verdict.REFUSED:
        refused = GrokVideoAuthError if row.status == AUTH else GrokVideoRequestError
        return refused(message, **fields)
    if row.verdict is Verdict.UNCERTAIN:
        return GrokVideoUncertainCreateError(
            f"{message}. The create may have been accepted ({row.why}), so a video may have been created "
            "and billed, and its video task id is unknown. It is not sent again, to avoid paying twice: "
            "check the account's video tasks before running this task again",
            **fields,
        )
    raise ValueError(f"an accepted create is not an error: {row}")


class CreateJournal(Protocol):
    """
    Told around each create request, so that a record of it can be kept (the operator's ledger).

    :meth:`sending` comes right before each request leaves, :meth:`settled` right after its
    verdict: nothing runs between them but the request itself.
    """

    def sending(self) -> None:
        """A create request is about to be sent."""

    def settled(self, verdict: Verdict, video_task_id: str | None) -> None:
        """
        The request's verdict, and the video task id when accepted.

        :param verdict: the verdict.
        :param video_task_id: the API's video task id when ``verdict`` is ``ACCEPTED``.
        """


class JournalChain:
    """
    Several journals told as one: in order before a request, in reverse after its verdict.

    When one cannot record the send (its :meth:`sending` raises), the request is not sent and the
    journals already told hear that it was not accepted.

    :param journals: the journals, e.g. the spend caps' reservation then the operator's ledger;
        ``None`` stands for a journal not kept.
    """

    def __init__(self, *journals: CreateJournal | None) -> None:
        self.journals = tuple(journal for journal in journals if journal is not None)

    def sending(self) -> None:
        """Tell each journal, in order, that a create request is about to be sent."""
        told: list[CreateJournal] = []
        for journal in self.journals:
            try:
                journal.sending()
            except BaseException:
                for earlier in reversed(told):
                    earlier.settled(Verdict.NOT_ACCEPTED, None)
                raise
            told.append(journal)

    def settled(self, verdict: Verdict, video_task_id: str | None) -> None:
        """
        Tell each journal, in reverse order, the request's verdict.

        :param verdict: the verdict.
        :param video_task_id: the API's video task id when ``verdict`` is ``ACCEPTED``.
        """
        failure: BaseException | None = None
        for journal in reversed(self.journals):
            try:
                journal.settled(verdict, video_task_id)
            except BaseException as exc:  # every journal hears the verdict; the first failure is raised
                failure = failure or exc
        if failure is not None:
            raise failure


def table_markdown() -> str:
    """The billing table as the docs show it (a Markdown table)."""
    lines = ["| request | HTTP status | body | verdict | why |", "|---|---|---|---|---|"]
    lines += [
        f"| {row.stage.value} | {row.status} | {row.body} | **{row.verdict.value}** | {row.why} |"
        for row in TABLE
    ]
    return "\n".join(lines)
