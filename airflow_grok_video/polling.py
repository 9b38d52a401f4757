"""When to query a video task next: adaptive polling between a floor and a ceiling.

The one home of the polling rules, shared by the trigger (deferred waits) and the create
operator's wait in the worker. The API reports ``progress`` (1-99 while ``processing``) and
``created_at``; assuming progress grows roughly linearly, a few answers tell when the video
will be done, so the schedule can skip the queries in between:

1. The first query comes after half to all of the ``floor``, jittered (so that many waits
   started together spread out); a wait handed the answer its task read before deferring
   (:class:`Look`) takes that answer as its first query's and goes on from it.
2. With no progress yet (queued, or a status without progress), it waits until the video has
   existed for :data:`QUEUED_AGE` of the ceiling (or :data:`QUEUED_FLOORS` floors, if sooner),
   and at least as long again as it has so far:
   a reading that late places the end of a video up to 1.5 ceilings long within one wait, and
   queries thin out geometrically while nothing is known (never more than the ceiling apart, so a
   video that shows no progress is still noticed within it). A first reading too early to
   extrapolate from (a few seconds) waits the same, but no later than the end it allows at a
   percent more, unless the latest end it allows is more than a ceiling after that (always so
   for 1 %, which the API shows from the processing start): then no sooner than that latest
   end less a ceiling, so that the next reading is within a ceiling of the end.
3. With one progress reading, it extrapolates from the processing start (``created_at``, or
   half-way between the last ``queued`` answer and this one), once that rests on a few seconds,
   and queries again half-way to the estimated end, to measure the rate (a leap of at most 8 times
   the processing time seen, or as far as nothing known would go). Except right after a
   ``queued`` answer: the wait has already spent a query, so the reading is taken as counted from
   the create (the latest end it can mean) and, if that places the end within
   :data:`CREATE_SPREAD` seconds, the next query is aimed at it.
4. With two readings, the rate is known, to within the rounding of the progress. After a queue,
   if both fit progress counted from the create, that line (pinned at ``created_at``) gives the
   end more tightly. Once the end may be off by no more than a few seconds, the next query is aimed just
   after it; until then, half-way again. If the video is not done then (progress is not linear,
   or counted from the processing start), the estimate is redone from the new reading: a wrong
   guess costs a query, never a missed completion.
5. An end further away than the ceiling is reached in equal waits, so that the last lands on it
   rather than up to a floor after it; unless the end may come within the ceiling (the readings
   allow it at a percent more): then the query goes at the ceiling.

Every wait is clamped to ``[floor, ceiling]``; with ``ceiling <= floor`` it polls every ``floor``
seconds, as a fixed-interval sensor would.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from airflow_grok_video.video_task import VideoTask

#: How far towards the first estimate of the end the second query goes: far enough to measure
#: the rate over a long stretch, early enough that a first estimate off by 2x still lands before the end.
REFINE_FRACTION = 0.5
#: Slack given to Airflow's own deferral timeout, so that the trigger's clearer ``timeout`` event comes first.
DEFERRAL_GRACE = timedelta(seconds=60)
#: The default ceiling of the sensor's and the operator's waits, in seconds.
DEFAULT_MAX_POLL_INTERVAL = 120.0
#: A single reading is extrapolated at most this many times the processing time it has seen:
#: 1% after 2 s says little about whether the video takes 60 s or 300 s.
MAX_LEAP = 8.0
#: A single reading is extrapolated only once it rests on this many seconds of processing
#: (``created_at`` has whole-second resolution).
MIN_OBSERVED = 5.0
#: The next query is aimed at the estimated end once the estimate may be off by no more than this
#: many seconds; until then it goes half-way, to measure the rate over a longer stretch.
FINAL_SPREAD = 5.0
#: Seconds added after the estimated end (capped at the floor), so that the query lands after it.
END_MARGIN = 0.5
#: Right after a ``queued`` answer, a single reading counted from the create is aimed at once if it
#: places the end within this many seconds (the query goes to the latest of them).
CREATE_SPREAD = 3 * FINAL_SPREAD
#: After an answer without progress (``queued``), the next query waits until the video has existed
#: for at least this share of the ceiling (and as long again as it has so far): a queued answer says
#: nothing about the end, and a reading taken that late places it within seconds. Just past half:
#: the end of a video 1.5 ceilings long is then within one ceiling of the reading, and one that
#: takes half a ceiling and a floor (90 s with a 30 s floor and the default ceiling) is passed by
#: no more than a few seconds.
QUEUED_AGE = 0.53
#: ... and no later than this many floors after the create: the floor says the time scale of the
#: videos waited for (a wait polling every second is not for a video of minutes).
QUEUED_FLOORS = 5.0
#: ``created_at`` further back than this is not trusted as the processing start (clock skew, old tasks).
MAX_TRUSTED_AGE = 24 * 60 * 60


@dataclass
class _Reading:
    """The first progress reading of a wait: when, how far, and since when the video was processing."""

    time: float
    progress: int
    started: float
    after_queue: bool = False


@dataclass
class PollSchedule:
    """
    Decide how long to wait before the next query of one video task.

    One instance per wait; feed it every answer with :meth:`next_delay`.

    :param floor: the shortest wait between two queries, in seconds (> 0).
    :param ceiling: the longest wait between two queries; ``None`` or ``<= floor`` polls every ``floor``.
    :param started: Unix time the wait began (stands in for ``created_at`` when the API omits it).
    """

    floor: float
    ceiling: float | None = None
    started: float = field(default_factory=time.time)
    _first: _Reading | None = field(default=None, init=False, repr=False)
    _queued_at: float | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.floor > 0:
            raise ValueError(f"poll interval (the floor) must be > 0 seconds, got {self.floor!r}")
        if self.ceiling is not None and not self.ceiling > 0:
            raise ValueError(f"max poll interval (the ceiling) must be > 0 seconds, got {self.ceiling!r}")

    @property
    def adaptive(self) -> bool:
        """Whether waits adapt to the task's progress (the ceiling is above the floor)."""
        return self.ceiling is not None and self.ceiling > self.floor

    def first_delay(self) -> float:
        """
        Seconds before the first query, jittered so that waits started together spread out.

        Anywhere within the floor at a fixed interval; adaptive, in its second half, so that the
        first answer already shows some progress to estimate from.
        """
        return self.floor * random.uniform(0.5 if self.adaptive else 0.0, 1.0)

    def next_delay(self, task: VideoTask, now: float) -> float:
        """
        Seconds to wait after an answer that says the task is still running.

        :param task: the answer.
        :param now: Unix time of the answer.
        """
        if not self.adaptive:
            return self.floor
        assert self.ceiling is not None
        if task.says_done:
            return self.floor  # done but no URL yet: it should follow at once
        end, spread, earliest = self._estimate_end(task, now)
        if end is None:
            delay = self._nothing_known_delay(task, now)
        else:
            remaining = end - now
            if spread <= FINAL_SPREAD or remaining < 2 * self.floor:
                delay = remaining + min(END_MARGIN, self.floor)
                if delay > self.ceiling and earliest - now > self.ceiling:
                    delay /= math.ceil(delay / self.ceiling)  # equal waits, the last on the end
                delay = min(delay, self.ceiling)  # the end may come within a ceiling: look there
            else:  # half-way, to measure the rate; a leap from one reading as far as nothing known
                leap = MAX_LEAP * self._observed(now)
                if self._first is not None and self._first.time == now:
                    leap = max(leap, self._nothing_known_delay(task, now))
                delay = min(REFINE_FRACTION * remaining, remaining - self.floor, leap)
        return min(self.ceiling, max(self.floor, delay))

    def _nothing_known_delay(self, task: VideoTask, now: float) -> float:
        """
        The wait while no answer has placed the end (``queued``, or a first reading).

        As long again as the video has existed, and until it has existed for :data:`QUEUED_AGE`
        of the ceiling (or :data:`QUEUED_FLOORS` floors, if sooner): a reading that late places a
        video of up to 1.5 ceilings long within one wait of its end. A first reading that bounds the
        end sooner is queried at that bound.

        :param task: the answer.
        :param now: Unix time of the answer.
        """
        assert self.ceiling is not None
        age = now - self._origin(task, now)
        delay = max(age, min(QUEUED_AGE * self.ceiling, QUEUED_FLOORS * self.floor) - age)
        first = self._first
        if first is not None and first.time == now and not first.after_queue:
            # The end were the progress a percent more, over the longest the video can have existed
            # (created_at names whole seconds): a short video is not passed over. Unless the reading
            # leaves the end so open that a query there may find it more than a ceiling away (and
            # buy a query more): then no sooner than the latest end it allows, less a ceiling. A
            # reading of 1 % allows any end: the API shows it from the moment processing starts.
            seen = now - first.started + 0.5
            soonest = seen * 100 / (first.progress + 1) - seen
            latest = seen * 100 / first.progress - seen if first.progress > 1 else math.inf
            delay = min(delay, max(soonest, latest - self.ceiling))
        return delay

    def _estimate_end(self, task: VideoTask, now: float) -> tuple[float | None, float, float]:
        """
        The estimated Unix time of completion (``None`` if unknown), its spread, and its earliest.

        The spread is how many seconds before the estimate the video may be done; the earliest is
        the soonest it can be done, were each reading a percent more than shown.

        :param task: the answer.
        :param now: Unix time of the answer.
        """
        progress = task.progress or 0
        if not 1 <= progress <= 99:
            if progress == 0:
                self._queued_at = now  # not started yet: processing begins after this answer
            return None, math.inf, math.inf
        first = self._first
        if first is None or progress < first.progress:  # the first reading, or generation restarted
            queued = self._queued_at is not None
            started = (self._queued_at + now) / 2 if self._queued_at is not None else self._origin(task, now)
            first = self._first = _Reading(now, progress, started, queued)
        created = self._origin(task, now) - 0.5  # the start of the second created_at names
        gained = progress - first.progress
        if gained >= 2:
            # Both readings are rounded down, so the gain is known to within one percent: the
            # conservative rate counts one percent less, and the end is off by 1/(gained - 1) at most.
            remaining = (100 - progress) * (now - first.time) / (gained - 1)
            spread = remaining / (gained - 1)
            # A percent more each way; two more from a first reading of 1 %, which may have been 0.
            most = gained + (2 if first.progress == 1 else 1)
            soonest = now + (99 - progress) * (now - first.time) / most
            if first.after_queue:  # was progress counted from the create, through the queue?
                pinned = _end_from_create(created, ((first.time, first.progress), (now, progress)))
                if pinned is not None and pinned[1] < spread:
                    return pinned[0], pinned[1], pinned[0] - pinned[1]
            return now + remaining, spread, soonest
        if first.after_queue and now == first.time:
            pinned = _end_from_create(created, ((now, progress),))
            if pinned is not None and pinned[1] <= CREATE_SPREAD:
                return pinned[0], 0.0, pinned[0] - pinned[1]  # aimed at its latest end: no query left
        elapsed = now - first.started
        if elapsed < MIN_OBSERVED:  # timestamps are whole seconds: too short to extrapolate from
            return None, math.inf, math.inf
        # Progress is rounded down: the reading places the end before its latest, aimed at when near.
        return (
            first.started + elapsed * 100 / progress,
            math.inf,
            first.started + elapsed * 100 / (progress + 1),
        )

    def _observed(self, now: float) -> float:
        """Seconds of processing the first reading's estimate rests on, up to now."""
        return now - self._first.started if self._first else 0.0

    def _origin(self, task: VideoTask, now: float) -> float:
        if task.created_at is None:
            return self.started
        created = task.created_at + 0.5  # whole seconds: the middle of the second it names
        return created if 0 <= now - created <= MAX_TRUSTED_AGE else self.started


