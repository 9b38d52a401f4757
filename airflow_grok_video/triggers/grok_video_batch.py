"""The trigger that waits, in the triggerer, for every video of a batch."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from airflow_grok_video.batch import ItemResult, ItemStatus, judge, outcomes
from airflow_grok_video.hooks.grok_video import GrokVideoHook
from airflow_grok_video.outcome import OUTCOME_XCOM_KEY
from airflow_grok_video.triggers.grok_video import GrokVideoTrigger, push_xcoms
from airflow_grok_video.video_task import url_for_logs


class GrokVideoBatchTrigger(BaseTrigger):
    """
    Wait for every video of a batch at once, in one trigger, and yield one event with every item's result.

    Each video is waited for as :class:`~airflow_grok_video.triggers.grok_video.GrokVideoTrigger`
    waits for one (the same adaptive schedule, the first queries spread by jitter), all through one
    hook, so one HTTP session. An item given as ``success`` is queried once for its URL (URLs never
    travel in the trigger's arguments); a final item (failed, uncertain, refused) is passed through.

    When all are done it logs one line per item, then, with ``end_here`` and where Airflow allows
    (3.3+, not ``dag.test()``), ends the task in the triggerer if the batch met its rule (``min_success``),
    pushing the results as the task's return value and each item's ``video_outcome`` record
    (:func:`~airflow_grok_video.batch.outcomes`); otherwise it yields ``{"status": "done",
    "results": [...]}`` and the task resumes in a worker.

    :param items: every item's result so far, as :meth:`~airflow_grok_video.batch.ItemResult.for_trigger`
        gives it (when it was bought, no URL), in input order.
    :param grok_conn_id: the Airflow connection id.
    :param poll_interval: the shortest wait between two queries of a video, in seconds.
    :param end_time: Unix time at which waiting stops; an item still waiting then is ``timeout``.
    :param max_poll_interval: the longest wait between two queries of a video.
    :param min_success: how many items must succeed (``None``: every item).
    :param end_here: whether the task may end in the triggerer.
    """

    def __init__(
        self,
        items: list[dict[str, Any]],
        grok_conn_id: str,
        poll_interval: float,
        end_time: float,
        max_poll_interval: float | None = None,
        min_success: int | None = None,
        end_here: bool = False,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.items = items
        self.grok_conn_id = grok_conn_id
        self.poll_interval = poll_interval
        self.end_time = end_time
        self.max_poll_interval = max_poll_interval
        self.min_success = min_success
        self.end_here = end_here

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the class path and the arguments that rebuild this trigger."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "items": self.items,
                "grok_conn_id": self.grok_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "max_poll_interval": self.max_poll_interval,
                "min_success": self.min_success,
                "end_here": self.end_here,
            },
        )

    def __repr__(self) -> str:
        """The trigger as the triggerer logs it: a summary, not a thousand items."""
        waiting = sum(item["status"] in ("waiting", "success") for item in self.items)
        return (
            f"<GrokVideoBatchTrigger {len(self.items)} items, {waiting} to query via {self.grok_conn_id!r}>"
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Wait for every item, log each result, and end the task here or yield the results."""
        hook = GrokVideoHook(self.grok_conn_id)
        items = [ItemResult.from_dict(item) for item in self.items]
        scouts = _scouts(items)
        try:
            results = await asyncio.gather(*(self._result(hook, item, scouts) for item in items))
        finally:
            await hook.aclose()
        for result in results:
            shown = f", {url_for_logs(result.video_url)}" if result.video_url else ""
            self.log.info("Batch %s%s", result.describe(), shown)
        values = [result.to_dict() for result in results]
        met = self.end_here and judge(results, self.min_success) is None
        ended_here = {"return_value": values, OUTCOME_XCOM_KEY: outcomes(results)}
        if met and await push_xcoms(self, ended_here):
            self.log.info("Every result is in: the task ends here, without going back to a worker")
            yield TaskSuccessEvent()
            return
        yield TriggerEvent(BatchPayload({"status": "done", "results": values}))

    def _left(self) -> float:
        """Seconds left until ``end_time`` (0 once it has passed)."""
        return max(0.0, self.end_time - time.time())

    async def _result(self, hook: GrokVideoHook, item: ItemResult, scouts: dict[Any, Scout]) -> ItemResult:
        """
        Wait for one item's video, if it is bought and not known to have failed.

        The scout of the item's video length (its first bought) waits on the adaptive schedule; the
        others first wait for it to end (videos of one length bought together end at about the same
        time), at most ``max_poll_interval``, then as long again as they were bought after it (so that
        a video bought later is not queried before it can be done), and query within a quarter of
        the floor after that, jittered, and go on from there.
        """
        if not _to_query(item):
            return item
        wait = GrokVideoTrigger(
            item.video_task_id or "",
            self.grok_conn_id,
            poll_interval=self.poll_interval,
            end_time=self.end_time,
            max_poll_interval=self.max_poll_interval,
        )
        scout = scouts[item.seconds]
        if scout.index == item.index:
            try:
                event = await wait.wait_with(hook)
            finally:
                scout.ended.set()
        else:
            ceiling = max(self.poll_interval, self.max_poll_interval or 0.0)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(scout.ended.wait(), timeout=min(ceiling, self._left()))
            behind = scout.behind(item) + random.uniform(0, self.poll_interval / 4)
            event = await wait.wait_with(hook, first_delay=min(behind, self._left()))
        status: ItemStatus = event["status"]
        if status == "success":
            return replace(item, status=status, video_url=event["video_url"])
        error = event.get("error_message") if status == "failed" else event.get("message")
        return replace(item, status=status, error=error)


@dataclass
class Scout:
    """
    The item of a batch whose wait goes first for its video length, and when it ended.

    :param index: the scout item's index.
    :param created: when the scout's video was bought (Unix time), if known.
    """

    index: int
    created: float | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    def behind(self, item: ItemResult) -> float:
        """Seconds ``item``'s video was bought after the scout's (0 when not known, or before)."""
        if self.created is None or item.created is None:
            return 0.0
        return max(0.0, item.created - self.created)


def _to_query(item: ItemResult) -> bool:
    """Whether the batch trigger queries the item: bought, and waiting (or done, for its URL)."""
    return item.status in ("waiting", "success") and item.video_task_id is not None


def _scouts(items: list[ItemResult]) -> dict[Any, Scout]:
    """
    Each video length's scout (``None``: not known): its first item bought, of those to query.

    Items bought by an earlier try (no time of this try's create) come after, in input order.
    """
    scouts: dict[Any, Scout] = {}
    bought = sorted(
        (item for item in items if _to_query(item)),
        key=lambda item: (item.created is None, item.created or 0.0, item.index),
    )
    for item in bought:
        if item.seconds not in scouts:
            scouts[item.seconds] = Scout(item.index, item.created)
    return scouts


class BatchPayload(dict[str, Any]):
    """
    A batch event's payload, shown (``repr``, ``str``) as counts of each status.

    The triggerer logs every event it fires, and the results hold signed URLs, whose query grants
    access to the videos.
    """

    def __repr__(self) -> str:
        statuses = [str(result.get("status")) for result in self.get("results", [])]
        counts = ", ".join(f"{statuses.count(status)} {status}" for status in sorted(set(statuses)))
        return f"{{'status': {self.get('status')!r}, 'results': '{counts}'}}"

    __str__ = __repr__
