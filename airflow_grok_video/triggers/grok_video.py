"""The trigger that waits, in the triggerer, for a Grok video task to finish."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.providers.common.compat.sdk import AirflowException
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_grok_video.exceptions import (
    GrokVideoAPIError,
    GrokVideoAuthError,
    GrokVideoGenerationFailed,
    GrokVideoRequestError,
)
from airflow_grok_video.hooks.grok_video import GrokVideoHook
from airflow_grok_video.polling import PollSchedule, VideoWait

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator

#: Slack given to Airflow's own deferral timeout, so that the trigger's clearer ``timeout`` event comes first.
DEFERRAL_GRACE = timedelta(seconds=60)


class GrokVideoTrigger(BaseTrigger):
    """
    Poll a video task until it has a ``result.video_url``, fails, or ``end_time`` passes.

    Polling adapts to the task's progress (see :class:`~airflow_grok_video.polling.PollSchedule`):
    waits between queries stay within ``poll_interval`` and ``max_poll_interval``, few while the
    video is early, one aimed just after its expected end. The connection is resolved once per
    trigger; all triggers on one connection in a triggerer share one HTTP session.

    Serializes only its arguments: the connection id, never the key. Yields exactly one
    event, ``{"status": ..., "message": ..., "video_task_id": ...}`` where status is
    ``success`` (with ``video_url``), ``failed`` (with ``error_message``), ``timeout`` or
    ``error`` (with ``error_type``, and ``http_status``, ``code`` and ``msg`` when the API sent them).
    :func:`video_url_from_event` turns the event back into a URL or the matching exception.

    :param video_task_id: the API's video task id.
    :param grok_conn_id: the Airflow connection id.
    :param poll_interval: the shortest wait between two queries, in seconds.
    :param end_time: Unix time (seconds) at which waiting stops with a ``timeout`` event.
    :param max_poll_interval: the longest wait between two queries; ``None`` (or not above
        ``poll_interval``) polls every ``poll_interval`` seconds.
    """

    def __init__(
        self,
        video_task_id: str,
        grok_conn_id: str,
        poll_interval: float,
        end_time: float,
        max_poll_interval: float | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.video_task_id = video_task_id
        self.grok_conn_id = grok_conn_id
        self.poll_interval = poll_interval
        self.end_time = end_time
        self.max_poll_interval = max_poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the class path and the arguments that rebuild this trigger."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "video_task_id": self.video_task_id,
                "grok_conn_id": self.grok_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "max_poll_interval": self.max_poll_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Query the task on the adaptive schedule and yield one event when it ends."""
        hook = GrokVideoHook(self.grok_conn_id)
        try:
            event = await self._wait(hook)
        finally:
            await hook.aclose()
        yield TriggerEvent(event)

    async def _wait(self, hook: GrokVideoHook) -> dict[str, Any]:
        wait = VideoWait(
            self.video_task_id, PollSchedule(self.poll_interval, self.max_poll_interval), self.end_time
        )
        await asyncio.sleep(wait.first_delay(time.time()))
        while True:
            try:
                task = await hook.aget_video_task(self.video_task_id, deadline=self.end_time)
                step = wait.step(task, time.time())
            except GrokVideoAPIError as error:
                return self._event(
                    "error",
                    str(error),
                    error_type=type(error).__name__,
                    http_status=error.http_status,
                    code=error.code,
                    msg=error.msg,
                )
            if step.status == "success":
                return self._event(step.status, step.message, video_url=step.task.video_url)
            if step.status == "failed":
                return self._event(step.status, step.message, error_message=step.task.error_message)
            if step.status == "timeout":
                return self._event(step.status, step.message)
            self.log.info("%s", step.message)
            await asyncio.sleep(step.delay)

    def _event(self, status: str, message: str, **fields: Any) -> dict[str, Any]:
        return {"status": status, "message": message, "video_task_id": self.video_task_id, **fields}


_STATUSES = frozenset({"success", "failed", "timeout", "error"})
_ERROR_TYPES: dict[str, type[GrokVideoAPIError]] = {
    cls.__name__: cls for cls in (GrokVideoAPIError, GrokVideoAuthError, GrokVideoRequestError)
}


def video_url_from_event(event: dict[str, Any] | None, *, timeout_error: type[Exception]) -> str:
    """
    Return the video URL of a ``success`` event; raise what any other event means.

    :param event: a :class:`GrokVideoTrigger` event.
    :param timeout_error: the exception a ``timeout`` event raises.
    :raises GrokVideoGenerationFailed: for ``failed`` (no Airflow retries).
    :raises GrokVideoAPIError: for ``error``, as the subclass the trigger met.
    :raises AirflowException: for an event that is not one of the trigger's (``None``, no status,
        a ``success`` without a URL).
    """
    if not isinstance(event, dict) or event.get("status") not in _STATUSES:
        raise AirflowException(f"Not an event of GrokVideoTrigger: {_describe_event(event)}")
    status = event["status"]
    if status == "success":
        if not event.get("video_url"):
            raise AirflowException(f"A success event without a video_url: {_describe_event(event)}")
        return str(event["video_url"])
    if status == "failed":
        raise GrokVideoGenerationFailed(str(event.get("video_task_id")), event.get("error_message"))
    if status == "timeout":
        raise timeout_error(str(event.get("message")))
    error = _ERROR_TYPES.get(str(event.get("error_type")), GrokVideoAPIError)
    raise error(
        str(event.get("message")),
        http_status=event.get("http_status"),
        code=event.get("code"),
        msg=event.get("msg"),
    )


def _describe_event(event: Any) -> str:
    if not isinstance(event, dict):
        return f"{type(event).__name__} {event!r}"[:200]
    return f"status={event.get('status')!r}, keys {sorted(map(str, event))}"


def defer_until_done(
    task: BaseOperator,
    *,
    video_task_id: str,
    grok_conn_id: str,
    poll_interval: float,
    max_poll_interval: float | None,
    timeout: float,
) -> NoReturn:
    """
    Defer ``task`` to a :class:`GrokVideoTrigger`; Airflow resumes it in ``execute_complete``.

    :param task: the deferring operator or sensor.
    :param video_task_id: the API's video task id.
    :param grok_conn_id: the Airflow connection id.
    :param poll_interval: the shortest wait between two queries, in seconds.
    :param max_poll_interval: the longest wait between two queries (``None``: every ``poll_interval``).
    :param timeout: seconds from now after which the wait ends with a ``timeout`` event.
    """
    trigger = GrokVideoTrigger(
        video_task_id=video_task_id,
        grok_conn_id=grok_conn_id,
        poll_interval=poll_interval,
        end_time=time.time() + timeout,
        max_poll_interval=max_poll_interval,
    )
    task.defer(
        trigger=trigger, method_name="execute_complete", timeout=timedelta(seconds=timeout) + DEFERRAL_GRACE
    )
