"""The trigger run directly in asyncio against the emulator."""

from __future__ import annotations

import asyncio
import json
import time
import types
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import pytest
from airflow.triggers.base import TriggerEvent

from airflow_grok_video.emulator import Fault, GrokVideoEmulator, Rule
from airflow_grok_video.hooks.grok_video import GrokVideoHook
from airflow_grok_video.polling import END_MARGIN, FINAL_SPREAD, Look
from airflow_grok_video.triggers.grok_video import GrokVideoTrigger
from tests.conftest import API_KEY, conn_json

PARAMS: dict[str, Any] = {"prompt": "a fox in the snow", "image_url": "https://example.com/fox.png"}


def create(prompt: str = PARAMS["prompt"]) -> str:
    return str(GrokVideoHook().create_video(**{**PARAMS, "prompt": prompt})["task_id"])


async def run_trigger(trigger: GrokVideoTrigger) -> list[dict[str, Any]]:
    return [event.payload async for event in trigger.run()]


def trigger_for(task_id: str, *, timeout: float = 20.0, poll: float = 0.1) -> GrokVideoTrigger:
    return GrokVideoTrigger(task_id, "grok_video_default", poll_interval=poll, end_time=time.time() + timeout)


def test_serializes_ids_and_times_only() -> None:
    trigger = GrokVideoTrigger(
        "video_1", "my_conn", poll_interval=7.5, end_time=1_800_000_000.0, max_poll_interval=90.0
    )
    path, kwargs = trigger.serialize()
    assert path == "airflow_grok_video.triggers.grok_video.GrokVideoTrigger"
    assert kwargs == {
        "video_task_id": "video_1",
        "grok_conn_id": "my_conn",
        "poll_interval": 7.5,
        "end_time": 1_800_000_000.0,
        "max_poll_interval": 90.0,
        "success_xcoms": None,
        "first_answer": None,
    }
    assert GrokVideoTrigger(**kwargs).serialize() == (path, kwargs)


def test_a_trigger_serialized_before_adaptive_polling_still_loads() -> None:
    old_kwargs: dict[str, Any] = {
        "video_task_id": "v",
        "grok_conn_id": "c",
        "poll_interval": 5.0,
        "end_time": 1.0,
    }
    assert GrokVideoTrigger(**old_kwargs).max_poll_interval is None  # fixed interval, as it was


async def test_adaptive_polling_follows_progress(emulator: GrokVideoEmulator) -> None:
    emulator.add_rule(Rule(prompt_contains="measured", generation_seconds=8))
    created = time.time()
    task_id = create("a measured fox")
    trigger = GrokVideoTrigger(
        task_id, "grok_video_default", poll_interval=0.5, end_time=time.time() + 60, max_poll_interval=20
    )
    [event] = await run_trigger(trigger)
    detected = time.time()
    assert event["status"] == "success"
    # Every 0.5 s would have taken about 17 queries; progress lets it skip nearly all of them,
    assert emulator.count("GET") <= 5
    # and it still noticed the end soon after: its last query aims at an end known within
    # FINAL_SPREAD seconds (on this short scale the rounding of progress is most of that).
    assert detected - (created + 0.2 + 8) < FINAL_SPREAD + END_MARGIN + 0.5


