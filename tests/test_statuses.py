"""Statuses the API does not document: what each family means for every wait, in real Airflow runs.

The emulator serves any status while a video generates (``Rule.processing_status``, no URL) and any
status once it is done (``Rule.status_spelling``, with a ``result.video_url``). It cannot attach an
``error_message`` to such a status, nor change a task's status on a given query (say, ``processing``
at the deferrable sensor's first look, then ``expired`` in the trigger): :class:`ScriptedAPI`, a small
server of this module, does.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import airflow
import pytest
from aiohttp import web
from packaging.version import Version

from airflow_grok_video.emulator import GrokVideoEmulator, Rule
from airflow_grok_video.exceptions import GrokVideoGenerationFailed
from airflow_grok_video.video_task import VideoTask, status_family
from tests.conftest import conn_json
from tests.test_dags import run_dag, states

pytestmark = pytest.mark.usefixtures("airflow_db")

QUERY = "/api/open-api/v1/videos/"

#: Answers a scripted query: (video task id, its query count from 1, seconds since its create) -> ``data``.
Script = Callable[[str, int, float], dict[str, Any]]


class ScriptedAPI:
    """
    The API's create and query endpoints on 127.0.0.1, each query answered by a script.

    Creates are accepted as ``video_s1``, ``video_s2``, ...

    :param script: what each query answers (its ``data``; ``task_id`` is added).
    """

    def __init__(self, script: Script) -> None:
        self.script = script
        self.created: dict[str, float] = {}
        self.queries: dict[str, int] = {}
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    @property
    def base_url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def url(self, video_task_id: str) -> str:
        """The ``result.video_url`` this server gives a video."""
        return f"{self.base_url}/videos/{video_task_id}.mp4"

    def __enter__(self) -> ScriptedAPI:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_post("/api/open-api/v1/grok/videos", self._create)
        app.router.add_get(QUERY + "{task_id}", self._query)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(runner.addresses[0][1])
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    async def _create(self, request: web.Request) -> web.Response:
        task_id = f"video_s{len(self.created) + 1}"
        self.created[task_id] = time.time()
        data = {"task_id": task_id, "status": "queued", "model": "grok-imagine-video-1.5"}
        return _envelope({**data, "created_at": int(self.created[task_id])})

    async def _query(self, request: web.Request) -> web.Response:
        task_id = request.match_info["task_id"]
        if task_id not in self.created:
            return web.json_response({"code": "40400", "msg": "task not found", "data": None}, status=404)
        count = self.queries[task_id] = self.queries.get(task_id, 0) + 1
        data = self.script(task_id, count, time.time() - self.created[task_id])
        return _envelope({"task_id": task_id, "created_at": int(self.created[task_id]), **data})


def _envelope(data: dict[str, Any]) -> web.Response:
    return web.json_response({"code": "20000", "msg": "ok", "data": data})


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Script], ScriptedAPI]]:
    """Start a :class:`ScriptedAPI` as the ``grok_video_default`` connection."""
    servers: list[ScriptedAPI] = []

    def start(script: Script) -> ScriptedAPI:
        server = ScriptedAPI(script).__enter__()
        servers.append(server)
        monkeypatch.setenv("AIRFLOW_CONN_GROK_VIDEO_DEFAULT", conn_json(server.base_url))
        return server

    yield start
    for server in servers:
        server.__exit__()


def processing_first(then: dict[str, Any]) -> Script:
    """A script: ``processing`` at the first query (a deferrable sensor's look), then ``then``."""
    return lambda task_id, count, age: {"status": "processing", "progress": 10} if count == 1 else then


def task_instance(run: Any, task_id: str) -> Any:
    [ti] = [ti for ti in run.get_task_instances() if ti.task_id == task_id]
    return ti


# -- the families -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "family"),
    [
        # documented: what the API says
        *[(s, "waiting") for s in ("queued", "pending", "submitted", "processing")],
        ("completed", "done"),
        ("success", "done"),
        ("failed", "failed"),
        # undocumented, saying the task ended without a video
        *[(s, "failed") for s in ("cancelled", "canceled", "expired", "error", "aborted", "rejected")],
        *[
            (s, "failed")
            for s in ("Cancelled_By_User", "Content Rejected", "timed_out", "timed-out", "TIMEOUT")
        ],
        ("completed_with_errors", "failed"),  # an ending word wins over a done one
        # undocumented, saying it is done
        *[(s, "done") for s in ("succeeded", "done", "finished", "ready", "Successful")],
        # anything else, or a task that will be tried again: still running (bounded by the timeout)
        *[(s, "waiting") for s in ("rendering", "running", "in_progress", "uploading", "unknown")],
        ("error_retrying", "waiting"),
        ("requeued", "waiting"),
    ],
)
def test_each_status_family(status: str, family: str) -> None:
    task = VideoTask.from_data({"status": status, "progress": 40}, video_task_id="v")
    assert status_family(task.status) == family
    assert (task.failed, task.says_done) == (family == "failed", family == "done")


