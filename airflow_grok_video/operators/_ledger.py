"""What a create task instance has bought so far, kept in Airflow's task state store across its tries.

Airflow retries a task after a crash, a timeout or any exception, and every create is billed. The
ledger records a create as *in flight* right before each request is sent and, by the request's
verdict (:mod:`airflow_grok_video.billing`), the video task id as soon as the API answers, or
nothing when the API did not accept it, so that a later try of the same task instance (same
run, task and map index) can reattach to the video instead of buying another. It also records a
fingerprint of what was asked for, so that a try asking for something else (a changed prompt,
image, ...) is never handed the earlier try's video.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from typing import Any

from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_grok_video.billing import Verdict

#: The task state store key; renaming it would orphan the records of tries in flight.
LEDGER_KEY = "grok_video_create"


@dataclass(frozen=True)
class CreateRecord:
    """
    One create, as an earlier try left it.

    :param try_number: the try that sent it.
    :param sent_at: Unix time at which it was sent.
    :param video_task_id: the API's video task id, or ``None`` while the answer is unknown.
    :param fingerprint: a digest of each field of the create's body (see :func:`fingerprint`);
        empty for a record written before fingerprints were kept.
    """

    try_number: int
    sent_at: float
    video_task_id: str | None = None
    fingerprint: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """Say which try sent the create and when, for messages."""
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.sent_at))
        return f"try {self.try_number} sent a create at {when}"

    def changed_fields(self, now: dict[str, str]) -> list[str]:
        """
        The body fields whose value differs from this record's, sorted; none for an old record.

        :param now: the fingerprint of the create the current try would send.
        """
        if not self.fingerprint:
            return []
        fields = self.fingerprint.keys() | now.keys()
        return sorted(k for k in fields if self.fingerprint.get(k) != now.get(k))


def item_key(index: int) -> str:
    """
    The store key of a batch's item ``index`` (its position in the batch's input).

    :param index: the item's position, from 0.
    """
    return f"{LEDGER_KEY}/{index}"


def fingerprint(body: dict[str, Any]) -> dict[str, str]:
    """
    A digest of each field of a create's body: enough to tell which field changed, nothing readable.

    :param body: the create request's JSON body.
    """
    return {
        key: hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]
        for key, value in body.items()
    }


class CreateLedger:
    """
    Read and write the task instance's :class:`CreateRecord` in ``task_state_store``.

    :param store: the context's ``task_state_store`` (``None`` when Airflow has none: before 3.3).
    :param try_number: the current try.
    :param key: the store key: :data:`LEDGER_KEY` for a task that buys one video; a batch keeps one
        ledger per item (:func:`item_key`).
    """

    def __init__(self, store: Any, try_number: int, key: str = LEDGER_KEY) -> None:
        self.store = store
        self.try_number = try_number
        self.key = key

    @classmethod
    def of(cls, context: Any, key: str = LEDGER_KEY) -> CreateLedger | None:
        """
        The ledger of the running task instance, or ``None`` when Airflow has no task state store.

        :param context: the task's context.
        :param key: the store key (see the class).
        """
        store = context.get("task_state_store")
        if store is None:
            return None
        ti = context.get("ti")
        return cls(store, int(getattr(ti, "try_number", 1) or 1), key)

    def previous(self) -> CreateRecord | None:
        """The record an earlier try left, if any."""
        value = self.store.get(self.key)
        if not isinstance(value, dict):
            return None
        task_id = value.get("video_task_id")
        digests = value.get("fingerprint")
        return CreateRecord(
            try_number=int(value.get("try_number", 0)),
            sent_at=float(value.get("sent_at", 0.0)),
            video_task_id=str(task_id) if task_id else None,
            fingerprint={str(k): str(v) for k, v in digests.items()} if isinstance(digests, dict) else {},
        )

    def in_flight(self, digests: dict[str, str]) -> CreateRecord:
        """
        Record, before sending, that this try is sending a create.

        :param digests: the :func:`fingerprint` of the create's body.
        :return: the record written.
        """
        record = CreateRecord(self.try_number, time.time(), fingerprint=digests)
        self._write(record)
        return record

    def created(self, sent: CreateRecord, video_task_id: str) -> None:
        """
        Record the video the API created for this try.

        :param sent: the in-flight record of the create.
        :param video_task_id: the API's video task id.
        """
        self._write(replace(sent, video_task_id=video_task_id))

    def clear(self) -> None:
        """Forget the create: nothing was bought (the API certainly did not accept it)."""
        self.store.delete(self.key)

    def _write(self, record: CreateRecord) -> None:
        value = {
            "try_number": record.try_number,
            "sent_at": record.sent_at,
            "video_task_id": record.video_task_id,
            "fingerprint": record.fingerprint,
        }
        self.store.set(self.key, value)


@dataclass
class LedgerJournal:
    """
    Keeps the ledger around each create request (a :class:`~airflow_grok_video.billing.CreateJournal`).

    *In flight* is written right before a request leaves, so a wait between two attempts (a 429's
    ``Retry-After``) is never recorded as a create that may have been billed. After the request, its
    verdict decides: **not accepted** or **refused** clears the record, **accepted** records the video
    task id, **uncertain** keeps the in-flight record (a later try must not buy another).

    :param ledger: the task instance's ledger.
    :param digests: the :func:`fingerprint` of the create's body.
    """

    ledger: CreateLedger
    digests: dict[str, str]
    sent: CreateRecord | None = None

    def sending(self) -> None:
        """Record the create as in flight."""
        self.sent = self.ledger.in_flight(self.digests)

    def settled(self, verdict: Verdict, video_task_id: str | None) -> None:
        """
        Record what the request's verdict says.

        :param verdict: the verdict.
        :param video_task_id: the API's video task id, when accepted.
        :raises AirflowFailException: when an accepted video cannot be recorded (it names the id).
        """
        if verdict in (Verdict.NOT_ACCEPTED, Verdict.REFUSED):
            self.ledger.clear()
        elif verdict is Verdict.ACCEPTED and self.sent is not None and video_task_id is not None:
            try:
                self.ledger.created(self.sent, video_task_id)
            except Exception as exc:
                raise AirflowFailException(
                    f"Created (and paid for) video task {video_task_id}, but could not record it in the "
                    f"task state store ({type(exc).__name__}: {exc}). A retry would take the create as "
                    f"uncertain: use video task {video_task_id} (e.g. with GrokVideoSensor) instead."
                ) from exc
