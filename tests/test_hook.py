"""The hook over real HTTP to the emulator: calls, envelope, auth, retries and spend safety."""

from __future__ import annotations

import time
from typing import Any

import pytest

from airflow_grok_video.emulator import Fault, GrokVideoEmulator
from airflow_grok_video.exceptions import GrokVideoAPIError, GrokVideoAuthError, GrokVideoUncertainCreateError
from airflow_grok_video.hooks.grok_video import GrokVideoHook, RetryPolicy, VideoTask, base_url_of
from tests.conftest import API_KEY, conn_json

CREATE = "/api/open-api/v1/grok/videos"
QUERY = "/api/open-api/v1/videos/"
PARAMS: dict[str, Any] = {"prompt": "a fox in the snow", "image_url": "https://example.com/fox.png"}
FAST = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05)


def fast_hook(**kwargs: Any) -> GrokVideoHook:
    return GrokVideoHook(retry_policy=FAST, **kwargs)


def wait_until_done(hook: GrokVideoHook, task_id: str, limit: float = 10.0) -> VideoTask:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        task = VideoTask.from_data(hook.get_video_task(task_id), video_task_id=task_id)
        if task.succeeded or task.failed:
            return task
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} did not finish")


def test_create_then_query_until_completed(emulator: GrokVideoEmulator) -> None:
    hook = GrokVideoHook()
    data = hook.create_video(**PARAMS, duration=15, model="grok-1.5")
    assert data["task_id"].startswith("video_")
    assert data["model"] == "grok-imagine-video-1.5"

    seen = set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        task = VideoTask.from_data(hook.get_video_task(data["task_id"]), video_task_id=data["task_id"])
        seen.add(task.status)
        if task.succeeded:
            break
        time.sleep(0.1)
    assert {"queued", "processing", "completed"} <= seen
    assert task.video_url == f"{emulator.base_url}/videos/{data['task_id']}.mp4"
    assert task.progress == 100
    create = emulator.requests[0]
    assert (create.method, create.path, create.auth_ok) == ("POST", CREATE, True)
    assert create.json == {
        "model": "grok-imagine-video-1.5",
        "prompt": PARAMS["prompt"],
        "image_urls": [PARAMS["image_url"]],
        "duration": 15,
    }


def test_failed_generation_reports_error_message(emulator: GrokVideoEmulator) -> None:
    from airflow_grok_video.emulator import Rule

    emulator.add_rule(Rule(prompt_contains="doomed", outcome="failed", error_message="content policy"))
    hook = GrokVideoHook()
    task_id = hook.create_video(**{**PARAMS, "prompt": "a doomed fox"})["task_id"]
    task = wait_until_done(hook, task_id)
    assert task.failed
    assert task.error_message == "content policy"


