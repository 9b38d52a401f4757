"""A batch of videos bought in one task: each item's result, and the rule that says whether the batch failed.

Shared by the batch operator (which buys the items and may wait in the worker) and the batch
trigger (which waits for them in the triggerer and may end the task there): both read the same
results, in input order, and judge them by the same rule.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from airflow_grok_video.outcome import outcome

#: What became of one item. ``waiting``: bought (or reattached to), not done yet; the others are final:
#: ``success`` (it has ``video_url``), ``failed`` (the API's failure message in ``error``),
#: ``uncertain`` (a create may have been billed but its id is unknown: not bought again),
#: ``refused`` (a spend cap, or the API refused the request: nothing billed), ``timeout`` and
#: ``error`` (the wait ended without the video's end: it may still finish).
ItemStatus = Literal["waiting", "success", "failed", "uncertain", "refused", "timeout", "error"]


@dataclass(frozen=True)
class ItemResult:
    """
    One item of a batch, as far as it has got.

    :param index: its position in the batch's input, from 0.
    :param status: see :data:`ItemStatus`.
    :param video_task_id: the API's video task id, once bought.
    :param video_url: the video's URL, on ``success``.
    :param error: why it did not succeed (the API's message, the cap, ...).
    :param reattached: whether an earlier try bought it.
    :param seconds: the video's length, as asked.
    :param created: Unix time this try's create of it was accepted (the batch trigger's pacing reads
        it); not part of the result the batch returns.
    """

    index: int
    status: ItemStatus
    video_task_id: str | None = None
    video_url: str | None = None
    error: str | None = None
    reattached: bool = False
    seconds: int | None = None
    created: float | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The result as the batch returns it (a JSON object)."""
        value = asdict(self)
        del value["created"]
        return value

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> ItemResult:
        """
        A result from :meth:`to_dict`'s output.

        :param value: the JSON object.
        """
        return cls(
            index=int(value["index"]),
            status=value["status"],
            video_task_id=value.get("video_task_id"),
            video_url=value.get("video_url"),
            error=value.get("error"),
            reattached=bool(value.get("reattached", False)),
            seconds=value.get("seconds"),
            created=value.get("created"),
        )

    def for_trigger(self) -> dict[str, Any]:
        """
        The result as it travels in the batch trigger's arguments: with when it was bought, without its URL.

        A signed URL is a secret; :meth:`from_dict` reads this back.
        """
        return {**asdict(self), "video_url": None}

    def outcome(self) -> dict[str, Any] | None:
        """
        The item's ``video_outcome`` record, with its ``index``; ``None`` unless its wait ended on its video.

        A ``success`` or ``failed`` item with a video task id has one (see
        :mod:`airflow_grok_video.outcome`); an item not bought, still waiting, or whose wait timed
        out or failed otherwise has none.
        """
        if self.video_task_id is None or self.status not in ("success", "failed"):
            return None
        if self.status == "success":
            if not self.video_url:
                return None  # not the batch's: a success carries its URL, except in a trigger's arguments
            record = outcome(self.video_task_id, "success", video_url=self.video_url)
        else:
            record = outcome(self.video_task_id, "failed", error=self.error)
        return {"index": self.index, **record}

    def describe(self) -> str:
        """One line for the task log, e.g. ``item 3 (video v12): failed: content policy``."""
        video = f" (video {self.video_task_id})" if self.video_task_id else ""
        return f"item {self.index}{video}: {self.status}" + (f": {self.error}" if self.error else "")


def outcomes(results: list[ItemResult]) -> list[dict[str, Any]]:
    """
    The batch's ``video_outcome`` XCom: the record of each item that has one (:meth:`ItemResult.outcome`).

    :param results: every item's result, in input order.
    """
    return [record for record in (result.outcome() for result in results) if record is not None]


def judge(results: list[ItemResult], min_success: int | None) -> str | None:
    """
    Whether the batch failed: ``None`` when it met its rule, else why, naming every item that did not succeed.

    :param results: every item's final result, in input order.
    :param min_success: how many items must succeed; ``None`` means every item.
    """
    needed = len(results) if min_success is None else min_success
    done = sum(result.status == "success" for result in results)
    if done >= needed:
        return None
    missed = [result.describe() for result in results if result.status != "success"]
    return f"{done} of {len(results)} videos succeeded, {needed} needed; " + "; ".join(missed)