def _end_from_create(created: float, readings: tuple[tuple[float, int], ...]) -> tuple[float, float] | None:
    """
    The end if progress counts from the create, and how far before it the video may be done.

    Each reading (time, progress rounded down) bounds the end; ``None`` if they do not agree (the
    progress is not linear from the create) or one rests on too few seconds. ``created`` is the
    start of the second ``created_at`` names (the create fell within the second after it).
    """
    latest, earliest = math.inf, -math.inf
    for at, progress in readings:
        if at - created < MIN_OBSERVED:
            return None
        latest = min(latest, created + (at - created) * 100 / progress)
        earliest = max(earliest, created + 1 + (at - created - 1) * 100 / (progress + 1))
    if earliest > latest:
        return None
    return latest, latest - earliest


@dataclass(frozen=True)
class PollStep:
    """
    What one answer means for a wait.

    :param status: ``success`` (the video has its URL), ``failed`` (the task ended without a
        video: ``failed``, or an undocumented status that says so, e.g. ``cancelled``), ``timeout``
        (the deadline has passed) or ``waiting`` (query again after ``delay``).
    :param task: the answer.
    :param message: the line to log or raise, e.g.
        ``Grok video task v1: processing 45%; next query in 37.0s``.
    :param delay: seconds to wait before the next query, when ``waiting``.
    """

    status: Literal["success", "failed", "timeout", "waiting"]
    task: VideoTask
    message: str
    delay: float = 0.0

    @property
    def reading(self) -> str:
        """Where the task stands (``processing 45%``): a wait logs a line when this changes."""
        return self.task.describe()