class LogLines:
    """Stands in for a trigger's logger: keeps each line it would log, formatted."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str, *args: Any) -> None:
        self.lines.append(msg % args)

    warning = error = debug = info


async def test_the_look_before_deferring_is_the_first_query(emulator: GrokVideoEmulator) -> None:
    # A sensor looked once before deferring and found the video queued: the trigger takes that
    # answer as its first query's and goes on from it, querying no sooner than the schedule says
    # (after a queued answer: until the video has existed 5 floors, here 5 s),
    # so with its deadline 1.5 s away it makes one query, there, and times out.
    emulator.add_rule(Rule(prompt_contains="slow", generation_seconds=600))
    task_id = create("a slow fox")
    look = Look(GrokVideoHook().get_video_task(task_id), time.time())
    assert look.task.status in ("queued", "processing") and not look.task.progress
    trigger = GrokVideoTrigger(
        task_id,
        "grok_video_default",
        poll_interval=1.0,
        end_time=look.read_at + 1.5,
        max_poll_interval=10.0,
        first_answer=look.to_kwargs(),
    )
    _, kwargs = trigger.serialize()
    assert kwargs["first_answer"] == json.loads(json.dumps(look.to_kwargs()))  # as the triggerer stores it
    [event] = await run_trigger(GrokVideoTrigger(**kwargs))
    assert event["status"] == "timeout"
    queries = [r for r in emulator.requests if r.method == "GET"]
    assert len(queries) == 2  # the look, then the one at the deadline
    assert queries[1].time >= look.read_at + 1.4


async def test_without_a_look_the_trigger_starts_from_nothing(emulator: GrokVideoEmulator) -> None:
    emulator.add_rule(Rule(prompt_contains="slow", generation_seconds=600))
    task_id = create("a slow fox")
    started = time.time()
    trigger = GrokVideoTrigger(
        task_id, "grok_video_default", poll_interval=0.2, end_time=started + 1.5, max_poll_interval=10.0
    )
    [event] = await run_trigger(trigger)
    assert event["status"] == "timeout"
    [first, *_] = [r for r in emulator.requests if r.method == "GET"]
    assert first.time - started < 0.5  # within the floor, jittered


@pytest.mark.parametrize(
    ("look", "status"),
    [({"status": "failed", "read_at": 1.0}, "failed"), ({"status": "processing", "read_at": 1.0}, "timeout")],
)
async def test_a_look_is_read_by_the_same_step_as_every_query(
    emulator: GrokVideoEmulator, look: dict[str, Any], status: str
) -> None:
    # A look that says the task ended (the sensor would have failed already) ends the wait as a query
    # would; one read after the deadline times out: neither queries again.
    task_id = create()
    trigger = GrokVideoTrigger(
        task_id, "grok_video_default", poll_interval=1, end_time=0.5, first_answer=look
    )
    [event] = await run_trigger(trigger)
    assert event["status"] == status
    assert emulator.count("GET") == 0


async def test_waits_resumed_late_spread_their_first_queries(emulator: GrokVideoEmulator) -> None:
    # A triggerer taking over waits whose looks were read long ago: every next query is overdue, and
    # they go out jittered within the floor, as from nothing, not all in the same instant.
    emulator.add_rule(Rule(prompt_contains="slow", generation_seconds=600))
    task_ids = [create("a slow fox") for _ in range(8)]
    look = {
        "status": "processing",
        "progress": 1,
        "created_at": int(time.time()) - 600,
        "read_at": time.time() - 300,
    }
    started = time.time()
    triggers = [
        GrokVideoTrigger(
            t, "grok_video_default", poll_interval=1.0, end_time=started + 1.5, max_poll_interval=120.0,
            first_answer=look,
        )
        for t in task_ids
    ]  # fmt: skip
    events = await asyncio.gather(*(run_trigger(trigger) for trigger in triggers))
    assert [e["status"] for [e] in events] == ["timeout"] * 8
    firsts = [
        min(r.time for r in emulator.requests if r.method == "GET" and r.path.endswith(t)) for t in task_ids
    ]
    assert all(first - started >= 0.45 for first in firsts)  # half the floor at least


def test_a_deferring_sensor_hands_its_look_to_the_trigger(emulator: GrokVideoEmulator) -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    from airflow_grok_video.sensors.grok_video import GrokVideoSensor

    emulator.add_rule(Rule(prompt_contains="slow", generation_seconds=600))
    task_id = create("a slow fox")
    sensor = GrokVideoSensor(
        task_id="wait", video_task_id=task_id, deferrable=True, start_in_triggerer=False, poke_interval=30
    )
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})  # type: ignore[arg-type]
    assert emulator.count("GET") == 1  # the look
    _, kwargs = deferred.value.trigger.serialize()
    answer = kwargs["first_answer"]
    assert set(answer) == {"status", "progress", "created_at", "read_at"}  # nothing else: no URL, no key
    assert answer["status"] in ("queued", "processing") and not answer["progress"]
    assert before <= answer["read_at"] <= time.time()
    assert answer["created_at"] == int(emulator.tasks[task_id].created)
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert API_KEY not in json.dumps(kwargs)


async def test_progress_is_logged_when_the_reading_changes_not_on_every_poll(
    emulator: GrokVideoEmulator,
) -> None:
    emulator.add_rule(Rule(prompt_contains="slow", generation_seconds=600))
    task_id = create("a slow fox")
    trigger = trigger_for(task_id, timeout=1.2, poll=0.05)
    trigger._log = log = LogLines()  # type: ignore[assignment]
    [event] = await run_trigger(trigger)
    assert event["status"] == "timeout"
    polls = emulator.count("GET")
    assert polls >= 10
    readings = [line for line in log.lines if line.startswith(f"Grok video task {task_id}:")]
    # queued for 0.2 s, then processing 1% (2% comes after 12 s): two readings, one line each
    assert [line.split(": ")[1].split(";")[0] for line in readings] == ["queued 0%", "processing 1%"]


async def test_waits_on_one_connection_share_one_http_session(
    emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_GROK_VIDEO_OTHER", conn_json(emulator.base_url))
    first, second, other = GrokVideoHook(), GrokVideoHook(), GrokVideoHook("grok_video_other")
    task_id = create()
    for hook in (first, second, other):
        await hook.aget_video_task(task_id)
    assert first._async and second._async and other._async
    shared = first._async.session
    assert second._async.session is shared
    assert other._async.session is not shared
    await first.aclose()
    assert not shared.closed  # the second hook still uses it
    await second.aclose()
    assert shared.closed
    await other.aclose()
    assert emulator.count("GET") == 3


async def test_waits_starting_together_look_their_connection_up_once(
    emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A triggerer that takes up many waits at once: one trip through the secrets backends for them
    # all (each is a call in a thread, contending with the event loop), not one per wait.
    from airflow.providers.common.compat import connection

    looked_up: list[str] = []
    real = connection.get_async_connection

    async def counted(conn_id: str, hook: Any = None) -> Any:
        looked_up.append(conn_id)
        return await real(conn_id, hook=hook)

    monkeypatch.setattr(connection, "get_async_connection", counted)
    monkeypatch.setenv("AIRFLOW_CONN_GROK_VIDEO_OTHER", conn_json(emulator.base_url))
    task_id = create()
    hooks = [GrokVideoHook() for _ in range(20)] + [GrokVideoHook("grok_video_other")]
    answers = await asyncio.gather(*(hook.aget_video_task(task_id) for hook in hooks))
    assert {answer.task_id for answer in answers} == {task_id}
    assert sorted(looked_up) == ["grok_video_default", "grok_video_other"]
    await asyncio.gather(*(hook.aclose() for hook in hooks))


async def test_a_failed_lookup_is_not_shared_with_later_waits(
    emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.common.compat import connection

    real = connection.get_async_connection
    failures = [RuntimeError("secrets backend down")]

    async def flaky(conn_id: str, hook: Any = None) -> Any:
        if failures:
            raise failures.pop()
        return await real(conn_id, hook=hook)

    monkeypatch.setattr(connection, "get_async_connection", flaky)
    task_id = create()
    results = await asyncio.gather(
        *(GrokVideoHook().aget_video_task(task_id) for _ in range(3)), return_exceptions=True
    )
    assert [type(r) for r in results] == [RuntimeError] * 3  # the lookup they shared
    hook = GrokVideoHook()
    assert (await hook.aget_video_task(task_id)).task_id == task_id  # a new lookup
    await hook.aclose()


async def test_success_event_carries_the_url(emulator: GrokVideoEmulator) -> None:
    from tests.test_outcome import url_expires_at

    task_id = create()
    events = await run_trigger(trigger_for(task_id))
    assert events == [
        {
            "status": "success",
            "message": f"Grok video task {task_id} completed",
            "video_task_id": task_id,
            "video_url": f"{emulator.base_url}/videos/{task_id}.mp4",
            "url_expires_at": url_expires_at(emulator, task_id),
        }
    ]


async def test_success_spelling_also_ends_the_wait(emulator: GrokVideoEmulator) -> None:
    emulator.add_rule(Rule(prompt_contains="faq", status_spelling="success"))
    task_id = create("faq fox")
    [event] = await run_trigger(trigger_for(task_id))
    assert event["status"] == "success"
    assert event["video_url"].endswith(f"/videos/{task_id}.mp4")


async def test_failed_event_carries_error_message(emulator: GrokVideoEmulator) -> None:
    emulator.add_rule(Rule(prompt_contains="doomed", outcome="failed", error_message="insufficient balance"))
    task_id = create("a doomed fox")
    [event] = await run_trigger(trigger_for(task_id))
    assert event["status"] == "failed"
    assert event["error_message"] == "insufficient balance"


async def test_timeout_event_at_end_time(emulator: GrokVideoEmulator) -> None:
    emulator.add_rule(Rule(prompt_contains="slow", generation_seconds=600))
    task_id = create("a slow fox")
    started = time.monotonic()
    [event] = await run_trigger(trigger_for(task_id, timeout=1.0, poll=0.3))
    assert event["status"] == "timeout"
    assert 0.9 <= time.monotonic() - started < 2.0


async def test_a_video_done_just_before_the_deadline_is_not_lost(emulator: GrokVideoEmulator) -> None:
    # Polling every 10 s with a 2 s timeout: the query after the first one would fall after
    # end_time, so the trigger must make its last query at end_time, when the video is done.
    emulator.add_rule(Rule(prompt_contains="late", generation_seconds=1.5))
    task_id = create("a late fox")
    trigger = GrokVideoTrigger(task_id, "grok_video_default", poll_interval=10, end_time=time.time() + 2)
    [event] = await run_trigger(trigger)
    assert event["status"] == "success"


@pytest.mark.parametrize(("seconds", "status"), [(0.2, "success"), (600, "timeout")])
async def test_a_trigger_started_after_its_end_time_looks_once(
    emulator: GrokVideoEmulator, seconds: float, status: str
) -> None:
    # A triggerer that was down past end_time: one query decides between the video and a timeout.
    emulator.add_rule(Rule(prompt_contains="fox", generation_seconds=seconds))
    task_id = create()
    time.sleep(0.5)
    trigger = GrokVideoTrigger(task_id, "grok_video_default", poll_interval=5, end_time=time.time() - 60)
    started = time.monotonic()
    [event] = await run_trigger(trigger)
    assert event["status"] == status
    assert emulator.count("GET") == 1
    assert time.monotonic() - started < 1


async def test_transient_faults_do_not_end_the_wait(emulator: GrokVideoEmulator) -> None:
    task_id = create()
    emulator.inject(Fault("status", status=503, times=2, method="GET"))
    emulator.inject(Fault("html", method="GET"))
    emulator.inject(Fault("status", status=429, retry_after=1, method="GET"))
    [event] = await run_trigger(trigger_for(task_id))
    assert event["status"] == "success"


@pytest.mark.parametrize(
    ("key", "task_id", "status", "code"),
    [("sk_wrong", None, 401, "40100"), (API_KEY, "video_lost", 404, "40400")],
)
async def test_error_event_names_status_code_and_msg(
    monkeypatch: pytest.MonkeyPatch,
    key: str,
    task_id: str | None,
    status: int,
    code: str,
) -> None:
    emulator_keys = GrokVideoEmulator(api_keys=[API_KEY])
    with emulator_keys:
        monkeypatch.setenv("AIRFLOW_CONN_GROK_VIDEO_DEFAULT", conn_json(emulator_keys.base_url, key))
        [event] = await run_trigger(trigger_for(task_id or "video_x"))
        assert emulator_keys.count() == 1
    assert event["status"] == "error"
    assert (event["http_status"], event["code"]) == (status, code)
    assert f"HTTP {status}" in event["message"]
    assert key not in str(event)


T = TypeVar("T")


async def with_loop_lag(work: Awaitable[T]) -> tuple[T, float]:
    """Await ``work`` while measuring the event loop's worst lag: how far a 10 ms sleep overran."""
    worst = 0.0

    async def ticker() -> None:
        nonlocal worst
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.01)
            worst = max(worst, time.monotonic() - before - 0.01)

    tick = asyncio.create_task(ticker())
    try:
        return await work, worst
    finally:
        tick.cancel()