def test_an_undocumented_ending_status_is_named_in_the_failure() -> None:
    cancelled = VideoTask.from_data(
        {"status": "Cancelled", "error_message": "by the user"}, video_task_id="v"
    )
    assert cancelled.failed and not cancelled.succeeded
    assert str(GrokVideoGenerationFailed(cancelled.task_id, cancelled.error_message)) == (
        "Grok video task v failed: status 'cancelled', which the API does not document, read as the end "
        "of the task: by the user"
    )
    assert cancelled.describe() == "cancelled (undocumented status; the task has ended)"
    expired = VideoTask.from_data(
        {"status": "expired", "result": {"video_url": "https://v/1.mp4"}}, video_task_id="v"
    )
    assert expired.failed and not expired.succeeded  # a URL does not make an ending status a success
    assert (
        expired.error_message
        == "status 'expired', which the API does not document, read as the end of the task (no error_message)"
    )
    # The documented failure keeps the API's words; a waiting status's error_message is left alone.
    assert (
        VideoTask.from_data({"status": "failed", "error_message": "load"}, video_task_id="v").error_message
        == "load"
    )
    rendering = VideoTask.from_data({"status": "rendering", "error_message": "slow"}, video_task_id="v")
    assert (rendering.failed, rendering.error_message) == (False, "slow")


def test_an_undocumented_done_status_succeeds_only_with_a_url() -> None:
    done = VideoTask.from_data(
        {"status": "succeeded", "completed_at": 1_000_000, "result": {"video_url": "https://v/1.mp4"}},
        video_task_id="v",
    )
    assert done.succeeded and done.url_expires_at() is not None
    assert done.describe() == "succeeded (undocumented status; done)"
    no_url = VideoTask.from_data({"status": "succeeded", "progress": 100}, video_task_id="v")
    assert not no_url.succeeded and not no_url.failed
    assert no_url.describe() == "succeeded 100% (undocumented status; done, no result.video_url yet)"


# -- the sensor, in real Airflow runs ---------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "rule"),
    [
        ("poke", Rule(prompt_contains="fox", processing_status="cancelled", generation_seconds=600)),
        ("reschedule", Rule(prompt_contains="fox", processing_status="expired", generation_seconds=600)),
        # done, with a URL, but "cancelled": not handed on (the deferrable sensor's first look ends it)
        ("deferrable", Rule(prompt_contains="fox", status_spelling="cancelled", generation_seconds=0.5)),
    ],
    ids=["poke-cancelled", "reschedule-expired", "deferrable-cancelled-with-url"],
)
def test_an_ending_status_fails_the_sensor_at_once_without_retries(
    emulator: GrokVideoEmulator, capfd: pytest.CaptureFixture[str], mode: str, rule: Rule
) -> None:
    emulator.add_rule(rule)
    run = run_dag(f"grok_test_status_{mode}")
    assert states(run) == {"create": "success", "wait": "failed"}
    assert task_instance(run, "wait").try_number == 1  # the DAG allows 2 retries
    status = rule.processing_status if rule.status_spelling == "completed" else rule.status_spelling
    out, err = capfd.readouterr()
    assert f"status '{status}', which the API does not document" in out + err
    assert emulator.creates == 1
    # The wait ended at the first answer that said so, not by its timeout (30 s of queries).
    [video] = emulator.tasks.values()
    answered = [video.status(r.time) for r in emulator.requests if r.path.startswith(QUERY)]
    assert answered.count(status) == 1 and answered[-1] == status


def test_an_ending_status_in_the_trigger_fails_naming_it(
    scripted: Callable[[Script], ScriptedAPI], capfd: pytest.CaptureFixture[str]
) -> None:
    api = scripted(processing_first({"status": "expired", "error_message": "kept 3 days"}))
    run = run_dag("grok_test_status_deferrable")
    assert states(run) == {"create": "success", "wait": "failed"}
    assert task_instance(run, "wait").try_number == 1
    assert api.queries == {"video_s1": 2}  # the first look, then the trigger's one query
    out, err = capfd.readouterr()
    assert (
        "Grok video task video_s1 failed: status 'expired', which the API does not document, read as the "
        "end of the task: kept 3 days"
    ) in out + err


