"""The trigger that waits, in the triggerer, for a Grok video task to finish."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_grok_video.exceptions import GrokVideoAPIError
from airflow_grok_video.hooks._api import VideoTask
from airflow_grok_video.hooks.grok_video import GrokVideoHook


class GrokVideoTrigger(BaseTrigger):
    """
    Poll a video task until it has a ``result.video_url``, fails, or ``end_time`` passes.

    Serializes only its four arguments: the connection id, never the key. Yields exactly one
    event, ``{"status": ..., "message": ..., "video_task_id": ...}`` where status is
    ``success`` (with ``video_url``), ``failed`` (with ``error_message``), ``timeout`` or
    ``error`` (with ``http_status``, ``code`` and ``msg`` when the API sent them).

    :param video_task_id: the API's task id.
    :param grok_conn_id: the Airflow connection id.
    :param poll_interval: seconds between two queries.
    :param end_time: Unix time (seconds) at which waiting stops with a ``timeout`` event.
    """

    def __init__(self, video_task_id: str, grok_conn_id: str, poll_interval: float, end_time: float) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.video_task_id = video_task_id
        self.grok_conn_id = grok_conn_id
        self.poll_interval = poll_interval
        self.end_time = end_time

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the class path and the arguments that rebuild this trigger."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "video_task_id": self.video_task_id,
                "grok_conn_id": self.grok_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Query the task every ``poll_interval`` seconds and yield one event when it ends."""
        hook = GrokVideoHook(self.grok_conn_id)
        try:
            event = await self._wait(hook)
        finally:
            await hook.aclose()
        yield TriggerEvent(event)

    async def _wait(self, hook: GrokVideoHook) -> dict[str, Any]:
        while True:
            if time.time() >= self.end_time:
                return self._event("timeout", f"Grok video task {self.video_task_id} did not finish in time")
            try:
                data = await hook.aget_video_task(self.video_task_id, deadline=self.end_time)
                task = VideoTask.from_data(data, video_task_id=self.video_task_id)
            except GrokVideoAPIError as error:
                return self._event(
                    "error", str(error), http_status=error.http_status, code=error.code, msg=error.msg
                )
            if task.succeeded:
                return self._event(
                    "success", f"Grok video task {task.task_id} completed", video_url=task.video_url
                )
            if task.failed:
                return self._event(
                    "failed", f"Grok video task {task.task_id} failed", error_message=task.error_message
                )
            self.log.info("Grok video task %s: %s", task.task_id, task.describe())
            await asyncio.sleep(max(0.0, min(self.poll_interval, self.end_time - time.time())))

    def _event(self, status: str, message: str, **fields: Any) -> dict[str, Any]:
        return {"status": status, "message": message, "video_task_id": self.video_task_id, **fields}
