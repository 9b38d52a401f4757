"""
The Videos page's rows and spend, read from what the provider's tasks record in Airflow.

Nothing here is a store of its own: every column comes from Airflow's metadata database.

=========================  ===================================================================
Column                     Where it comes from
=========================  ===================================================================
DAG, run, task, map index  the create's ``purchase`` XCom row (a batch's holds one per item)
prompt, model, seconds,    that ``purchase`` record (what the create request asked for)
ratio / orientation
estimated cost             that record, when the connection has a ``price``
created                    that XCom's timestamp (pushed as soon as the API gave the id)
ready, failed (message)    the ``video_outcome`` XCom a wait pushes when it ends
URL expired                the outcome's ``url_expires_at`` (else created + 3 days)
kept at ``dest``           the asset event of the transfer that kept it (its ``extra`` names
                           the video task, the object's URI and the storage connection)
waiting / unknown          no outcome yet: waiting while the run runs, unknown once it ended
=========================  ===================================================================

Only DAGs the user may read are ever queried (the caller passes their ids).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow_grok_video.outcome import OUTCOME_XCOM_KEY
from airflow_grok_video.video_task import VIDEO_URL_LIFETIME

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

PURCHASE_KEY = "purchase"
STATES = ("waiting", "ready", "failed", "expired", "kept", "unknown")
_RUN_ENDED = frozenset({"success", "failed"})
_CHUNK = 400  # ids per IN (...) clause


@dataclasses.dataclass(frozen=True)
class TaskRef:
    """
    One task instance.

    :param dag_id: the DAG.
    :param run_id: the DAG run.
    :param task_id: the task.
    :param map_index: its map index (-1: not mapped).
    """

    dag_id: str
    run_id: str
    task_id: str
    map_index: int


@dataclasses.dataclass
class Video:
    """
    One video bought, as the Videos page shows it.

    :param bought_by: the task instance whose ``purchase`` XCom records it.
    :param item: its position in a batch (``None``: not a batch).
    :param video_task_id: the API's video task id.
    :param created: when the purchase was recorded.
    :param record: the ``purchase`` record.
    :param state: one of :data:`STATES`.
    :param error: the API's message, for a failed video.
    :param video_url: the live (signed) URL, while it works.
    :param url_expires_at: when the live URL stops working, if known.
    :param kept_uri: where a transfer kept a copy.
    :param kept_conn_id: the storage connection of that copy.
    :param waited_by: the task instance whose wait ended on it.
    :param kept_by: the task instance that kept it.
    """

    bought_by: TaskRef
    item: int | None
    video_task_id: str
    created: datetime
    record: dict[str, Any]
    state: str = "unknown"
    error: str | None = None
    video_url: str | None = None
    url_expires_at: datetime | None = None
    kept_uri: str | None = None
    kept_conn_id: str | None = None
    waited_by: TaskRef | None = None
    kept_by: TaskRef | None = None

    @property
    def seconds(self) -> int:
        """The video's length, as bought."""
        return int(self.record.get("seconds") or 0)

    @property
    def cost(self) -> float | None:
        """The estimated cost, when the connection has a price."""
        cost = self.record.get("estimated_cost")
        return float(cost) if cost is not None else None

    def touches(self, ti: TaskRef) -> bool:
        """Whether ``ti`` bought, waited for or kept this video."""
        return ti in (self.bought_by, self.waited_by, self.kept_by)

    def public(self) -> dict[str, Any]:
        """The row as JSON for the page (the live URL included: the caller checked access)."""
        expired = self.url_expires_at is not None and self.url_expires_at <= datetime.now(timezone.utc)
        return {
            **dataclasses.asdict(self.bought_by),
            "item": self.item,
            "video_task_id": self.video_task_id,
            "created": self.created.isoformat(),
            "prompt": self.record.get("prompt"),
            "model": self.record.get("model"),
            "seconds": self.seconds,
            "ratio": self.record.get("ratio"),
            "orientation": self.record.get("orientation"),
            "estimated_cost": self.cost,
            "currency": self.record.get("currency"),
            "state": self.state,
            "error": self.error,
            "video_url": None if expired else self.video_url,
            "url_expires_at": self.url_expires_at.isoformat() if self.url_expires_at else None,
            "kept_uri": self.kept_uri,
            "waited_by": dataclasses.asdict(self.waited_by) if self.waited_by else None,
            "kept_by": dataclasses.asdict(self.kept_by) if self.kept_by else None,
        }


