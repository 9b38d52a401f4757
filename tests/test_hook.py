"""The hook over real HTTP to the emulator: calls, envelope, auth, retries and spend safety."""

from __future__ import annotations

import asyncio
import gc
import time
import traceback
import weakref
from typing import Any

import pytest

from airflow_grok_video.emulator import Fault, GrokVideoEmulator
from airflow_grok_video.exceptions import (
    GrokVideoAPIError,
    GrokVideoAuthError,
    GrokVideoNotFoundError,
    GrokVideoRequestError,
    GrokVideoUncertainCreateError,
)
from airflow_grok_video.hooks._envelope import unwrap
from airflow_grok_video.hooks.grok_video import GrokVideoHook, RetryPolicy, VideoTask, base_url_of
from tests.conftest import API_KEY, conn_json
from tests.test_durable import LookAlikeGateway

CREATE = "/api/open-api/v1/grok/videos"
QUERY = "/api/open-api/v1/videos/"
PARAMS: dict[str, Any] = {"prompt": "a fox in the snow", "image_url": "https://example.com/fox.png"}
FAST = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05)


def fast_hook(**kwargs: Any) -> GrokVideoHook:
    return GrokVideoHook(retry_policy=FAST, **kwargs)


def wait_until_done(hook: GrokVideoHook, task_id: str, limit: float = 10.0) -> VideoTask:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        task = hook.get_video_task(task_id)
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
        task = hook.get_video_task(data["task_id"])
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
    task = hook.get_video_task(task_id)
    assert task.task_id == task_id
    assert emulator.count("GET", QUERY) == fault.times + 1
    if isinstance(fault.retry_after, float | int):
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


# Bodies that look like the API's envelope (a dict with a "code") but are not: the API's code is a
# JSON string and its text is in msg (docs: the envelope).
LOOK_ALIKES = {
    "code a number": b'{"code": 404, "message": "no route"}',
    "code a string, no msg": b'{"code": "40400", "message": "no route"}',
    "msg not a string": b'{"code": "40400", "msg": null}',
}


@pytest.mark.parametrize("body", list(LOOK_ALIKES.values()), ids=list(LOOK_ALIKES))
def test_only_the_apis_own_envelope_says_a_video_task_does_not_exist(body: bytes) -> None:
    # The API's own envelope, whatever its code (the docs list none), says the task does not exist.
    own = b'{"code": "40499", "msg": "no such task", "data": null}'
    with pytest.raises(GrokVideoNotFoundError, match="code 40499: no such task"):
        unwrap(404, own, what="query")
    # A look-alike is read as any body that is not the API's (a gateway's HTML 404): not final.
    with pytest.raises(GrokVideoAPIError) as info:
        unwrap(404, body, what="query")
    assert not isinstance(info.value, GrokVideoRequestError)
    assert "not the API's JSON envelope (HTTP 404" in str(info.value)
    assert (info.value.code, info.value.msg, info.value.transient) == (None, None, False)


