"""When a failed request is sent again, and how long it waits first.

The one home of the retry rules: :meth:`RetryPolicy.attempts` hands out the attempts, and the
hook's sync and async requests and the transfer's download all iterate it, so none of them has a
retry loop of its own. A create is billed, so it is sent again only when the billing table
(:mod:`airflow_grok_video.billing`) says the API did not accept it.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from airflow_grok_video.billing import Verdict
from airflow_grok_video.exceptions import GrokVideoAPIError


def parse_retry_after(value: str | None) -> float | None:
    """
    Read a ``Retry-After`` header: delay-seconds or an HTTP date; ``None`` when absent or unreadable.

    :param value: the header's value.
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass
class Attempt:
    """
    One try at a request: sleep :attr:`wait` seconds, send, and report a failure with :meth:`failed`.

    :param number: 1 for the first request, 2 for the first retry, ...
    :param wait: seconds to wait before sending (0 for the first).
    """

    number: int
    wait: float = 0.0
    error: GrokVideoAPIError | None = None

    def failed(self, error: GrokVideoAPIError) -> None:
        """
        Report that this attempt failed: the next one is handed out, or the final error raised.

        :param error: what went wrong.
        """
        self.error = error


@dataclass(frozen=True)
class RetryPolicy:
    """
    Exponential backoff with jitter, honouring ``Retry-After``, bounded in count and by a deadline.

    :param max_attempts: requests sent at most, the first one included.
    :param base_delay: the first backoff, in seconds; it doubles with each retry.
    :param max_delay: the largest backoff, in seconds.
    :param max_retry_after: the longest ``Retry-After`` honoured, in seconds; a longer one is cut.
    """

    max_attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 30.0
    max_retry_after: float = 300.0

    def attempts(self, *, creates: bool, deadline: float | None = None, log: Any = None) -> Iterator[Attempt]:
        """
        Hand out the attempts at one request until one succeeds (the caller stops iterating).

        Each attempt says how long to wait before sending it. After an attempt reported with
        :meth:`Attempt.failed`, the next one comes only if :meth:`delay` allows it; otherwise
        iterating raises :meth:`final_error`. Use the same way from sync and async code::

            for attempt in policy.attempts(creates=False, deadline=deadline):
                time.sleep(attempt.wait)  # or: await asyncio.sleep(attempt.wait)
                try:
                    return send()
                except GrokVideoAPIError as error:
                    attempt.failed(error)

        :param creates: whether the request creates (and bills) a video.
        :param deadline: Unix time after which no retry is started.
        :param log: the logger each retry is announced on (a warning), e.g. a hook's ``log``.
        """
        attempt = Attempt(1)
        while True:
            yield attempt
            error = attempt.error
            if error is None:  # the caller went on without reporting a failure
                return
            wait = self.delay(error, attempt.number, creates=creates, deadline=deadline)
            if wait is None:
                raise self.final_error(error, attempt.number) from error
            if log is not None:
                log.warning(
                    "%s; trying again in %.1fs (attempt %d of %d)",
                    error,
                    wait,
                    attempt.number + 1,
                    self.max_attempts,
                )
            attempt = Attempt(attempt.number + 1, wait)

    def delay(
        self, error: GrokVideoAPIError, attempt: int, *, creates: bool, deadline: float | None = None
    ) -> float | None:
        """
        Seconds to wait before sending the request again, or ``None`` to give up.

        :param error: what went wrong with attempt number ``attempt``.
        :param attempt: how many requests were sent so far (1 after the first).
        :param creates: whether the request creates (and bills) a video.
        :param deadline: Unix time after which nobody waits for the answer any more.
        """
        if not error.transient or attempt >= self.max_attempts:
            return None
        if creates and error.verdict is not Verdict.NOT_ACCEPTED:
            return None
        if error.retry_after is not None:
            wait = min(error.retry_after, self.max_retry_after)
        else:
            ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
            wait = random.uniform(ceiling / 2, ceiling)
        if deadline is not None and time.time() + wait >= deadline:
            return None
        return wait

    @staticmethod
    def final_error(error: GrokVideoAPIError, attempts: int) -> GrokVideoAPIError:
        """
        The exception to raise once retrying stops: ``error``, saying how many attempts were made.

        It keeps its class, so a create keeps what its verdict made it (see
        :func:`airflow_grok_video.billing.create_error`): a refusal or an uncertain create is not
        retried by Airflow either.

        :param error: the last failure.
        :param attempts: how many requests were sent.
        """
        if attempts == 1:
            return error
        return type(error)(
            f"{error} (gave up after {attempts} attempts)",
            http_status=error.http_status,
            code=error.code,
            msg=error.msg,
            transient=error.transient,
            sent=error.sent,
            retry_after=error.retry_after,
            verdict=error.verdict,
        )


class Pacer:
    """
    A gate shared by requests sent side by side (a batch's creates), closed for a while by a 429.

    After an HTTP 429, none is sent until the wait the API asked for (``Retry-After``, else
    ``pause``) has passed.

    Each request still honours its own 429 through :class:`RetryPolicy`; the gate keeps the others
    from running into the same limit meanwhile. Thread-safe.

    :param pause: seconds the gate stays closed after a 429 without ``Retry-After``.
    """

    def __init__(self, pause: float = 1.0) -> None:
        self.pause = pause
        self._lock = threading.Lock()
        self._open_at = 0.0

    def wait_turn(self) -> None:
        """Block until the gate is open."""
        while True:
            with self._lock:
                closed_for = self._open_at - time.monotonic()
            if closed_for <= 0:
                return
            time.sleep(closed_for)

    def answered(self, error: GrokVideoAPIError) -> None:
        """
        Close the gate if ``error`` is a 429, for as long as it asks.

        :param error: a request's failure.
        """
        if error.http_status != 429:
            return
        wait = self.pause if error.retry_after is None else error.retry_after
        with self._lock:
            self._open_at = max(self._open_at, time.monotonic() + wait)
