"""The trigger that waits, in the triggerer, for a Grok video task to finish."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

# What the first query needs (aiohttp, the clients, the async connection lookup) is imported with the
# trigger class, which the triggerer loads once, not inside the first query of each of many waits.
import airflow.providers.common.compat.connection  # noqa: F401
from airflow.providers.common.compat.sdk import AirflowException
from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from airflow_grok_video.exceptions import (
    GrokVideoAPIError,
    GrokVideoAuthError,
    GrokVideoGenerationFailed,
    GrokVideoNotFoundError,
    GrokVideoRequestError,
)
from airflow_grok_video.hooks import _clients  # noqa: F401
from airflow_grok_video.hooks.grok_video import GrokVideoHook
from airflow_grok_video.links.grok_video import SuccessValue, success_xcoms
from airflow_grok_video.outcome import OUTCOME_XCOM_KEY, outcome
from airflow_grok_video.polling import DEFERRAL_GRACE, Look, PollSchedule, PollStep, VideoWait
from airflow_grok_video.video_task import url_for_logs

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator


class GrokVideoTrigger(BaseTrigger):
    """
    Poll a video task until it has a ``result.video_url``, fails, or ``end_time`` passes.

    Polling adapts to the task's progress (see :class:`~airflow_grok_video.polling.PollSchedule`):
    waits between queries stay within ``poll_interval`` and ``max_poll_interval``, few while the
    video is early, one aimed just after its expected end. The connection is resolved once per
    trigger; all triggers on one connection in a triggerer share one HTTP session.

    Serializes only its arguments: the connection id, never the key. Yields exactly one
    event, ``{"status": ..., "message": ..., "video_task_id": ...}`` where status is
    ``success`` (with ``video_url``, and ``url_expires_at`` when the API sent the video's times),
    ``failed`` (with ``error_message``), ``timeout`` or
    ``error`` (with ``error_type``, and ``http_status``, ``code`` and ``msg`` when the API sent them).
    :func:`video_url_from_event` turns the event back into a URL or the matching exception.

    With ``success_xcoms``, a success ends the task in the triggerer instead: the trigger pushes
    those XComs and the ``video_outcome`` record (:mod:`airflow_grok_video.outcome`) and yields a
    ``TaskSuccessEvent``, so no worker runs again for it. Any other
    outcome, and a success where Airflow cannot end the task here (``dag.test()``, Airflow before
    3.3), resumes the task in a worker as before.

    :param video_task_id: the API's video task id.
    :param grok_conn_id: the Airflow connection id.
    :param poll_interval: the shortest wait between two queries, in seconds.
    :param end_time: Unix time (seconds) at which waiting stops with a ``timeout`` event; ``None``
        for a task started in the triggerer, whose trigger timeout (less ``DEFERRAL_GRACE``) is used.
    :param max_poll_interval: the longest wait between two queries; ``None`` (or not above
        ``poll_interval``) polls every ``poll_interval`` seconds.
    :param success_xcoms: on success, end the task here, pushing under each XCom key the video's
        ``video_url`` or its ``video_task_id``; ``None`` resumes the task in a worker.
    :param first_answer: the answer the deferring task read just before deferring, as
        :meth:`~airflow_grok_video.polling.Look.to_kwargs` gives it (status, progress,
        ``created_at``, ``read_at``): it is the wait's first query, and the schedule goes on from
        it; ``None`` starts from nothing (the first query after a jittered floor).
    """

    def __init__(
        self,
        video_task_id: str,
        grok_conn_id: str,
        poll_interval: float,
        end_time: float | None,
        max_poll_interval: float | None = None,
        success_xcoms: dict[str, SuccessValue] | None = None,
        first_answer: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.video_task_id = video_task_id
        self.grok_conn_id = grok_conn_id
        self.poll_interval = poll_interval
        self.end_time = end_time
        self.max_poll_interval = max_poll_interval
        self.success_xcoms = success_xcoms
        self.first_answer = first_answer

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
                "success_xcoms": self.success_xcoms,
                "first_answer": self.first_answer,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Query the task on the adaptive schedule and yield one event when it ends."""
        hook = GrokVideoHook(self.grok_conn_id)
        try:
            event = await self.wait_with(hook)
        finally:
            await hook.aclose()
        if event["status"] == "success" and await self._pushed_success_xcoms(event):
            self.log.info("%s: the task ends here, without going back to a worker", event["message"])
            yield TaskSuccessEvent()
        else:
            yield TriggerEvent(EventPayload(event))

    async def _pushed_success_xcoms(self, event: dict[str, Any]) -> bool:
        """
        Push the XComs the task would push on success; ``False`` where that cannot be (:func:`push_xcoms`).

        ``success_xcoms``, and the ``video_outcome`` record of the video the wait ended on.

        :param event: the success event.
        """
        if not self.success_xcoms:
            return False
        values = {key: event[value] for key, value in self.success_xcoms.items()}
        values[OUTCOME_XCOM_KEY] = outcome(
            event["video_task_id"],
            "success",
            video_url=event["video_url"],
            url_expires_at=event.get("url_expires_at"),
        )
        return await push_xcoms(self, values)

    async def wait_with(self, hook: GrokVideoHook, *, first_delay: float | None = None) -> dict[str, Any]:
        """
        Wait for the video through ``hook`` (whose HTTP session it shares) and return the event's payload.

        :param hook: the hook to query through; the caller closes it.
        :param first_delay: seconds before the first query, instead of the schedule's jittered floor
            (a batch's wait that already waited for another video of the batch).
        """
        end_time = self._end_time()
        wait = VideoWait(
            self.video_task_id, PollSchedule(self.poll_interval, self.max_poll_interval), end_time
        )
        look = Look.from_kwargs(self.video_task_id, self.first_answer)
        if look is None:
            delay = wait.first_delay(time.time()) if first_delay is None else first_delay
            await asyncio.sleep(delay)
        shown = None if look is None else look.task.describe()  # the deferring task logged it
        while True:
            if look is not None:  # the answer read before deferring is the first query's
                task, read_at = look.task, look.read_at
            else:
                try:
                    task = await hook.aget_video_task(self.video_task_id, deadline=end_time)
                except GrokVideoAPIError as error:
                    return self._error_event(error)
                read_at = time.time()
            step = wait.step(task, read_at)
            if step.status != "waiting":
                return self._final_event(step)
            if step.reading != shown:  # a line when the reading changes, not on every poll
                shown = step.reading
                self.log.info("%s", step.message)
            await asyncio.sleep(_until_next(wait, step, read_at, handed_on=look is not None))
            look = None

    def _final_event(self, step: PollStep) -> dict[str, Any]:
        """The event of an answer that ends the wait: ``success``, ``failed`` or ``timeout``."""
        if step.status == "success":
            expires = step.task.url_expires_at()
            known = {} if expires is None else {"url_expires_at": expires.isoformat()}
            return self._event(step.status, step.message, video_url=step.task.video_url, **known)
        if step.status == "failed":
            return self._event(step.status, step.message, error_message=step.task.error_message)
        return self._event(step.status, step.message)

    def _error_event(self, error: GrokVideoAPIError) -> dict[str, Any]:
        """The ``error`` event of a query that failed (after the hook's retries)."""
        return self._event(
            "error",
            str(error),
            error_type=type(error).__name__,
            http_status=error.http_status,
            code=error.code,
            msg=error.msg,
        )

    def _end_time(self) -> float:
        """When the wait gives up: ``end_time``, or the trigger timeout Airflow set, less the grace."""
        if self.end_time is not None:
            return self.end_time
        timeout_after = getattr(self, "timeout_after", None)  # set by the triggerer
        if timeout_after is None:
            return math.inf
        return float(timeout_after.timestamp() - DEFERRAL_GRACE.total_seconds())

    def _event(self, status: str, message: str, **fields: Any) -> dict[str, Any]:
        return {"status": status, "message": message, "video_task_id": self.video_task_id, **fields}


def _until_next(wait: VideoWait, step: PollStep, read_at: float, *, handed_on: bool) -> float:
    """
    Seconds from now to the next query: the step's delay, counted from when the answer was read.

    An answer handed on whose next query is already due (the trigger resumed late, as when a
    triggerer takes over the waits of one that died) waits the jittered first delay instead, so
    that the waits resumed together do not all query at once.

    :param wait: the wait.
    :param step: what the answer meant (``waiting``).
    :param read_at: Unix time the answer was read.
    :param handed_on: whether the answer is the one read before deferring.
    """
    now = time.time()
    due = read_at + step.delay - now
    if due <= 0 and handed_on:
        return wait.first_delay(now)
    return max(0.0, due)


async def push_xcoms(trigger: BaseTrigger, values: dict[str, Any]) -> bool:
    """
    Push XComs of the trigger's task instance, as a worker does; ``False`` where that cannot be.

    They go through the configured XCom backend and Airflow's execution API, as a worker's do
    (a ``TaskSuccessEvent``'s own ``xcoms`` are stored encoded twice by Airflow 3.1-3.3, and
    a downstream task would read the URL with quotes around it). The backend's serialization is
    synchronous (a custom backend may upload the value), so it runs in a thread, never on the
    triggerer's event loop; only the messages to Airflow are sent from the loop. Without a task
    instance (``dag.test()`` runs triggers inline) or an async XCom push (``XCom.aset``,
    Airflow before 3.3), the task resumes in a worker as before.

    :param trigger: the running trigger.
    :param values: the values by XCom key.
    """
    from airflow.sdk.execution_time.xcom import XCom

    ti = trigger.task_instance
    if ti is None or getattr(XCom, "aset", None) is None:
        return False
    where = {"dag_id": ti.dag_id, "task_id": ti.task_id, "run_id": ti.run_id, "map_index": ti.map_index}
    try:
        serialized = await asyncio.to_thread(_serialize_xcoms, XCom, values, where)
        await _send_xcoms(serialized, where)
    except Exception as error:  # the worker pushes them again when it resumes
        trigger.log.warning("Could not push the XComs from the triggerer (%s); resuming in a worker", error)
        return False
    return True


def _serialize_xcoms(backend: Any, values: dict[str, Any], where: dict[str, Any]) -> dict[str, Any]:
    """
    Each XCom value as the configured backend stores it (blocking: run it in a thread).

    :param backend: the configured XCom class.
    :param values: the values by XCom key.
    :param where: the task instance's ``dag_id``, ``task_id``, ``run_id`` and ``map_index``.
    """
    return {key: backend.serialize_value(value=value, key=key, **where) for key, value in values.items()}


async def _send_xcoms(serialized: dict[str, Any], where: dict[str, Any]) -> None:
    """
    Hand serialized XComs to Airflow, as ``XCom.aset`` does once it has serialized a value.

    :param serialized: the backend's serialized values by XCom key.
    :param where: the task instance's ``dag_id``, ``task_id``, ``run_id`` and ``map_index``.
    """
    from airflow.sdk.execution_time import task_runner
    from airflow.sdk.execution_time.comms import SetXCom

    for key, value in serialized.items():
        await task_runner.SUPERVISOR_COMMS.asend(SetXCom(key=key, value=value, **where))


class EventPayload(dict[str, Any]):
    """
    An event's payload, shown (``repr``, ``str``) with its ``video_url`` stripped of the query string.

    The triggerer logs every event it fires ("Trigger fired event", with the event's ``repr``), and
    a signed URL's query grants access to the video. The payload itself, which resumes the task in a
    worker, keeps the whole URL; it is a plain ``dict`` once Airflow has stored it.
    """

    def __repr__(self) -> str:
        shown = dict(self)
        if isinstance(shown.get("video_url"), str):
            shown["video_url"] = url_for_logs(shown["video_url"])
        return repr(shown)

    __str__ = __repr__


_STATUSES = frozenset({"success", "failed", "timeout", "error"})
_ERROR_TYPES: dict[str, type[GrokVideoAPIError]] = {
    cls.__name__: cls
    for cls in (GrokVideoAPIError, GrokVideoAuthError, GrokVideoRequestError, GrokVideoNotFoundError)
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
    return_value: SuccessValue,
    first_answer: Look | None = None,
) -> NoReturn:
    """
    Defer ``task`` to a :class:`GrokVideoTrigger` that ends it on success.

    On success the trigger pushes what the task would have pushed itself: ``return_value``, the
    URL under ``video_url`` and under each of the task's extra links, and the ``video_outcome``
    record; any other outcome resumes the task in ``execute_complete``.

    :param task: the deferring operator or sensor.
    :param video_task_id: the API's video task id.
    :param grok_conn_id: the Airflow connection id.
    :param poll_interval: the shortest wait between two queries, in seconds.
    :param max_poll_interval: the longest wait between two queries (``None``: every ``poll_interval``).
    :param timeout: seconds from now after which the wait ends with a ``timeout`` event.
    :param return_value: what the task returns on success: the ``video_url`` or the ``video_task_id``.
    :param first_answer: the answer the task read just before deferring (a wait that goes on):
        the trigger takes it as its first query's instead of querying early again.
    """
    trigger = GrokVideoTrigger(
        video_task_id=video_task_id,
        grok_conn_id=grok_conn_id,
        poll_interval=poll_interval,
        end_time=time.time() + timeout,
        max_poll_interval=max_poll_interval,
        success_xcoms=success_xcoms(task, return_value),
        first_answer=None if first_answer is None else first_answer.to_kwargs(),
    )
    task.defer(
        trigger=trigger, method_name="execute_complete", timeout=timedelta(seconds=timeout) + DEFERRAL_GRACE
    )