async def collect(events: AsyncIterator[T]) -> list[T]:
    return [event async for event in events]


async def test_polling_never_blocks_the_event_loop(emulator: GrokVideoEmulator) -> None:
    emulator.add_rule(Rule(prompt_contains="fox", generation_seconds=2))
    emulator.inject(Fault("slow", delay=1.0, method="GET", times=3))
    task_ids = [create() for _ in range(5)]
    results, worst_lag = await with_loop_lag(asyncio.gather(*(run_trigger(trigger_for(t)) for t in task_ids)))
    assert [r[0]["status"] for r in results] == ["success"] * 5
    # A blocking query would hold the loop for the whole 1 s answer; the margin is for a loaded machine.
    assert worst_lag < 0.5


@pytest.mark.parametrize(
    ("event", "shown"),
    [
        (None, "NoneType None"),
        ({"status": "done"}, "status='done'"),
        ({"message": "hi"}, "status=None"),
        ({"status": "success", "video_task_id": "v"}, "without a video_url"),
    ],
)
def test_an_event_the_trigger_never_sends_says_so(event: Any, shown: str) -> None:
    from airflow.providers.common.compat.sdk import AirflowException

    from airflow_grok_video.triggers.grok_video import video_url_from_event

    with pytest.raises(AirflowException) as info:
        video_url_from_event(event, timeout_error=TimeoutError)
    assert shown in str(info.value)
    assert type(info.value) is AirflowException  # not mistaken for an API error or a failed video


