"""The spend caps' store: one SQL table, reserved into under a lock, shared by every worker.

Airflow gives tasks no atomic counter (Variables, XComs and the state stores are last-writer-wins),
so the caps are counted in a database the user names by an Airflow connection (``postgres`` or
``sqlite``, reached through Airflow's SQL hooks). A reservation is one transaction:

1. ``UPDATE grok_video_spend_lock ... WHERE name = 'spend'``: the row lock makes every other
   reservation wait until this one commits (PostgreSQL re-reads the row after the wait; SQLite
   locks the whole database for a write);
2. one ``SELECT SUM(...)`` per window the caps need (the UTC day, the month, the run): what is
   held there, every row not released;
3. the ``INSERT`` of the reservation, only if no cap would be crossed; else a rollback.

So twenty workers racing for the last five videos of a day get exactly five. A reservation is
settled after the create's verdict (:mod:`airflow_grok_video.billing`): ``accepted`` (with the
video task id) or ``uncertain`` keep it; ``not accepted`` or ``refused`` release it. A worker killed
in between leaves it ``reserved``, which counts (docs: "Spend caps" says how to release it).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, TypeVar

from airflow.providers.common.compat.sdk import BaseHook

from airflow_grok_video.exceptions import (
    GrokVideoSpendCapError,
    GrokVideoSpendStoreError,
    GrokVideoValidationError,
)
from airflow_grok_video.spend_caps import Cap, Spend, Window, over, windows_at

T = TypeVar("T")

#: The connection types whose databases the store is tested on.
SUPPORTED_CONN_TYPES = ("postgres", "sqlite")
TABLE = "grok_video_spend"
LOCK_TABLE = "grok_video_spend_lock"

#: The store's tables, created on first use (``{p}`` is the driver's placeholder).
CREATE_STATEMENTS = (
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
    reservation_id VARCHAR(36) PRIMARY KEY,
    grok_conn_id VARCHAR(250) NOT NULL,
    day_key VARCHAR(10) NOT NULL,
    month_key VARCHAR(7) NOT NULL,
    run_key VARCHAR(1000) NOT NULL,
    dag_id VARCHAR(250) NOT NULL,
    run_id VARCHAR(250) NOT NULL,
    task_id VARCHAR(250) NOT NULL,
    map_index INTEGER NOT NULL,
    try_number INTEGER NOT NULL,
    videos INTEGER NOT NULL,
    seconds INTEGER NOT NULL,
    cost DOUBLE PRECISION NOT NULL,
    state VARCHAR(16) NOT NULL,
    video_task_id VARCHAR(200),
    reserved_at VARCHAR(32) NOT NULL
)""",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_day ON {TABLE} (grok_conn_id, day_key)",
    f"CREATE TABLE IF NOT EXISTS {LOCK_TABLE} (name VARCHAR(32) PRIMARY KEY, reservations BIGINT NOT NULL)",
)
LOCK_ROW = "spend"
LOCK = f"UPDATE {LOCK_TABLE} SET reservations = reservations + 1 WHERE name = '{LOCK_ROW}'"
#: What a window holds: every reservation not released. ``{column}`` is the window's key column.
HELD = (
    f"SELECT COALESCE(SUM(videos), 0), COALESCE(SUM(seconds), 0), COALESCE(SUM(cost), 0) FROM {TABLE} "
    "WHERE grok_conn_id = {p} AND {column} = {p} AND state <> 'released'"
)
INSERT = (
    f"INSERT INTO {TABLE} (reservation_id, grok_conn_id, day_key, month_key, run_key, dag_id, run_id, "
    "task_id, map_index, try_number, videos, seconds, cost, state, video_task_id, reserved_at) "
    "VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, 'reserved', NULL, {p})"
)
SETTLE = f"UPDATE {TABLE} SET state = {{p}}, video_task_id = {{p}} WHERE reservation_id = {{p}}"
COLUMNS = {"day": "day_key", "month": "month_key", "run": "run_key"}
#: A reservation's states: ``reserved`` until the create's verdict, then one of the others.
RESERVED, ACCEPTED, UNCERTAIN, RELEASED = "reserved", "accepted", "uncertain", "released"


