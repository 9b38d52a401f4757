"""The create operator's spend reservation around each create request (the spend caps)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from airflow_grok_video import metrics
from airflow_grok_video.billing import Verdict
from airflow_grok_video.exceptions import GrokVideoSpendCapError, GrokVideoSpendStoreError
from airflow_grok_video.hooks.grok_video import Price
from airflow_grok_video.hooks.spend_store import ACCEPTED, RELEASED, UNCERTAIN, SpendRequest, SpendStore
from airflow_grok_video.spend_caps import Spend, SpendPolicy

log = logging.getLogger(__name__)

#: What a reservation becomes by the create's verdict: kept (counted) or released.
SETTLED_STATE = {Verdict.ACCEPTED: ACCEPTED, Verdict.UNCERTAIN: UNCERTAIN}


@dataclass
class SpendJournal:
    """
    Reserves a create's spend right before the request is sent, and settles it by the verdict.

    A :class:`~airflow_grok_video.billing.CreateJournal`. **accepted** and **uncertain** keep the
    reservation (counted); **not accepted** and **refused** release it. A reservation that cannot
    be settled stays counted: the store errs on the side of spending less.

    :param store: the spend caps' store.
    :param request: what the create would buy, and the caps.
    """

    store: SpendStore
    request: SpendRequest
    reservation: str | None = None

    def sending(self) -> None:
        """Reserve, or raise (a cap would be crossed, or the store cannot be used): nothing is sent."""
        self.reservation = self.store.reserve(self.request, datetime.now(timezone.utc))

    def settled(self, verdict: Verdict, video_task_id: str | None) -> None:
        """
        Keep or release the reservation.

        :param verdict: the create's verdict.
        :param video_task_id: the API's video task id, when accepted.
        """
        if self.reservation is None:
            return
        state = SETTLED_STATE.get(verdict, RELEASED)
        try:
            self.store.settle(self.reservation, state, video_task_id)
        except GrokVideoSpendStoreError as error:
            log.warning(
                "Spend reservation %s stays counted (it could not be marked %s): %s",
                self.reservation,
                state,
                error,
            )
        self.reservation = None


def spend_journal(
    spend: SpendPolicy | None,
    body: dict[str, Any],
    price: Price | None,
    context: Any,
    *,
    grok_conn_id: str,
    dag_id: str,
    task_id: str,
) -> SpendJournal | None:
    """
    The reservation journal of one create of a task instance, or ``None`` when no cap is set.

    :param spend: the caps in force (the task's pre-flight).
    :param body: the create's body.
    :param price: the connection's price, if any.
    :param context: the task's context.
    :param grok_conn_id: the connection the create buys through.
    :param dag_id: the DAG's id.
    :param task_id: the task's id.
    """
    if spend is None:
        return None
    ti = context["ti"]
    seconds = int(body["duration"])
    request = SpendRequest(
        grok_conn_id=grok_conn_id,
        dag_id=dag_id,
        run_id=ti.run_id,
        task_id=task_id,
        map_index=int(getattr(ti, "map_index", -1)),
        try_number=int(getattr(ti, "try_number", 1) or 1),
        spend=Spend(1, seconds, price.cost(seconds) if price else 0.0),
        caps=spend.caps,
    )
    return SpendJournal(SpendStore(spend.store_conn_id), request)


def refuse_beyond_run_cap(spend: SpendPolicy, asked: int, *, task_id: str, dag_id: str, what: str) -> None:
    """
    Refuse before anything is bought when a task asks for more videos in its run than ``videos_per_run``.

    :param spend: the caps in force.
    :param asked: how many videos the task asks for in this run (every map index, every item).
    :param task_id: the task's id.
    :param dag_id: the DAG's id.
    :param what: what refuses, for the message (``no map index buys any``).
    :raises GrokVideoSpendCapError: naming the cap, what was asked and who set the cap.
    """
    cap = spend.cap("videos_per_run")
    if cap is None or asked <= cap.limit:
        return
    metrics.count("spend_cap_refused", dag_id=dag_id, task_id=task_id)
    raise GrokVideoSpendCapError(
        cap.name,
        f"Spend cap videos_per_run={cap.limit:g} (set by {cap.source}): task {task_id!r} asks for {asked} "
        f"videos in this DAG run ({asked} > {cap.limit:g}), so {what}; nothing was sent.",
    )
