"""Spend caps: at most so many videos, seconds or estimated cost per run, UTC day or month.

A cap is a measure (``videos``, ``seconds``, ``cost``) over a window (``run``: one DAG run of one
create task, all its map indexes and tries; ``day`` and ``month``: UTC, every task and worker using
the connection). It is named ``<measure>_per_<window>``, e.g. ``videos_per_day``. The connection
sets caps in its ``spend_caps`` extra, with the SQL store that counts them in ``spend_cap_conn_id``
(:mod:`airflow_grok_video.hooks.spend_store`); a task may lower them (the create operator's
``spend_caps``), never raise them. This module holds the rules; the store holds the counts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_grok_video.exceptions import GrokVideoValidationError

MEASURES = ("videos", "seconds", "cost")
WINDOWS = ("run", "day", "month")
#: Every cap's name, ``<measure>_per_<window>``.
CAP_NAMES = tuple(f"{measure}_per_{window}" for window in WINDOWS for measure in MEASURES)
#: The connection extra holding the caps (a JSON object of cap name to limit).
CAPS_EXTRA = "spend_caps"
#: The connection extra naming the SQL connection whose database counts the spend.
STORE_EXTRA = "spend_cap_conn_id"


@dataclass(frozen=True)
class Cap:
    """
    One limit on what may be bought.

    :param measure: ``videos``, ``seconds`` or ``cost`` (estimated, in the connection's currency).
    :param window: ``run``, ``day`` or ``month``.
    :param limit: the most that may be reserved in one window.
    :param source: where it was set, for messages (``connection 'x'`` or ``task 'y'``).
    """

    measure: str
    window: str
    limit: float
    source: str

    @property
    def name(self) -> str:
        """The cap's name, e.g. ``videos_per_day``."""
        return f"{self.measure}_per_{self.window}"


@dataclass(frozen=True)
class Spend:
    """
    What has been (or would be) bought: videos, seconds and the estimated cost.

    :param videos: videos.
    :param seconds: seconds of video.
    :param cost: the estimated cost (0 when the connection has no price).
    """

    videos: int = 0
    seconds: int = 0
    cost: float = 0.0

    def of(self, measure: str) -> float:
        """
        The amount of one measure.

        :param measure: ``videos``, ``seconds`` or ``cost``.
        """
        return float(getattr(self, measure))

    def describe(self) -> str:
        """For messages: ``3 videos, 45 s`` (and ``, estimated cost 4.5`` when there is a cost)."""
        videos = f"{self.videos} video{'s' if self.videos != 1 else ''}, {self.seconds} s"
        return f"{videos}, estimated cost {self.cost:g}" if self.cost else videos


@dataclass(frozen=True)
class SpendPolicy:
    """
    The caps a create must stay within, and the store that counts them.

    :param store_conn_id: the SQL connection whose database holds the counts.
    :param caps: the caps, each the lower of the connection's and the task's.
    """

    store_conn_id: str
    caps: tuple[Cap, ...]

    def cap(self, name: str) -> Cap | None:
        """
        The cap named ``name``, if set.

        :param name: a cap's name, e.g. ``videos_per_run``.
        """
        return next((cap for cap in self.caps if cap.name == name), None)


def parse_caps(value: Any, source: str) -> dict[str, float]:
    """
    Read caps as given (a mapping of cap name to a limit >= 0), refusing anything else.

    :param value: the mapping; ``None`` for none.
    :param source: where it comes from, for messages (``spend_caps of connection 'x'``).
    :raises GrokVideoValidationError: naming the cap, its value and what is allowed.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise GrokVideoValidationError(
            source, value, f"must map cap names ({', '.join(CAP_NAMES)}) to limits"
        )
    caps: dict[str, float] = {}
    for name, limit in value.items():
        if name not in CAP_NAMES:
            raise GrokVideoValidationError(
                f"{source}[{name!r}]", limit, f"the caps are {', '.join(CAP_NAMES)}"
            )
        if isinstance(limit, bool) or not isinstance(limit, int | float) or not 0 <= limit < math.inf:
            raise GrokVideoValidationError(f"{source}[{name!r}]", limit, "must be a finite number >= 0")
        if not name.startswith("cost") and limit != int(limit):
            raise GrokVideoValidationError(f"{source}[{name!r}]", limit, "must be a whole number")
        caps[name] = float(limit)
    return caps


def combine(
    connection: dict[str, float], task: dict[str, float], *, conn_id: str, task_id: str
) -> tuple[Cap, ...]:
    """
    The caps in force: the connection's, lowered (never raised) by the task's.

    :param connection: the connection's caps (:func:`parse_caps`).
    :param task: the task's caps.
    :param conn_id: the connection's id, for messages.
    :param task_id: the task's id, for messages.
    :raises GrokVideoValidationError: when the task sets a cap above the connection's.
    """
    caps = []
    for name in CAP_NAMES:
        mine, theirs = task.get(name), connection.get(name)
        if mine is not None and theirs is not None and mine > theirs:
            raise GrokVideoValidationError(
                f"spend_caps[{name!r}]",
                mine,
                f"connection {conn_id!r} caps it at {theirs:g}; a task may lower a connection's cap, "
                "not raise it",
            )
        if mine is None and theirs is None:
            continue
        measure, window = name.split("_per_")
        if mine is not None:
            caps.append(Cap(measure, window, mine, f"task {task_id!r}"))
        else:
            caps.append(Cap(measure, window, float(theirs or 0), f"connection {conn_id!r}"))
    return tuple(caps)


@dataclass(frozen=True)
class Window:
    """
    The window a create falls in, for one kind of window.

    :param kind: ``run``, ``day`` or ``month``.
    :param key: the window's key in the store: the day (``2026-12-02``), the month (``2026-12``) or
        the run (``<dag_id>/<run_id>/<task_id>``).
    :param resets: when it resets, for messages.
    """

    kind: str
    key: str
    resets: str


def windows_at(now: datetime, run_key: str) -> dict[str, Window]:
    """
    The windows a create made at ``now`` falls in.

    :param now: when it is made (aware).
    :param run_key: the run's key, ``<dag_id>/<run_id>/<task_id>``.
    """
    utc = now.astimezone(timezone.utc)
    tomorrow = (utc + timedelta(days=1)).strftime("%Y-%m-%d")
    next_month = (utc.replace(day=28) + timedelta(days=4)).strftime("%Y-%m-01")
    return {
        "run": Window("run", run_key, "never: it counts this task in this DAG run"),
        "day": Window("day", utc.strftime("%Y-%m-%d"), f"at {tomorrow}T00:00:00Z"),
        "month": Window("month", utc.strftime("%Y-%m"), f"at {next_month}T00:00:00Z"),
    }


def over(cap: Cap, spent: Spend, this: Spend) -> bool:
    """
    Whether buying ``this`` on top of ``spent`` would cross ``cap``.

    :param cap: the cap.
    :param spent: what the window already holds.
    :param this: what the create would buy.
    """
    return round(spent.of(cap.measure) + this.of(cap.measure), 6) > cap.limit
