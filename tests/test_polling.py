"""The adaptive polling schedule, fed answers shaped like the API's."""

from __future__ import annotations

import json
import random
import statistics

import pytest

from airflow_grok_video.emulator.progress import ProgressModel
from airflow_grok_video.emulator.tasks import EmulatedVideo
from airflow_grok_video.polling import (
    DEFAULT_MAX_POLL_INTERVAL,
    END_MARGIN,
    QUEUED_AGE,
    QUEUED_FLOORS,
    Look,
    PollSchedule,
    VideoWait,
)
from airflow_grok_video.video_task import VideoTask

CREATED = 1_000_000


def answer(status: str, progress: int | None, created_at: int | None = CREATED) -> VideoTask:
    return VideoTask("video_1", status, progress=progress, created_at=created_at)


def test_fixed_interval_without_a_ceiling_above_the_floor() -> None:
    for ceiling in (None, 15.0, 5.0):
        schedule = PollSchedule(15.0, ceiling)
        assert not schedule.adaptive
        assert schedule.next_delay(answer("processing", 40), CREATED + 30) == 15.0


@pytest.mark.parametrize(("ceiling", "earliest"), [(100.0, 5.0), (None, 0.0)])
def test_first_query_is_jittered_within_the_floor(ceiling: float | None, earliest: float) -> None:
    delays = [PollSchedule(10.0, ceiling).first_delay() for _ in range(300)]
    assert all(earliest <= d <= 10.0 for d in delays)
    assert min(delays) < earliest + 1.0 and max(delays) > 9.0  # spread over the whole range


def test_nothing_known_yet_waits_past_half_the_ceiling_then_as_long_again() -> None:
    schedule = PollSchedule(15.0, 120.0)
    # created_at names a whole second: the video is taken to be born in its middle. A queued answer
    # says nothing of the end: the next query comes once the video has existed QUEUED_AGE of the
    # ceiling (a reading then places the end of a 180 s video within one ceiling),
    assert QUEUED_AGE * 120 > 60
    assert schedule.next_delay(answer("queued", 0), CREATED + 12) == pytest.approx(QUEUED_AGE * 120 - 11.5)
    assert schedule.next_delay(answer("queued", 0), CREATED + 100) == 99.5  # then as long again,
    assert schedule.next_delay(answer("queued", 0), CREATED + 500) == 120.0  # never above the ceiling
    # or QUEUED_FLOORS floors, if sooner: a wait polling every 5 s is not for a video of minutes,
    assert PollSchedule(5.0, 120.0).next_delay(answer("queued", 0), CREATED + 12) == pytest.approx(
        QUEUED_FLOORS * 5 - 11.5
    )
    assert PollSchedule(5.0, 8.0).next_delay(answer("queued", 0), CREATED + 2) == 5.0  # nor below the floor


def test_one_reading_goes_half_way_to_the_estimated_end() -> None:
    schedule = PollSchedule(5.0, 300.0)
    # 19.5 s after the create, 19% (rounded down: the latest end it can mean is 102.6 s after it).
    delay = schedule.next_delay(answer("processing", 19), CREATED + 20)
    assert delay == pytest.approx(0.5 * (0.5 + 19.5 * 100 / 19 - 20))


def test_a_reading_right_after_the_create_is_queried_no_later_than_its_earliest_end() -> None:
    # 1.5 s is too short to extrapolate from whole-second timestamps; but 20% after at most 2 s says
    # the video may be done 2 * 100 / 21 s after the create: the next query goes no later.
    assert PollSchedule(5.0, 120.0).next_delay(answer("processing", 20), CREATED + 2) == pytest.approx(
        2 * 100 / 21 - 2
    )
    # 2% after as long: the end it allows is further than nothing known would wait (5 floors).
    assert PollSchedule(5.0, 120.0).next_delay(answer("processing", 2), CREATED + 2) == pytest.approx(
        QUEUED_FLOORS * 5 - 1.5
    )


def test_two_readings_aim_just_after_the_end() -> None:
    schedule = PollSchedule(5.0, 300.0)
    schedule.next_delay(answer("processing", 10), CREATED + 10)
    delay = schedule.next_delay(answer("processing", 61), CREATED + 60)
    rate = (61 - 10 - 1) / 50  # conservative: one percent less than measured
    assert delay == pytest.approx((100 - 61) / rate + END_MARGIN)


def test_a_rate_measured_over_a_short_stretch_is_refined_first() -> None:
    schedule = PollSchedule(5.0, 300.0)
    schedule.next_delay(answer("processing", 10), CREATED + 10)
    delay = schedule.next_delay(answer("processing", 14), CREATED + 15)
    end_in = (100 - 14) * 5 / 3  # 143 s away, and 4% in 5 s may be off by a third of that
    assert delay == pytest.approx(0.5 * end_in)