@dataclass(frozen=True)
class Look:
    """
    An answer read before the wait began (a deferring sensor's look): the wait's first query.

    A wait handed a look does not query early again: :meth:`VideoWait.step` reads it as the answer
    to its first query, and the next one follows the schedule from :attr:`read_at`. It travels in
    the trigger's arguments as :meth:`to_kwargs` gives it: the status, the progress, ``created_at``
    and the time it was read, nothing else (no URL, no message; never a secret).

    :param task: the answer (only its status, progress and ``created_at`` are kept).
    :param read_at: Unix time the answer was read.
    """

    task: VideoTask
    read_at: float

    def to_kwargs(self) -> dict[str, Any]:
        """The look as JSON-serializable trigger arguments."""
        return {
            "status": self.task.status,
            "progress": self.task.progress,
            "created_at": self.task.created_at,
            "read_at": self.read_at,
        }

    @classmethod
    def from_kwargs(cls, video_task_id: str, kwargs: Any) -> Look | None:
        """
        A look from :meth:`to_kwargs`'s arguments; ``None`` when they do not hold one.

        :param video_task_id: the video task id the look was read for.
        :param kwargs: the trigger's ``first_answer`` argument.
        """
        if not isinstance(kwargs, dict):
            return None
        status, read_at = kwargs.get("status"), kwargs.get("read_at")
        if not isinstance(status, str) or not status.strip() or isinstance(read_at, bool):
            return None
        if not isinstance(read_at, int | float) or not math.isfinite(read_at):
            return None
        task = VideoTask.from_data(
            {"status": status, "progress": kwargs.get("progress"), "created_at": kwargs.get("created_at")},
            video_task_id=video_task_id,
        )
        return cls(task, float(read_at))