def test_refused_key_fails_at_once_without_retry(
    monkeypatch: pytest.MonkeyPatch, emulator: GrokVideoEmulator
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_GROK_VIDEO_DEFAULT", conn_json(emulator.base_url, "not-a-key"))
    with pytest.raises(GrokVideoAuthError) as info:
        fast_hook().get_video_task("video_x")
    assert "API key was refused" in str(info.value)
    assert info.value.http_status == 401
    assert info.value.code == "40100"
    assert emulator.count() == 1
    with pytest.raises(GrokVideoAuthError):
        fast_hook().create_video(**PARAMS)
    assert emulator.count() == 2


def test_connection_without_key_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, emulator: GrokVideoEmulator
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_GROK_VIDEO_DEFAULT", conn_json(emulator.base_url, ""))
    with pytest.raises(GrokVideoAuthError, match="has no API key"):
        GrokVideoHook().get_video_task("video_x")
    assert emulator.count() == 0


@pytest.mark.parametrize(
    "fault",
    [
        Fault("status", status=429),
        Fault("status", status=429, retry_after=1),
        Fault("status", status=500, times=2),
        Fault("status", status=502),
        Fault("status", status=503, times=3),
        Fault("html", times=2),
        Fault("reset"),
        Fault("slow", delay=1.5),
    ],
    ids=lambda f: f"{f.kind}-{f.status or ''}-{f.retry_after or ''}-{f.times}",
)
def test_query_retries_transient_faults(emulator: GrokVideoEmulator, fault: Fault) -> None:
    hook = fast_hook(read_timeout=0.5)
    task_id = hook.create_video(**PARAMS)["task_id"]
    emulator.inject(Fault(**{**fault.__dict__, "method": "GET", "path_prefix": QUERY}))
    started = time.monotonic()
    data = hook.get_video_task(task_id)
    assert data["task_id"] == task_id
    assert emulator.count("GET", QUERY) == fault.times + 1
    if fault.retry_after:
        assert time.monotonic() - started >= fault.retry_after


def test_query_gives_up_after_max_attempts_naming_the_cause(emulator: GrokVideoEmulator) -> None:
    emulator.inject(Fault("status", status=503, times=100, method="GET"))
    with pytest.raises(GrokVideoAPIError) as info:
        fast_hook().get_video_task("video_x")
    assert info.value.http_status == 503
    assert "HTTP 503" in str(info.value) and "gave up after 4 attempts" in str(info.value)
    assert emulator.count("GET") == FAST.max_attempts


def test_query_retries_stop_at_the_deadline(emulator: GrokVideoEmulator) -> None:
    emulator.inject(Fault("status", status=429, retry_after=30, times=100, method="GET"))
    started = time.monotonic()
    with pytest.raises(GrokVideoAPIError, match="HTTP 429"):
        GrokVideoHook().get_video_task("video_x", deadline=time.time() + 2)
    assert time.monotonic() - started < 2
    assert emulator.count("GET") == 1


def test_envelope_and_not_found_errors_carry_code_and_msg(emulator: GrokVideoEmulator) -> None:
    with pytest.raises(GrokVideoAPIError) as info:
        fast_hook().get_video_task("video_unknown")
    assert (info.value.http_status, info.value.code, info.value.msg) == (404, "40400", "task not found")
    assert "code 40400: task not found" in str(info.value)
    emulator.inject(Fault("envelope", code="50001", msg="upstream busy", method="GET"))
    with pytest.raises(GrokVideoAPIError, match="code 50001: upstream busy"):
        fast_hook().get_video_task("video_unknown")
    assert emulator.count("GET") == 2


def test_create_retried_after_429_creates_exactly_one(emulator: GrokVideoEmulator) -> None:
    emulator.inject(Fault("status", status=429, retry_after=0, times=2, method="POST"))
    data = fast_hook().create_video(**PARAMS)
    assert emulator.creates == 3
    assert emulator.accepted_creates == 1
    assert list(emulator.tasks) == [data["task_id"]]


def test_create_retried_when_connection_refused(
    closed_port_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_GROK_VIDEO_DEFAULT", conn_json(closed_port_url))
    with pytest.raises(GrokVideoAPIError) as info:
        fast_hook().create_video(**PARAMS)
    assert not isinstance(info.value, GrokVideoUncertainCreateError)
    assert "could not connect" in str(info.value)
    assert "gave up after 4 attempts" in str(info.value)


@pytest.mark.parametrize(
    "fault",
    [
        Fault("status", status=500, after_accept=True),
        Fault("status", status=502, after_accept=True),
        Fault("reset", after_accept=True),
        Fault("html", after_accept=True),
        Fault("slow", delay=2.0),
    ],
    ids=lambda f: f"{f.kind}-{f.status or ''}",
)
def test_create_that_may_have_been_billed_is_never_resent(emulator: GrokVideoEmulator, fault: Fault) -> None:
    emulator.inject(Fault(**{**fault.__dict__, "method": "POST"}))
    with pytest.raises(GrokVideoUncertainCreateError) as info:
        fast_hook(read_timeout=0.5).create_video(**PARAMS)
    message = str(info.value)
    assert "may have been created and billed" in message
    assert "task id is unknown" in message
    assert emulator.creates == 1


def test_create_envelope_error_is_not_retried(emulator: GrokVideoEmulator) -> None:
    emulator.inject(Fault("envelope", code="40200", msg="insufficient balance", method="POST"))
    with pytest.raises(GrokVideoAPIError) as info:
        fast_hook().create_video(**PARAMS)
    assert (info.value.code, info.value.msg) == ("40200", "insufficient balance")
    assert emulator.creates == 1


async def test_async_query_reuses_one_session_and_retries(emulator: GrokVideoEmulator) -> None:
    hook = fast_hook()
    task_id = GrokVideoHook().create_video(**PARAMS)["task_id"]
    emulator.inject(Fault("status", status=503, method="GET"))
    try:
        first = await hook.aget_video_task(task_id)
        session = hook._async.session if hook._async else None
        second = await hook.aget_video_task(task_id)
        assert hook._async is not None and hook._async.session is session
    finally:
        await hook.aclose()
    assert first["task_id"] == second["task_id"] == task_id
    assert emulator.count("GET", QUERY) == 3


async def test_async_refused_key(monkeypatch: pytest.MonkeyPatch, emulator: GrokVideoEmulator) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_GROK_VIDEO_DEFAULT", conn_json(emulator.base_url, "nope"))
    hook = fast_hook()
    try:
        with pytest.raises(GrokVideoAuthError, match="API key was refused"):
            await hook.aget_video_task("video_x")
    finally:
        await hook.aclose()
    assert emulator.count() == 1


def test_test_connection_tells_refused_key_from_unreachable(
    monkeypatch: pytest.MonkeyPatch, emulator: GrokVideoEmulator, closed_port_url: str
) -> None:
    assert GrokVideoHook().test_connection()[0] is True
    monkeypatch.setenv("AIRFLOW_CONN_GROK_VIDEO_DEFAULT", conn_json(emulator.base_url, "bad"))
    ok, message = GrokVideoHook().test_connection()
    assert not ok and "API key was refused" in message
    monkeypatch.setenv("AIRFLOW_CONN_GROK_VIDEO_DEFAULT", conn_json(closed_port_url))
    ok, message = fast_hook().test_connection()
    assert not ok and "could not connect" in message


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        (None, None, "https://www.jimmyai.cn"),
        ("", None, "https://www.jimmyai.cn"),
        ("https://www.jimiai.com/", None, "https://www.jimiai.com"),
        ("www.jimiai.com", None, "https://www.jimiai.com"),
        ("http://127.0.0.1", 8089, "http://127.0.0.1:8089"),
        ("http://127.0.0.1:8089", 9999, "http://127.0.0.1:8089"),
    ],
)
def test_base_url_of_connection(host: str | None, port: int | None, expected: str) -> None:
    from airflow.sdk import Connection

    assert base_url_of(Connection(conn_id="x", conn_type="grok_video", host=host, port=port)) == expected


def test_key_never_in_repr_or_errors(monkeypatch: pytest.MonkeyPatch, emulator: GrokVideoEmulator) -> None:
    hook = fast_hook()
    hook.create_video(**PARAMS)
    assert API_KEY not in repr(hook)
    emulator.inject(Fault("status", status=500, after_accept=True, method="POST"))
    with pytest.raises(GrokVideoAPIError) as info:
        hook.create_video(**PARAMS)
    assert API_KEY not in str(info.value) and API_KEY not in repr(info.value)