def test_a_single_low_reading_is_not_extrapolated_far() -> None:
    # 1% seen 5.5 s in: the estimate (550 s) rests on too little; go at most 8x what was seen,
    assert PollSchedule(5.0, 300.0).next_delay(answer("processing", 1), CREATED + 6) == pytest.approx(8 * 5.5)
    # or as far as nothing known would (until the video has existed QUEUED_AGE of the ceiling).
    assert PollSchedule(60.0, 300.0).next_delay(answer("processing", 1), CREATED + 6) == pytest.approx(
        QUEUED_AGE * 300 - 5.5
    )


def test_a_reading_after_the_queue_is_aimed_at_as_counted_from_the_create() -> None:
    schedule = PollSchedule(30.0, 300.0)
    schedule.next_delay(answer("queued", 0), CREATED + 20)
    # 30% at 50 s: counted from the create (the latest end it can mean), the end is within 166.7 s
    # of it, and no more than a few seconds earlier: aimed at once, as the wait already spent a query.
    delay = schedule.next_delay(answer("processing", 30), CREATED + 50)
    assert delay == pytest.approx(50 * 100 / 30 - 50 + END_MARGIN)


def test_after_the_queue_two_readings_fitting_the_create_pin_the_end() -> None:
    schedule = PollSchedule(5.0, 300.0)
    schedule.next_delay(answer("queued", 0), CREATED + 20)
    schedule.next_delay(answer("processing", 12), CREATED + 24)  # 178-200 s: too wide to aim at
    delay = schedule.next_delay(answer("processing", 30), CREATED + 60)
    # The rate alone (17% in 36 s) puts the end 148 s away; both readings also fit progress counted
    # from the create, which pins it 140 s away: half-way there, as it may still be 9 s off.
    assert delay == pytest.approx(0.5 * (60 * 100 / 30 - 60))


def test_an_end_beyond_the_ceiling_is_reached_in_equal_waits() -> None:
    schedule = PollSchedule(5.0, 60.0)
    schedule.next_delay(answer("processing", 10), CREATED + 10)
    end_in = (100 - 30) * 20 / 19 + END_MARGIN  # 74 s away: two waits of 37 s, not 60 s then a floor
    assert schedule.next_delay(answer("processing", 30), CREATED + 30) == pytest.approx(end_in / 2)


def test_done_without_a_url_asks_again_at_the_floor() -> None:
    assert PollSchedule(5.0, 120.0).next_delay(answer("completed", 100), CREATED + 90) == 5.0


def test_created_at_from_a_skewed_clock_is_not_trusted() -> None:
    schedule = PollSchedule(5.0, 120.0, started=CREATED + 100)
    future = answer("queued", 0, created_at=CREATED + 3600)
    # Measured from when the wait began, 10 s before.
    assert schedule.next_delay(future, CREATED + 110) == pytest.approx(QUEUED_FLOORS * 5 - 10)


def test_progress_going_backwards_starts_the_estimate_again() -> None:
    schedule = PollSchedule(5.0, 300.0)
    schedule.next_delay(answer("processing", 50), CREATED + 50)
    again = schedule.next_delay(answer("processing", 5), CREATED + 60)
    assert again == PollSchedule(5.0, 300.0).next_delay(answer("processing", 5), CREATED + 60)


