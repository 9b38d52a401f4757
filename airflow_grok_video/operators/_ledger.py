"""What a create task instance has bought so far, kept in Airflow's task state store across its tries.

Airflow retries a task after a crash, a timeout or any exception, and every create is billed. The
ledger records a create as *in flight* before it is sent and the video task id as soon as the
API answers, so that a later try of the same task instance (same run, task and map index) can
reattach to the video instead of buying another. It also records a fingerprint of what was asked
for, so that a try asking for something else (a changed prompt, image, ...) is never handed the
earlier try's video.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from typing import Any

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
    """

    def __init__(self, store: Any, try_number: int) -> None:
        self.store = store
        self.try_number = try_number

    @classmethod
    def of(cls, context: Any) -> CreateLedger | None:
        """
        The ledger of the running task instance, or ``None`` when Airflow has no task state store.

        :param context: the task's context.
        """
        store = context.get("task_state_store")
        if store is None:
            return None
        ti = context.get("ti")
        return cls(store, int(getattr(ti, "try_number", 1) or 1))

    def previous(self) -> CreateRecord | None:
        """The record an earlier try left, if any."""
        value = self.store.get(LEDGER_KEY)
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
        self.store.delete(LEDGER_KEY)

    def _write(self, record: CreateRecord) -> None:
        value = {
            "try_number": record.try_number,
            "sent_at": record.sent_at,
            "video_task_id": record.video_task_id,
            "fingerprint": record.fingerprint,
        }
        self.store.set(LEDGER_KEY, value)