@dataclasses.dataclass(frozen=True)
class Filters:
    """
    What the page asks for.

    :param dag_id: one DAG, or every readable one.
    :param run_id: one run of it.
    :param since: the first UTC day (inclusive).
    :param until: the last UTC day (inclusive).
    :param state: one of :data:`STATES`.
    """

    dag_id: str | None = None
    run_id: str | None = None
    since: date | None = None
    until: date | None = None
    state: str | None = None


def bought(session: Session, dag_ids: Iterable[str], filters: Filters) -> list[Video]:
    """
    Every video bought in the readable DAGs that the filters keep, newest first; states unread.

    :param session: a metadata database session.
    :param dag_ids: the DAGs the user may read.
    :param filters: what the page asks for (the state is applied by :func:`resolve`).
    """
    from airflow.models.xcom import XComModel

    readable = set(dag_ids) if filters.dag_id is None else set(dag_ids) & {filters.dag_id}
    if not readable:
        return []
    query = _xcom_rows(PURCHASE_KEY).where(XComModel.dag_id.in_(sorted(readable)))
    if filters.run_id is not None:
        query = query.where(XComModel.run_id == filters.run_id)
    if filters.since is not None:
        query = query.where(XComModel.timestamp >= _day_start(filters.since))
    if filters.until is not None:
        query = query.where(XComModel.timestamp < _day_start(filters.until) + timedelta(days=1))
    videos = [
        video
        for dag_id, run_id, task_id, map_index, value, timestamp in session.execute(query)
        for video in _videos(TaskRef(dag_id, run_id, task_id, map_index), _decode(value), timestamp)
    ]
    videos.sort(key=lambda v: (v.created, -(v.item or 0)), reverse=True)
    return videos


def resolve(session: Session, videos: list[Video], now: datetime | None = None) -> list[Video]:
    """
    Read each video's state: its wait's outcome, its kept copy, its run's state.

    :param session: a metadata database session.
    :param videos: videos from :func:`bought` (changed in place, and returned).
    :param now: the time to judge URL expiry by (default: now).
    """
    now = now or datetime.now(timezone.utc)
    runs = {(v.bought_by.dag_id, v.bought_by.run_id) for v in videos}
    outcomes = _outcomes(session, runs)
    kept = _kept(session, runs)
    run_states = _run_states(session, runs)
    for video in videos:
        _judge(video, outcomes, kept, run_states.get((video.bought_by.dag_id, video.bought_by.run_id)), now)
    return videos


def spend(videos: Iterable[Video]) -> dict[str, Any]:
    """
    Videos, seconds and estimated cost per UTC day and per DAG (and in all), from the same rows.

    :param videos: the videos to add up.
    """
    total = _Tally()
    by_day: dict[str, _Tally] = defaultdict(_Tally)
    by_dag: dict[str, _Tally] = defaultdict(_Tally)
    for video in videos:
        for tally in (total, by_day[video.created.date().isoformat()], by_dag[video.bought_by.dag_id]):
            tally.add(video)
    return {
        "total": total.public(),
        "by_day": [{"day": day, **by_day[day].public()} for day in sorted(by_day, reverse=True)],
        "by_dag": [{"dag_id": dag, **by_dag[dag].public()} for dag in sorted(by_dag)],
    }


@dataclasses.dataclass
class _Tally:
    videos: int = 0
    seconds: int = 0
    cost: dict[str, float] = dataclasses.field(default_factory=dict)

    def add(self, video: Video) -> None:
        self.videos += 1
        self.seconds += video.seconds
        if video.cost is not None:
            currency = str(video.record.get("currency") or "")
            self.cost[currency] = round(self.cost.get(currency, 0.0) + video.cost, 6)

    def public(self) -> dict[str, Any]:
        return {"videos": self.videos, "seconds": self.seconds, "estimated_cost": dict(self.cost)}


# -- reading the records -----------------------------------------------------------------------


class _Row:
    """What ``XComModel.deserialize_value`` reads: a row's ``value``."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _decode(value: Any) -> Any:
    """An XCom row's value as the task pushed it (stored as JSON text or as JSON)."""
    from airflow.models.xcom import XComModel

    if isinstance(value, (dict, list)):
        return value  # stored as JSON by the execution API (a task's push): nothing left to decode
    return XComModel.deserialize_value(_Row(value))


def _videos(ti: TaskRef, record: Any, timestamp: datetime) -> Iterator[Video]:
    """The videos one ``purchase`` XCom records: one, or one per batch item."""
    records = record if isinstance(record, list) else [record]
    for one in records:
        if isinstance(one, dict) and one.get("video_task_id"):
            item = one.get("index") if isinstance(record, list) else None
            yield Video(ti, item, str(one["video_task_id"]), _utc(timestamp), one)