@pytest.mark.parametrize(
    ("floor", "ceiling", "message"),
    [
        (0, 10, r"poll interval \(the floor\) must be > 0 seconds, got 0"),
        (-1, 10, r"poll interval \(the floor\) must be > 0 seconds, got -1"),
        (5, 0, r"max poll interval \(the ceiling\) must be > 0 seconds, got 0"),
    ],
)
def test_bad_intervals_are_refused_with_the_value(floor: float, ceiling: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PollSchedule(floor, ceiling)


def wait_for(generation: float, queue: float, rng: random.Random) -> tuple[int, float]:
    """Poll a task that progresses linearly, as documented; return (queries, detection lag)."""
    created = CREATED + rng.random()
    end = created + queue + generation
    schedule = PollSchedule(15.0, DEFAULT_MAX_POLL_INTERVAL, started=created)
    now = created + rng.uniform(0.2, 2.0) + schedule.first_delay()
    queries = 0
    while True:
        queries += 1
        if now >= end:
            return queries, now - end
        if now - created < queue:
            task = answer("queued", 0, int(created))
        else:
            progress = min(99, max(1, int((now - created - queue) / generation * 100)))
            task = answer("processing", progress, int(created))
        now += schedule.next_delay(task, now)


@pytest.mark.parametrize("generation", [60, 90, 120, 180])
def test_defaults_need_three_queries_and_notice_the_end_within_seconds(generation: float) -> None:
    rng = random.Random(generation)
    runs = [wait_for(generation, queue=1.0, rng=rng) for _ in range(200)]
    assert max(queries for queries, _ in runs) <= 3  # + the create: 4 requests per video
    assert statistics.mean(lag for _, lag in runs) <= 5.0


def test_a_wait_never_sleeps_past_its_deadline_and_looks_once_more_there() -> None:
    wait = VideoWait("video_1", PollSchedule(30.0, 120.0, started=CREATED), deadline=CREATED + 40)
    assert 0 <= wait.first_delay(CREATED + 30) <= 10  # 15-30 s, clamped to the 10 s left
    step = wait.step(answer("processing", 10), CREATED + 35)
    assert (step.status, step.delay) == ("waiting", 5)  # the last query is made at the deadline
    assert step.message == "Grok video task video_1: processing 10%; next query in 5.0s"
    last = wait.step(answer("processing", 90), CREATED + 40)
    assert last.status == "timeout"
    assert last.message == "Grok video task video_1 did not finish in time (last seen: processing 90%)"
    assert wait.first_delay(CREATED + 50) == 0  # started after its deadline: one query at once


def test_a_wait_reads_the_end_before_the_deadline() -> None:
    wait = VideoWait("video_1", PollSchedule(5.0), deadline=CREATED)
    done = VideoTask("video_1", "completed", progress=100, video_url="https://v/1.mp4")
    assert wait.step(done, CREATED + 99).status == "success"  # found at the last look: not a timeout
    failed = wait.step(VideoTask("video_1", "failed", error_message="load"), CREATED + 99)
    assert (failed.status, failed.task.error_message) == ("failed", "load")
    # Done without a URL is still waiting (until the deadline).
    assert VideoWait("v", PollSchedule(5.0), CREATED + 60).step(answer("completed", 100), CREATED).status == (
        "waiting"
    )


def test_the_step_reads_statuses_the_api_does_not_document() -> None:
    wait = VideoWait("video_1", PollSchedule(5.0, 120.0, started=CREATED), deadline=CREATED + 600)

    def read(**data: object) -> VideoTask:
        return VideoTask.from_data({"created_at": CREATED, **data}, video_task_id="video_1")

    # Saying the task ended: the wait fails at once, naming the status (in the message and the error).
    ended = wait.step(read(status="cancelled"), CREATED + 30)
    assert ended.status == "failed"
    assert (
        ended.message == "Grok video task video_1 failed: status 'cancelled', which the API does not document"
    )
    assert ended.task.error_message is not None and "'cancelled'" in ended.task.error_message
    url = {"video_url": "https://v/1.mp4"}
    assert wait.step(read(status="expired", result=url), CREATED + 30).status == "failed"  # even with a URL
    # Saying it is done: with a URL the video is handed on; without one, the URL should follow at once.
    done = wait.step(read(status="succeeded", progress=100, result=url), CREATED + 30)
    assert (done.status, done.task.video_url) == ("success", "https://v/1.mp4")
    assert (
        done.message
        == "Grok video task video_1 completed (status 'succeeded', which the API does not document)"
    )
    no_url = wait.step(read(status="succeeded", progress=100), CREATED + 30)
    assert (no_url.status, no_url.delay) == ("waiting", 5.0)  # the floor, as for "completed" without a URL
    assert no_url.message == (
        "Grok video task video_1: succeeded 100% (undocumented status; done, no result.video_url yet); "
        "next query in 5.0s"
    )
    # Anything else is still running, logged as such; every wait that goes on ends at the deadline.
    running = wait.step(read(status="rendering", progress=40), CREATED + 30)
    assert (
        running.status == "waiting"
        and "rendering 40% (undocumented status; still waiting)" in running.message
    )
    for status in ("succeeded", "rendering"):
        assert wait.step(read(status=status), CREATED + 600).status == "timeout"


def test_a_queued_look_is_followed_by_a_reading_that_places_the_end() -> None:
    # The issue's model: a 180 s video, queued for its first 20 %, progress counted from the create.
    # A look 3 s after the create finds it queued; the next query comes once the video has existed
    # past half the ceiling, when it shows progress, and that one reading aims the next at the end.
    schedule = PollSchedule(30.0, 120.0)
    first = schedule.next_delay(answer("queued", 0), CREATED + 3)
    assert first == pytest.approx(QUEUED_AGE * 120 - 2.5)
    at = CREATED + 3 + first
    reading = int((at - CREATED - 0.5) / 180 * 100)
    assert reading >= 35  # past the queue (36 s)
    aimed = schedule.next_delay(answer("processing", reading), at)
    assert at + aimed >= CREATED + 0.5 + 180  # at or after the end, in one wait
    assert at + aimed - (CREATED + 0.5 + 180) < 5


def test_an_end_just_past_the_ceiling_is_looked_for_at_the_ceiling() -> None:
    schedule = PollSchedule(5.0, 120.0)
    schedule.next_delay(answer("processing", 3), CREATED + 7)
    # 31% more in 57 s: the end is 122-126 s away (a percent either way), the earliest within a
    # ceiling: one query there, not two equal waits.
    assert schedule.next_delay(answer("processing", 34), CREATED + 64) == 120.0


def test_a_look_travels_as_serializable_trigger_arguments() -> None:
    task = VideoTask.from_data(
        {"status": "Processing", "progress": 40, "created_at": CREATED, "error_message": "x"},
        video_task_id="video_1",
    )
    kwargs = Look(task, CREATED + 30.25).to_kwargs()
    assert kwargs == {
        "status": "processing",
        "progress": 40,
        "created_at": CREATED,
        "read_at": CREATED + 30.25,
    }
    look = Look.from_kwargs("video_1", json.loads(json.dumps(kwargs)))
    assert look == Look(VideoTask("video_1", "processing", progress=40, created_at=CREATED), CREATED + 30.25)
    for junk in (
        None,
        "x",
        {},
        {"status": "queued"},
        {"status": 1, "read_at": 1.0},
        {"status": "q", "read_at": True},
        {"status": " ", "read_at": 1.0},
        {"status": "q", "read_at": float("nan")},
    ):
        assert Look.from_kwargs("video_1", junk) is None


def simulate(
    path: str, model: ProgressModel, generation: float, floor: float, rng: random.Random
) -> tuple[int, float]:
    """
    One wait on the emulator's own video model, in simulated time, as each path takes it.

    ``worker``: a sensor's look 1-8 s after the create, handed to its trigger (started 0.5-3 s
    later) as its first query;
    ``triggerer``: a trigger started 1-8 s after the create; ``operator``: 0.5-3 s after it.
    Returns the requests (the create included) and the detection lag.
    """
    created = CREATED + rng.random()
    video = EmulatedVideo(
        "video_1", "grok-imagine-video-1.5", "p", "https://example.com/a.png", 10, "16:9",
        created=created, queue_seconds=1.0, generation_seconds=generation, progress_model=model,
    )  # fmt: skip
    now = created + (rng.uniform(0.5, 3.0) if path == "operator" else rng.uniform(1.0, 8.0))
    wait = VideoWait("video_1", PollSchedule(floor, DEFAULT_MAX_POLL_INTERVAL, started=now), now + 3600)
    look = (
        Look(VideoTask.from_data(video.view("", now), video_task_id="video_1"), now)
        if path == "worker"
        else None
    )
    queries = 0 if look is None else 1
    now += wait.first_delay(now) if look is None else rng.uniform(0.5, 3.0)  # the trigger's start
    while True:
        if look is None:
            queries += 1
            task, read_at = VideoTask.from_data(video.view("", now), video_task_id="video_1"), now
        else:
            task, read_at, look = look.task, look.read_at, None
        step = wait.step(task, read_at)
        if step.status == "success":
            return 1 + queries, read_at - video.done_at
        now = max(now, read_at + step.delay)


@pytest.mark.parametrize("path", ["worker", "triggerer", "operator"])
@pytest.mark.parametrize("floor", [30.0, 15.0])
def test_every_path_needs_at_most_four_requests_for_the_issues_model(path: str, floor: float) -> None:
    # Issue 25's target, for every linear model one reading places (the default's 1 s queue, no
    # queue, and a queue of 10-30 % with progress counted from the create): the look before
    # deferring is the wait's first query, so a sensor started in a worker pays nothing for it; and
    # a look that reads 1 % a second after the create does not bring the next query so early that
    # the end of a 180 s video is then more than a ceiling away (a query more).
    models = [ProgressModel(), ProgressModel(queue=0.0)] + [
        ProgressModel(queue=queue, origin="created") for queue in (0.1, 0.2, 0.3)
    ]
    for model in models:
        for generation in (90.0, 120.0, 180.0):
            random.seed(f"{model}/{generation}")
            rng = random.Random(f"{model}/{generation}")
            runs = [simulate(path, model, generation, floor, rng) for _ in range(200)]
            assert statistics.mean(r for r, _ in runs) <= 4.0, (str(model), generation, runs)
            assert statistics.mean(lag for _, lag in runs) <= 5.0, (str(model), generation, runs)


@pytest.mark.parametrize("path", ["worker", "triggerer", "operator"])
def test_a_video_that_shows_no_progress_is_noticed_within_the_ceiling(path: str) -> None:
    rng = random.Random(path)
    for queue in (0.0, 0.3):
        for generation in (30.0, 90.0, 180.0, 400.0):
            model = ProgressModel(queue=queue, shape="none")
            lags = [simulate(path, model, generation, 15.0, rng)[1] for _ in range(20)]
            assert max(lags) <= DEFAULT_MAX_POLL_INTERVAL