class VideoWait:
    """
    One wait for one video: when to query, and what each answer means. No I/O and no clock of its own.

    Shared by every wait (the trigger, the create operator's wait in the worker, the sensor's
    poke), which only query, call :meth:`step` and sleep. The deadline rule lives here: no wait
    ever sleeps past the deadline, and the answer to the query made at the deadline is the last
    one, so a video done just before the deadline is handed on.

    :param video_task_id: the API's video task id.
    :param schedule: the polling schedule.
    :param deadline: Unix time at which the wait gives up (after one last query).
    """

    def __init__(self, video_task_id: str, schedule: PollSchedule, deadline: float) -> None:
        self.video_task_id = video_task_id
        self.schedule = schedule
        self.deadline = deadline

    def first_delay(self, now: float) -> float:
        """
        Seconds before the first query (never past the deadline).

        :param now: the current Unix time.
        """
        return max(0.0, min(self.schedule.first_delay(), self.deadline - now))

    def step(self, task: VideoTask, now: float) -> PollStep:
        """
        Read one answer: done, failed, timed out, or how long to wait before the next query.

        What the status means is the model's (:attr:`VideoTask.succeeded`, :attr:`VideoTask.failed`),
        statuses the API does not document included: one that says the task ended (``cancelled``,
        ``expired``...) fails the wait at once, naming it; one that says it is done (``succeeded``)
        hands the video on once there is a ``result.video_url``; any other is waited on, logged in
        the message, until the deadline.

        :param task: the answer to the query just made.
        :param now: Unix time of the answer.
        """
        name = f"Grok video task {self.video_task_id}"
        undocumented = f"status {task.status!r}, which the API does not document"
        if task.succeeded:
            return PollStep(
                "success", task, f"{name} completed" + ("" if task.known_status else f" ({undocumented})")
            )
        if task.failed:
            return PollStep(
                "failed", task, f"{name} failed" + ("" if task.known_status else f": {undocumented}")
            )
        if now >= self.deadline:
            return PollStep("timeout", task, f"{name} did not finish in time (last seen: {task.describe()})")
        delay = min(self.schedule.next_delay(task, now), self.deadline - now)
        return PollStep("waiting", task, f"{name}: {task.describe()}; next query in {delay:.1f}s", delay)