def _outcomes(session: Session, runs: set[tuple[str, str]]) -> dict[str, tuple[TaskRef, dict[str, Any]]]:
    """How each video's wait ended, by video task id (the newest record wins)."""
    found: dict[str, tuple[datetime, TaskRef, dict[str, Any]]] = {}
    for ti, value, timestamp in _xcoms(session, runs, OUTCOME_XCOM_KEY):
        decoded = _decode(value)
        for outcome in decoded if isinstance(decoded, list) else [decoded]:
            video_task_id = str(outcome.get("video_task_id") or "") if isinstance(outcome, dict) else ""
            if video_task_id and (video_task_id not in found or found[video_task_id][0] <= timestamp):
                found[video_task_id] = (timestamp, ti, outcome)
    return {video: (ti, outcome) for video, (_, ti, outcome) in found.items()}


def _xcom_rows(key: str) -> Any:
    """A query for the XComs under ``key``: their task instance, value and timestamp."""
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    columns = (XComModel.dag_id, XComModel.run_id, XComModel.task_id, XComModel.map_index)
    return select(*columns, XComModel.value, XComModel.timestamp).where(XComModel.key == key)


def _xcoms(session: Session, runs: set[tuple[str, str]], key: str) -> Iterator[tuple[TaskRef, Any, datetime]]:
    from airflow.models.xcom import XComModel
    from sqlalchemy import tuple_

    for chunk in _chunks(sorted(runs)):
        query = _xcom_rows(key).where(tuple_(XComModel.dag_id, XComModel.run_id).in_(chunk))
        for dag_id, run_id, task_id, map_index, value, timestamp in session.execute(query):
            yield TaskRef(dag_id, run_id, task_id, map_index), value, _utc(timestamp)


def _kept(session: Session, runs: set[tuple[str, str]]) -> dict[str, tuple[TaskRef, dict[str, Any]]]:
    """The kept copy of each video, by video task id, from the transfers' asset events."""
    from airflow.models.asset import AssetEvent
    from sqlalchemy import select, tuple_

    kept: dict[str, tuple[TaskRef, dict[str, Any]]] = {}
    for chunk in _chunks(sorted(runs)):
        query = (
            select(
                AssetEvent.source_dag_id,
                AssetEvent.source_run_id,
                AssetEvent.source_task_id,
                AssetEvent.source_map_index,
                AssetEvent.extra,
            )
            .where(tuple_(AssetEvent.source_dag_id, AssetEvent.source_run_id).in_(chunk))
            .order_by(AssetEvent.timestamp)
        )
        for dag_id, run_id, task_id, map_index, extra in session.execute(query):
            if isinstance(extra, dict) and extra.get("video_task_id") and extra.get("uri"):
                ti = TaskRef(dag_id, run_id, task_id, -1 if map_index is None else map_index)
                kept[str(extra["video_task_id"])] = (ti, extra)
    return kept


def _run_states(session: Session, runs: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select, tuple_

    states: dict[tuple[str, str], str] = {}
    for chunk in _chunks(sorted(runs)):
        query = select(DagRun.dag_id, DagRun.run_id, DagRun.state).where(
            tuple_(DagRun.dag_id, DagRun.run_id).in_(chunk)
        )
        states.update({(dag_id, run_id): str(state) for dag_id, run_id, state in session.execute(query)})
    return states


def _judge(
    video: Video,
    outcomes: dict[str, tuple[TaskRef, dict[str, Any]]],
    kept: dict[str, tuple[TaskRef, dict[str, Any]]],
    run_state: str | None,
    now: datetime,
) -> None:
    """Set the video's state from its records (kept > ready/expired > failed > waiting/unknown)."""
    if video.video_task_id in outcomes:
        video.waited_by, outcome = outcomes[video.video_task_id]
        if outcome.get("status") == "success":
            video.video_url = outcome.get("video_url")
            video.url_expires_at = _expiry(outcome.get("url_expires_at"), video.created)
            video.state = "expired" if video.url_expires_at <= now else "ready"
        else:
            video.state, video.error = "failed", outcome.get("error")
    else:
        video.state = "unknown" if run_state in _RUN_ENDED else "waiting"
    if video.video_task_id in kept:
        video.kept_by, extra = kept[video.video_task_id]
        video.kept_uri, video.kept_conn_id = str(extra["uri"]), extra.get("conn_id")
        video.state = "kept"


def _expiry(stated: Any, created: datetime) -> datetime:
    """When a live URL stops working: as the outcome says, else created + the URL's lifetime."""
    if isinstance(stated, str):
        try:
            return _utc(datetime.fromisoformat(stated))
        except ValueError:
            pass
    return created + VIDEO_URL_LIFETIME


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


def _chunks(items: list[tuple[str, str]]) -> Iterator[list[tuple[str, str]]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]