SUCCESS_XCOMS: dict[str, Any] = {
    "return_value": "video_url",
    "video_url": "video_url",
    "_link_GrokVideoLink": "video_url",
    "created": "video_task_id",
}


needs_async_xcom_push = pytest.mark.skipif(
    not hasattr(__import__("airflow.sdk.execution_time.xcom", fromlist=["XCom"]).XCom, "aset"),
    reason="this Airflow's XCom has no async push: the task resumes in a worker",
)


def ending_trigger(task_id: str) -> GrokVideoTrigger:
    return GrokVideoTrigger(
        task_id,
        "grok_video_default",
        poll_interval=0.1,
        end_time=time.time() + 20,
        success_xcoms=SUCCESS_XCOMS,
    )


class RecordingComms:
    """The triggerer's channel to its supervisor, reduced to recording the XComs a trigger pushes."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def asend(self, message: Any) -> None:
        if message.type == "SetXCom":
            self.sent.append(message)

    def send(self, message: Any) -> None:  # Airflow's secrets masker tells the supervisor of a secret
        pass


@pytest.fixture
def comms(monkeypatch: pytest.MonkeyPatch) -> RecordingComms:
    from airflow.sdk.execution_time import task_runner

    recording = RecordingComms()
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", recording, raising=False)
    return recording


def as_triggerer_runs_it(trigger: GrokVideoTrigger) -> GrokVideoTrigger:
    ti = types.SimpleNamespace(dag_id="d", run_id="r", task_id="wait", map_index=3)
    trigger.task_instance = ti  # type: ignore[assignment]
    return trigger


@needs_async_xcom_push
async def test_a_success_ends_the_task_in_the_triggerer(
    emulator: GrokVideoEmulator, comms: RecordingComms
) -> None:
    from airflow.triggers.base import TaskSuccessEvent

    task_id = create()
    trigger = as_triggerer_runs_it(ending_trigger(task_id))
    [event] = [event async for event in trigger.run()]
    assert isinstance(event, TaskSuccessEvent) and not event.xcoms
    url = f"{emulator.base_url}/videos/{task_id}.mp4"
    # and the video_outcome record (tests/test_outcome.py)
    assert [m.value["status"] for m in comms.sent if m.key == "video_outcome"] == ["success"]
    pushed = {
        (m.key, m.value, m.dag_id, m.run_id, m.task_id, m.map_index)
        for m in comms.sent
        if m.key != "video_outcome"
    }
    assert pushed == {
        (key, value, "d", "r", "wait", 3)
        for key, value in {
            "return_value": url,
            "video_url": url,
            "_link_GrokVideoLink": url,
            "created": task_id,
        }.items()
    }
    assert trigger.serialize()[1]["success_xcoms"] == SUCCESS_XCOMS  # ids and names only


async def test_any_other_outcome_still_resumes_the_task(
    emulator: GrokVideoEmulator, comms: RecordingComms
) -> None:
    emulator.add_rule(Rule(prompt_contains="doomed", outcome="failed", error_message="content policy"))
    [event] = [event async for event in as_triggerer_runs_it(ending_trigger(create("a doomed fox"))).run()]
    assert type(event) is TriggerEvent
    assert event.payload["status"] == "failed"
    assert comms.sent == []


async def test_without_a_task_instance_a_success_resumes_the_task(
    emulator: GrokVideoEmulator, comms: RecordingComms
) -> None:
    # dag.test() runs triggers inline, with no task instance, and resumes the task with the event.
    [event] = [event async for event in ending_trigger(create()).run()]
    assert type(event) is TriggerEvent
    assert event.payload["status"] == "success"
    assert comms.sent == []


# -- what the triggerer logs, and its event loop -------------------------------------------------------


async def test_the_triggerers_log_of_a_fallback_event_has_no_signed_query(
    emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Airflow's own trigger runner logs each event it fires: the URL's signature must not be in it."""
    import structlog
    from airflow.jobs.triggerer_job_runner import TriggerRunner

    from airflow_grok_video.triggers.grok_video import video_url_from_event

    monkeypatch.setenv("AIRFLOW_DISABLE_GREENBACK_PORTAL", "true")
    secret = "sig=SECRET_c0ffee&expires=1732400000"
    emulator.add_rule(Rule(prompt_contains="signed", url_query=secret))
    task_id = create("a signed fox")
    runner = TriggerRunner()
    runner.triggers = {1: {"name": "wait", "events": 0}}  # type: ignore[typeddict-item]
    with structlog.testing.capture_logs() as logs:
        await runner.run_trigger(1, trigger_for(task_id))
    fired = [entry for entry in logs if entry["event"] == "Trigger fired event"]
    assert len(fired) == 1
    rendered = [
        str(render(None, "info", dict(entry)))
        for render in (
            structlog.dev.ConsoleRenderer(colors=False),
            structlog.processors.JSONRenderer(default=repr),
        )
        for entry in logs
    ]
    assert f"/videos/{task_id}.mp4" in "\n".join(rendered)
    assert "SECRET_c0ffee" not in "\n".join(rendered)
    [entry] = runner.events
    event = entry[1] if isinstance(entry, tuple) else entry.event
    url = f"{emulator.base_url}/videos/{task_id}.mp4?{secret}"
    assert video_url_from_event(dict(event.payload), timeout_error=TimeoutError) == url  # the worker's