@pytest.mark.parametrize("path", ["sync", "async"])
def test_a_gateways_json_404_is_not_the_apis_not_found(
    emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    with LookAlikeGateway(emulator.base_url, not_found=QUERY) as gateway:
        monkeypatch.setenv("AIRFLOW_CONN_GROK_VIDEO_DEFAULT", conn_json(gateway.base_url))
        with pytest.raises(GrokVideoAPIError) as info:
            if path == "sync":
                fast_hook().get_video_task("video_x")
            else:
                asyncio.run(_aquery(fast_hook(), "video_x"))
    assert not isinstance(info.value, GrokVideoRequestError)
    assert "not the API's JSON envelope (HTTP 404" in str(info.value)
    assert len(gateway.seen) == 1  # not retried inside the hook: Airflow's retry of the task may
    assert emulator.count() == 0


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
    assert first.task_id == second.task_id == task_id
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
        # A path and a port: the port belongs in the authority, before the path.
        ("https://gw.example.com:8443/jimmy", None, "https://gw.example.com:8443/jimmy"),
        ("https://gw.example.com:8443/jimmy/", 9999, "https://gw.example.com:8443/jimmy"),
        ("https://gw.example.com/jimmy", 8443, "https://gw.example.com:8443/jimmy"),
        ("gw.example.com/jimmy", 8443, "https://gw.example.com:8443/jimmy"),
        ("gw.example.com/jimmy/v1/", 8443, "https://gw.example.com:8443/jimmy/v1"),
        ("http://[::1]/jimmy", 8089, "http://[::1]:8089/jimmy"),
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


def test_base_url_that_is_not_a_url_is_named() -> None:
    from airflow.sdk import Connection

    with pytest.raises(GrokVideoAPIError, match="its host must be a URL") as info:
        base_url_of(Connection(conn_id="x", conn_type="grok_video", host="https://:8443/jimmy"))
    assert info.value.sent is False


# -- the key as secrets stores hand it over (item 7) ------------------------------------------


def _set_key(monkeypatch: pytest.MonkeyPatch, base_url: str, key: str) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_GROK_VIDEO_DEFAULT", conn_json(base_url, key))


async def _aquery(hook: GrokVideoHook, task_id: str) -> VideoTask:
    try:
        return await hook.aget_video_task(task_id)
    finally:
        await hook.aclose()


@pytest.mark.parametrize("surrounding", ["\n", "\r\n", " \n", "\t"], ids=["lf", "crlf", "space-lf", "tab"])
def test_key_with_surrounding_whitespace_works_on_both_paths(
    monkeypatch: pytest.MonkeyPatch, emulator: GrokVideoEmulator, surrounding: str
) -> None:
    _set_key(monkeypatch, emulator.base_url, API_KEY + surrounding)
    task_id = fast_hook().create_video(**PARAMS)["task_id"]
    assert fast_hook().get_video_task(task_id).task_id == task_id
    assert asyncio.run(_aquery(fast_hook(), task_id)).task_id == task_id
    assert [r.auth_ok for r in emulator.requests] == [True, True, True]


BAD_KEYS = {
    "inner-lf": (API_KEY[:8] + "\n" + API_KEY[8:], "a line break"),
    "inner-cr": (API_KEY[:8] + "\r" + API_KEY[8:], "a line break"),
    "nul": (API_KEY[:8] + "\x00" + API_KEY[8:], "a control character"),
    "inner-space": (API_KEY[:8] + " " + API_KEY[8:], "whitespace"),
    "non-ascii": (API_KEY[:8] + "\u00e9" + API_KEY[8:], "a non-ASCII character"),
}


def _leaks(key: str, text: str) -> list[str]:
    """The forms of the key (raw, repr-escaped, either half) that appear in ``text``."""
    forms = {key, repr(key)[1:-1], key.encode("unicode_escape").decode(), API_KEY[8:]}
    return [form for form in forms if form in text]


@pytest.mark.parametrize("name", list(BAD_KEYS))
@pytest.mark.parametrize("path", ["create", "sync", "async"])
def test_key_with_inner_control_characters_is_refused_before_any_request_without_quoting_it(
    monkeypatch: pytest.MonkeyPatch,
    emulator: GrokVideoEmulator,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    name: str,
    path: str,
) -> None:
    key, problem = BAD_KEYS[name]
    _set_key(monkeypatch, emulator.base_url, key)
    with pytest.raises(GrokVideoAuthError) as info:
        if path == "create":
            fast_hook().create_video(**PARAMS)
        elif path == "sync":
            fast_hook().get_video_task("video_x")
        else:
            asyncio.run(_aquery(fast_hook(), "video_x"))
    error = info.value
    assert problem in str(error) and "'grok_video_default'" in str(error)
    assert error.sent is False
    shown = (
        "".join(traceback.format_exception(error)) + repr(error) + caplog.text + "".join(capfd.readouterr())
    )
    assert _leaks(key, shown) == []
    assert emulator.count() == 0


# -- event loops (item 12) ----------------------------------------------------------------------


def test_a_hook_works_from_a_second_event_loop_and_dead_loops_are_let_go(emulator: GrokVideoEmulator) -> None:
    from airflow_grok_video.hooks import _clients

    task_id = GrokVideoHook().create_video(**PARAMS)["task_id"]
    hook = fast_hook()
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def query() -> VideoTask:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        return await hook.aget_video_task(task_id)

    assert asyncio.run(query()).task_id == task_id
    first_session = weakref.ref(hook._async.session) if hook._async else None
    assert asyncio.run(query()).task_id == task_id  # "Event loop is closed" before
    assert emulator.count("GET", QUERY) == 2
    gc.collect()
    # Neither the hook nor the session registry keeps the first loop (or its session) alive.
    assert first_session is not None and first_session() is None
    assert loops[0]() is None
    second_session = weakref.ref(hook._async.session) if hook._async else None
    asyncio.run(hook.aclose())  # from a third loop: the second loop's session is let go
    assert hook._async is None
    gc.collect()
    assert second_session is not None and second_session() is None
    # (asgiref, behind Airflow's get_async_connection, remembers the last loop per thread.)
    assert [loop for loop in list(_clients._SESSIONS) if loop.is_closed()] == []


async def test_two_loops_at_once_each_get_their_own_session(emulator: GrokVideoEmulator) -> None:
    task_id = GrokVideoHook().create_video(**PARAMS)["task_id"]
    hook = fast_hook()
    try:
        await hook.aget_video_task(task_id)
        first = hook._async
        assert first is not None and first.loop is asyncio.get_running_loop()
        other = await asyncio.to_thread(asyncio.run, _aquery(fast_hook(), task_id))
        assert other.task_id == task_id
        await hook.aget_video_task(task_id)
        assert hook._async is first and not first.session.closed
    finally:
        await hook.aclose()
    assert emulator.count("GET", QUERY) == 3