@dataclass(frozen=True)
class SpendRequest:
    """
    One create asking to reserve its spend.

    :param grok_conn_id: the Grok video connection it buys through (the day and month caps' scope).
    :param dag_id: the DAG's id.
    :param run_id: the DAG run's id.
    :param task_id: the create task's id.
    :param map_index: its map index (-1 when not mapped).
    :param try_number: its try.
    :param spend: what it would buy.
    :param caps: the caps to stay within.
    """

    grok_conn_id: str
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    try_number: int
    spend: Spend
    caps: tuple[Cap, ...]

    @property
    def run_key(self) -> str:
        """The run window's key: this task in this DAG run."""
        return f"{self.dag_id}/{self.run_id}/{self.task_id}"


class SpendStore:
    """
    Reserve and settle spend in the database of an Airflow SQL connection.

    :param conn_id: the SQL connection (type ``postgres`` or ``sqlite``).
    """

    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}(conn_id={self.conn_id!r})"

    def check(self) -> None:
        """
        Check the connection's type, sending nothing.

        :raises GrokVideoValidationError: for a missing connection or an unsupported type.
        """
        self._hook  # noqa: B018 - resolving it is the check

    @cached_property
    def _hook(self) -> Any:
        try:
            conn = BaseHook.get_connection(self.conn_id)
        except Exception as exc:
            raise GrokVideoValidationError(
                "spend_cap_conn_id", self.conn_id, f"names no connection Airflow can find ({exc})"
            ) from exc
        if conn.conn_type not in SUPPORTED_CONN_TYPES:
            raise GrokVideoValidationError(
                "spend_cap_conn_id",
                self.conn_id,
                f"is a {conn.conn_type!r} connection; the store runs on {' or '.join(SUPPORTED_CONN_TYPES)}",
            )
        try:
            return conn.get_hook()
        except Exception as exc:
            raise GrokVideoValidationError(
                "spend_cap_conn_id",
                self.conn_id,
                f"needs Airflow's provider apache-airflow-providers-{conn.conn_type} ({exc})",
            ) from exc

    def reserve(self, request: SpendRequest, now: datetime) -> str:
        """
        Reserve ``request``'s spend if every cap allows it, atomically.

        :param request: the create asking.
        :param now: the time of the reservation (aware).
        :return: the reservation's id.
        :raises GrokVideoSpendCapError: when a cap would be crossed; nothing was reserved.
        :raises GrokVideoSpendStoreError: when the store cannot be read or written (fail closed).
        """
        windows = windows_at(now, request.run_key)
        reservation_id = str(uuid.uuid4())
        values = (
            reservation_id,
            request.grok_conn_id,
            windows["day"].key,
            windows["month"].key,
            request.run_key,
            request.dag_id,
            request.run_id,
            request.task_id,
            request.map_index,
            request.try_number,
            request.spend.videos,
            request.spend.seconds,
            request.spend.cost,
            now.isoformat(timespec="seconds"),
        )

        def reserve(cursor: Any) -> None:
            cursor.execute(LOCK)
            if cursor.rowcount != 1:
                raise RuntimeError(f"the lock row of {LOCK_TABLE} is missing")
            for cap in request.caps:
                held = self._held(cursor, request.grok_conn_id, windows[cap.window])
                if over(cap, held, request.spend):
                    raise GrokVideoSpendCapError(cap.name, refusal(cap, held, request, windows[cap.window]))
            cursor.execute(self._sql(INSERT), values)

        self._transaction(reserve)
        return reservation_id

    def settle(self, reservation_id: str, state: str, video_task_id: str | None = None) -> None:
        """
        Record a reservation's outcome.

        :param reservation_id: the reservation.
        :param state: ``accepted``, ``uncertain`` (both still counted) or ``released``.
        :param video_task_id: the API's video task id, when accepted.
        :raises GrokVideoSpendStoreError: when the store cannot be written.
        """
        self._transaction(
            lambda cursor: cursor.execute(self._sql(SETTLE), (state, video_task_id, reservation_id))
        )

    def held(self, grok_conn_id: str, window: Window) -> Spend:
        """
        What one window holds now (every reservation not released).

        :param grok_conn_id: the Grok video connection.
        :param window: the window (see :func:`~airflow_grok_video.spend_caps.windows_at`).
        """
        return self._transaction(lambda cursor: self._held(cursor, grok_conn_id, window))

    def _held(self, cursor: Any, grok_conn_id: str, window: Window) -> Spend:
        cursor.execute(self._sql(HELD, column=COLUMNS[window.kind]), (grok_conn_id, window.key))
        videos, seconds, cost = cursor.fetchone()
        return Spend(int(videos), int(seconds), float(cost))

    def _sql(self, template: str, **names: str) -> str:
        return template.format(p=self._hook.placeholder, **names)

    def _transaction(self, work: Callable[[Any], T]) -> T:
        """Run ``work(cursor)`` in one transaction (tables created first); store failures fail closed."""
        try:
            conn = self._hook.get_conn()
        except Exception as exc:
            raise self._unreachable(exc) from exc
        try:
            self._ensure_tables(conn)
            cursor = conn.cursor()
            result = work(cursor)
            conn.commit()
            return result
        except GrokVideoSpendCapError:
            conn.rollback()
            raise
        except Exception as exc:
            _quietly(conn.rollback)
            raise self._unreachable(exc) from exc
        finally:
            _quietly(conn.close)

    #: The databases whose tables this process has seen (by URI): checked once per process.
    _ready: set[str] = set()

    def _ensure_tables(self, conn: Any) -> None:
        """Create the tables and the lock row if missing, in their own transaction."""
        database = self._hook.get_uri()
        if database in SpendStore._ready:
            return
        try:
            self._create_tables(conn)
        except Exception:
            conn.rollback()  # another worker created them at the same moment: the second look sees them
            self._create_tables(conn)
        SpendStore._ready.add(database)

    @staticmethod
    def _create_tables(conn: Any) -> None:
        cursor = conn.cursor()
        for statement in CREATE_STATEMENTS:
            cursor.execute(statement)
        cursor.execute(f"SELECT COUNT(*) FROM {LOCK_TABLE} WHERE name = '{LOCK_ROW}'")
        if cursor.fetchone()[0] == 0:
            cursor.execute(f"INSERT INTO {LOCK_TABLE} (name, reservations) VALUES ('{LOCK_ROW}', 0)")
        conn.commit()

    def _unreachable(self, exc: BaseException) -> GrokVideoSpendStoreError:
        return GrokVideoSpendStoreError(
            f"The spend caps' store (connection {self.conn_id!r}) could not be used "
            f"({type(exc).__name__}: {exc}), so no create was sent: spend caps fail closed"
        )


def refusal(cap: Cap, held: Spend, request: SpendRequest, window: Window) -> str:
    """
    Why a create was refused: the cap, what its window holds, and when it resets.

    :param cap: the cap it would cross.
    :param held: what the window holds.
    :param request: the create.
    :param window: the window.
    """
    where = {
        "run": f"this DAG run of task {request.task_id!r}",
        "day": f"UTC day {window.key} on connection {request.grok_conn_id!r}",
        "month": f"UTC month {window.key} on connection {request.grok_conn_id!r}",
    }[cap.window]
    return (
        f"Spend cap {cap.name}={cap.limit:g} (set by {cap.source}) would be crossed, so no create was "
        f"sent: {where} already holds {held.describe()}, and this create asks for "
        f"{request.spend.describe()}. The window resets {window.resets}."
    )


def _quietly(action: Any) -> None:
    """Run ``action``, ignoring its failure: closing a broken connection may fail too."""
    with contextlib.suppress(Exception):
        action()
