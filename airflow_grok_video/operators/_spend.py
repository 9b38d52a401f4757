"""The create operator's spend reservation around each create request (the spend caps)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from airflow_grok_video.billing import Verdict
from airflow_grok_video.exceptions import GrokVideoSpendStoreError
from airflow_grok_video.hooks.spend_store import ACCEPTED, RELEASED, UNCERTAIN, SpendRequest, SpendStore

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