class _SlowXCom:
    """Stands in for a custom XCom backend whose serialization blocks (an upload, say).

    Each serialization waits until the event loop has run a callback it hands over: that can happen
    only if the loop keeps turning meanwhile, that is, if the serialization runs off it. On the loop,
    the wait times out instead (a check that load on the machine cannot fail, unlike a lag threshold).
    """

    threads: list[int] = []
    loop_turned: list[bool] = []
    loop: asyncio.AbstractEventLoop

    @classmethod
    def serialize_value(cls, value: Any, **where: Any) -> str:
        import json
        import threading

        cls.threads.append(threading.get_ident())
        turned = threading.Event()
        cls.loop.call_soon_threadsafe(turned.set)
        cls.loop_turned.append(turned.wait(timeout=3))
        return json.dumps({"stored": value, "key": where["key"]})


@needs_async_xcom_push
async def test_a_custom_xcom_backends_serialization_runs_off_the_event_loop(
    emulator: GrokVideoEmulator, comms: RecordingComms, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from airflow.sdk.bases.xcom import BaseXCom
    from airflow.sdk.execution_time import xcom

    fresh = {"threads": [], "loop_turned": [], "loop": asyncio.get_running_loop()}
    backend: Any = type("SlowXCom", (_SlowXCom, BaseXCom), fresh)
    monkeypatch.setattr(xcom, "XCom", backend)
    task_id = create()
    [event] = await collect(as_triggerer_runs_it(ending_trigger(task_id)).run())
    assert type(event).__name__ == "TaskSuccessEvent"
    url = f"{emulator.base_url}/videos/{task_id}.mp4"
    assert {m.key: m.value for m in comms.sent if m.key != "video_outcome"} == {
        key: f'{{"stored": "{task_id if source == "video_task_id" else url}", "key": "{key}"}}'
        for key, source in SUCCESS_XCOMS.items()
    }
    # and the video_outcome record (tests/test_outcome.py)
    assert len(backend.threads) == 5 and threading.get_ident() not in backend.threads
    assert backend.loop_turned == [True] * 5  # the loop kept turning while each one ran


async def test_a_video_the_api_does_not_know_fails_the_resumed_task_without_retries(
    emulator: GrokVideoEmulator,
) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    from airflow_grok_video.exceptions import GrokVideoNotFoundError
    from airflow_grok_video.triggers.grok_video import video_url_from_event

    [event] = await run_trigger(trigger_for("video_lost"))
    with pytest.raises(GrokVideoNotFoundError) as raised:
        video_url_from_event(event, timeout_error=TimeoutError)
    assert isinstance(raised.value, AirflowFailException)
    assert (raised.value.http_status, raised.value.code) == (404, "40400")
