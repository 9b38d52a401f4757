"""
Use against the spend caps, for the Videos page: what each capped connection's store holds now.

Read from the same store that reserves each create (docs/spend-caps.md), through the connection's
own settings; nothing is reserved or changed here.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

DEFAULT_CONN_ID = "grok_video_default"


def grok_connections(session: Session) -> list[str]:
    """The Grok video connections to look at: those in the metadata database, and the default one."""
    from airflow.models.connection import Connection
    from sqlalchemy import select

    stored = session.scalars(select(Connection.conn_id).where(Connection.conn_type == "grok_video"))
    return sorted({*stored, DEFAULT_CONN_ID})


def cap_usage(conn_ids: list[str], now: datetime) -> list[dict[str, Any]]:
    """
    One row per cap of each capped connection: its limit and what its current window holds.

    A connection that cannot be read, or has no caps, gives no rows; a store that cannot be reached
    gives rows saying so (creates through it fail closed meanwhile).

    :param conn_ids: the Grok video connections.
    :param now: the time whose day and month windows are read.
    """
    rows: list[dict[str, Any]] = []
    for conn_id in conn_ids:
        rows += _connection_usage(conn_id, now)
    return rows


def _connection_usage(conn_id: str, now: datetime) -> list[dict[str, Any]]:
    from airflow_grok_video.exceptions import GrokVideoSpendStoreError
    from airflow_grok_video.hooks.grok_video import GrokVideoHook
    from airflow_grok_video.hooks.spend_store import SpendStore
    from airflow_grok_video.spend_caps import windows_at

    try:
        policy = GrokVideoHook(conn_id).spend_policy()
    except Exception:  # a connection that is missing or misconfigured: its own creates say why
        return []
    if policy is None:
        return []
    store, windows = SpendStore(policy.store_conn_id), windows_at(now, "")
    rows = []
    for cap in policy.caps:
        row: dict[str, Any] = {"conn_id": conn_id, "cap": cap.name, "limit": cap.limit}
        if cap.window == "run":
            rows.append({**row, "used": None, "window": "each DAG run", "resets": None})
            continue
        window = windows[cap.window]
        try:
            used: float | None = store.held(conn_id, window).of(cap.measure)
        except GrokVideoSpendStoreError as error:
            used, row["error"] = None, str(error)
        rows.append({**row, "used": used, "window": window.key, "resets": window.resets})
    return rows