@pytest.mark.parametrize("mode", ["poke", "deferrable"])
def test_soft_fail_skips_on_an_ending_status(scripted: Callable[[Script], ScriptedAPI], mode: str) -> None:
    api = scripted(processing_first({"status": "cancelled"}))
    run = run_dag(f"grok_test_status_{mode}_soft_fail")
    assert states(run) == {"create": "success", "wait": "skipped"}
    assert api.queries == {"video_s1": 2}


@pytest.mark.parametrize("mode", ["poke", "deferrable"])
def test_a_done_status_with_a_url_hands_the_video_on(
    scripted: Callable[[Script], ScriptedAPI], mode: str
) -> None:
    api = scripted(
        lambda task_id, count, age: (
            {"status": "processing", "progress": 50}
            if count == 1
            else {"status": "succeeded", "progress": 100, "result": {"video_url": api.url(task_id)}}
        )
    )
    run = run_dag(f"grok_test_status_{mode}")
    assert states(run) == {"create": "success", "wait": "success"}
    wait = task_instance(run, "wait")
    assert wait.xcom_pull(task_ids="wait") == api.url("video_s1")
    assert wait.xcom_pull(task_ids="wait", key="video_url") == api.url("video_s1")
    assert api.queries == {"video_s1": 2}


def test_a_done_status_without_a_url_waits_for_it(
    scripted: Callable[[Script], ScriptedAPI], capfd: pytest.CaptureFixture[str]
) -> None:
    api = scripted(
        lambda task_id, count, age: (
            {"status": "succeeded", "progress": 100}
            if count <= 2
            else {"status": "succeeded", "progress": 100, "result": {"video_url": api.url(task_id)}}
        )
    )
    run = run_dag("grok_test_status_poke")
    assert states(run) == {"create": "success", "wait": "success"}
    assert task_instance(run, "wait").xcom_pull(task_ids="wait") == api.url("video_s1")
    assert api.queries == {"video_s1": 3}  # waited through two answers without a URL
    out, err = capfd.readouterr()
    assert "succeeded 100% (undocumented status; done, no result.video_url yet)" in out + err


def test_a_done_status_that_never_gets_a_url_ends_at_the_timeout(
    emulator: GrokVideoEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    emulator.add_rule(Rule(prompt_contains="fox", processing_status="succeeded", generation_seconds=600))
    run = run_dag("grok_test_timeout_deferrable")  # timeout: 1 s
    assert states(run) == {"create": "success", "wait": "failed"}
    out, err = capfd.readouterr()
    assert "did not finish in time (last seen: succeeded" in out + err


# -- the create operator --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["worker", "deferred"])
def test_an_ending_status_fails_create_and_wait_without_retries(
    scripted: Callable[[Script], ScriptedAPI], capfd: pytest.CaptureFixture[str], mode: str
) -> None:
    api = scripted(processing_first({"status": "aborted"}))
    run = run_dag(f"grok_test_status_create_{mode}")
    assert states(run) == {"create": "failed"}
    assert task_instance(run, "create").try_number == 1  # the DAG allows 2 retries
    assert list(api.created) == ["video_s1"]
    assert api.queries == {"video_s1": 2}  # ended at the first "aborted", not by the 30 s timeout
    out, err = capfd.readouterr()
    assert "Grok video task video_s1 failed: status 'aborted', which the API does not document" in out + err


@pytest.mark.skipif(
    Version(airflow.__version__).release < (3, 3), reason="the task state store came with Airflow 3.3"
)
def test_a_retry_does_not_reattach_to_a_video_that_ended(
    scripted: Callable[[Script], ScriptedAPI], capfd: pytest.CaptureFixture[str]
) -> None:
    # The first try's wait times out (1 s) while its video generates; by the retry (3 s later) the
    # video is cancelled: the retry buys another, as after a "failed" video, instead of waiting on it.
    def script(task_id: str, count: int, age: float) -> dict[str, Any]:
        if task_id == "video_s1":
            return {"status": "processing", "progress": 20} if age < 3.0 else {"status": "cancelled"}
        return {"status": "completed", "progress": 100, "result": {"video_url": api.url(task_id)}}

    api = scripted(script)
    run = run_dag("grok_test_deferred_retry")
    assert states(run) == {"create": "success"}
    create = task_instance(run, "create")
    assert create.try_number == 2
    assert list(api.created) == ["video_s1", "video_s2"]
    assert create.xcom_pull(task_ids="create", key="video_url") == api.url("video_s2")
    out, err = capfd.readouterr()
    assert "made video video_s1, but it failed (status 'cancelled'" in out + err
