"""Create-and-wait in one task, and durable creates: retries and re-runs reattach, never pay twice."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import airflow
import pytest
from aiohttp import web
from packaging.version import Version

from airflow_grok_video.emulator import Fault, GrokVideoEmulator, Rule
from tests._net import Gateway
from tests.conftest import conn_json
from tests.test_dags import run_dag, states

pytestmark = pytest.mark.usefixtures("airflow_db")

HAS_STATE_STORE = Version(airflow.__version__).release >= (3, 3)
needs_state_store = pytest.mark.skipif(
    not HAS_STATE_STORE, reason="the task state store came with Airflow 3.3"
)


class LookAlikeGateway(Gateway):
    """
    A gateway whose own 404 is JSON with a ``code`` key, as many API gateways' are.

    It looks like the API's envelope, but is not one: the API's ``code`` is a JSON string and its
    text is in ``msg`` (docs: the envelope), while this one's code is a number and its text is in
    ``message``.
    """

    BODY = {"code": 404, "message": "no route"}

    async def _forward(self, request: web.Request) -> web.Response:
        answer = await super()._forward(request)  # records it; a path it cannot route is not forwarded
        if self.not_found and request.path.startswith(self.prefix + self.not_found):
            return web.json_response(self.BODY, status=404)
        return answer


# A generation that outlasts a try's 2 s execution_timeout and ends well inside the retry's: about a
# second of slack on either side (3.5 s left 0.2-0.5 s for the retry, and flaked under load).
SPANS_ONE_TIMEOUT = 3.0


@pytest.fixture
def grok_video_emulator_options() -> dict[str, float]:
    """Videos no rule slows down take 0.4 s: a try bounded by a 2 s execution_timeout that must end
    in time (a retry's, or a mapped index's) keeps 1.6 s of slack (the suite's 1.2 s video left
    0.8 s, and two such tests failed under CI's load)."""
    return {"queue_seconds": 0.1, "generation_seconds": 0.3}


def tries(run: object, task_id: str = "create") -> dict[int, int]:
    return {ti.map_index: ti.try_number for ti in run.get_task_instances() if ti.task_id == task_id}  # type: ignore[attr-defined]


def video_url_xcom(run: object, map_index: int = -1) -> object:
    [ti] = [ti for ti in run.get_task_instances() if ti.map_index == map_index]  # type: ignore[attr-defined]
    return ti.xcom_pull(task_ids="create", key="video_url", map_indexes=map_index)


@pytest.mark.parametrize("mode", ["worker", "deferred"])
def test_create_and_wait_in_one_task(emulator: GrokVideoEmulator, mode: str) -> None:
    run = run_dag(f"grok_test_wait_{mode}")
    assert states(run) == {"create": "success"}
    [task_id] = list(emulator.tasks)
    [ti] = run.get_task_instances()
    assert ti.xcom_pull(task_ids="create") == task_id
    assert video_url_xcom(run) == f"{emulator.base_url}/videos/{task_id}.mp4"


@needs_state_store
def test_retry_after_execution_timeout_reattaches(emulator: GrokVideoEmulator) -> None:
    emulator.add_rule(Rule(prompt_contains="fox", generation_seconds=SPANS_ONE_TIMEOUT))
    run = run_dag("grok_test_execution_timeout")
    assert states(run) == {"create": "success"}
    assert tries(run) == {-1: 2}
    assert emulator.creates == 1
    [task_id] = list(emulator.tasks)
    assert video_url_xcom(run) == f"{emulator.base_url}/videos/{task_id}.mp4"


@needs_state_store
def test_deferred_retry_reattaches_to_the_finished_video(emulator: GrokVideoEmulator) -> None:
    emulator.add_rule(Rule(prompt_contains="fox", generation_seconds=2.5))
    run = run_dag("grok_test_deferred_retry")
    assert states(run) == {"create": "success"}
    assert tries(run) == {-1: 2}
    assert emulator.creates == 1


@pytest.mark.parametrize(
    "fault",
    [Fault("status", status=502, after_accept=True), Fault("reset", after_accept=True)],
    ids=["5xx", "reset"],
)
def test_uncertain_create_is_sent_once_and_fails_clearly(emulator: GrokVideoEmulator, fault: Fault) -> None:
    emulator.inject(Fault(**{**fault.__dict__, "method": "POST"}))
    run = run_dag("grok_test_create_retries")
    assert states(run) == {"create": "failed"}
    assert tries(run) == {-1: 1}
    assert emulator.creates == 1


def test_rejected_request_is_not_retried(emulator: GrokVideoEmulator) -> None:
    emulator.inject(Fault("status", status=400, method="POST"))
    run = run_dag("grok_test_create_retries")
    assert states(run) == {"create": "failed"}
    assert tries(run) == {-1: 1}
    assert emulator.creates == 1


def test_refused_key_is_not_retried(emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_GROK_VIDEO_DEFAULT", conn_json(emulator.base_url, "wrong"))
    run = run_dag("grok_test_create_retries")
    assert states(run) == {"create": "failed"}
    assert tries(run) == {-1: 1}
    assert emulator.creates == 1


@needs_state_store
def test_mapped_retry_keeps_one_record_per_map_index(emulator: GrokVideoEmulator) -> None:
    emulator.add_rule(Rule(prompt_contains="flaky", generation_seconds=SPANS_ONE_TIMEOUT))
    run = run_dag("grok_test_mapped_retry")
    assert set(states(run).values()) == {"success"}
    assert tries(run) == {0: 1, 1: 1, 2: 2}
    assert emulator.creates == 3
    urls = {video_url_xcom(run, i) for i in range(3)}
    assert urls == {f"{emulator.base_url}/videos/{t}.mp4" for t in emulator.tasks}


@needs_state_store
def test_create_cut_off_in_flight_is_not_sent_again(emulator: GrokVideoEmulator) -> None:
    # The first try's create is still waiting for its answer when execution_timeout kills the try.
    emulator.inject(Fault("slow", delay=4, method="POST"))
    run = run_dag("grok_test_execution_timeout")
    assert states(run) == {"create": "failed"}
    assert tries(run) == {-1: 2}
    assert emulator.creates == 1


def test_recreate_accepts_the_risk_of_paying_twice(emulator: GrokVideoEmulator) -> None:
    # The retry creates and waits inside its own 2 s execution_timeout: an instant video leaves it
    # the whole 2 s of slack (a 1.2 s generation timed the retry out once under CI's load).
    emulator.configure({"queue_seconds": 0, "generation_seconds": 0})
    emulator.inject(Fault("slow", delay=4, method="POST"))
    run = run_dag("grok_test_recreate")
    assert states(run) == {"create": "success"}
    assert tries(run) == {-1: 2}
    assert emulator.creates == 2


def test_a_failed_video_is_replaced_on_the_next_try(emulator: GrokVideoEmulator) -> None:
    # Try 1 times out while its video is processing; by try 2 that video has failed: buy a new one.
    emulator.add_rule(Rule(prompt_contains="fox", outcome="failed", generation_seconds=2.5, times=1))
    run = run_dag("grok_test_retry_after_failure")
    assert states(run) == {"create": "success"}
    assert tries(run) == {-1: 2}
    assert emulator.creates == 2
    assert sorted(emulator.stats()["tasks"].values()) == ["completed", "failed"]


@pytest.mark.skipif(HAS_STATE_STORE, reason="Airflow 3.3+ has a task state store")
def test_without_a_state_store_retries_warn_that_they_may_pay_twice(
    emulator: GrokVideoEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    emulator.add_rule(Rule(prompt_contains="fox", generation_seconds=3.5, times=1))
    run = run_dag("grok_test_execution_timeout")
    assert states(run) == {"create": "success"}
    assert emulator.creates == 2
    out, err = capfd.readouterr()
    assert "may create (and pay for) a second one" in out + err


@needs_state_store
def test_a_try_asking_for_another_video_does_not_reattach(
    emulator: GrokVideoEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    # Try 1 ("take 1") times out while its video is processing; try 2 renders "take 2": another video.
    emulator.add_rule(Rule(prompt_contains="take 1", generation_seconds=3.5))
    run = run_dag("grok_test_prompt_per_try")
    assert states(run) == {"create": "success"}
    assert tries(run) == {-1: 2}
    prompts = sorted(task.prompt for task in emulator.tasks.values())
    assert prompts == ["a fox, take 1", "a fox, take 2"]
    [second] = [t for t in emulator.tasks.values() if t.prompt.endswith("take 2")]
    assert video_url_xcom(run) == f"{emulator.base_url}/videos/{second.task_id}.mp4"
    out, err = capfd.readouterr()
    [first] = [t for t in emulator.tasks.values() if t.prompt.endswith("take 1")]
    assert f"for video {first.task_id}, but this try asks for another video (changed: prompt)" in out + err


def _once_the_first_try_is_gone(
    emulator: GrokVideoEmulator, then: Callable[[], None], dag_id: str = "grok_test_retry_after_failure"
) -> threading.Thread:
    """Once try 1 of ``dag_id``'s ``create`` task has failed (it waits for its retry), call ``then``.

    Read from the task instance's state, not from a pause in try 1's queries: under load a poll
    can come late, and a pause is no proof that the try has ended.
    """
    database = os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///")

    def watch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            # Earlier runs of the DAG have ended: none of their task instances waits to retry.
            with closing(sqlite3.connect(database, timeout=5)) as db:
                waiting = db.execute(
                    "SELECT 1 FROM task_instance WHERE dag_id = ? AND state = 'up_for_retry'", (dag_id,)
                ).fetchone()
            if emulator.tasks and waiting:
                then()
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _age_once_the_first_try_is_gone(emulator: GrokVideoEmulator, days: float) -> threading.Thread:
    """Once try 1 has failed, make its video ``days`` old."""

    def age() -> None:
        [task] = emulator.tasks.values()
        task.created -= days * 86400

    return _once_the_first_try_is_gone(emulator, age)


@needs_state_store
def test_a_finished_video_whose_url_expired_is_not_handed_on(
    emulator: GrokVideoEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    # Try 1 times out while its video is processing; before try 2 (2 s later) the video is 4 days old.
    emulator.add_rule(Rule(prompt_contains="fox", generation_seconds=3.5, times=1))
    ager = _age_once_the_first_try_is_gone(emulator, days=4)
    run = run_dag("grok_test_retry_after_failure")
    ager.join()
    assert states(run) == {"create": "success"}
    assert tries(run) == {-1: 2}
    assert emulator.creates == 2
    old, new = sorted(emulator.tasks.values(), key=lambda task: task.created)
    assert video_url_xcom(run) == f"{emulator.base_url}/videos/{new.task_id}.mp4"
    out, err = capfd.readouterr()
    assert f"made video {old.task_id}, but its URL has expired (video URLs live 3 days" in out + err


@needs_state_store
def test_the_video_id_is_logged_and_named_when_the_ledger_cannot_be_written(
    emulator: GrokVideoEmulator, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_grok_video.operators._ledger import CreateLedger

    def broken(*args: object) -> None:
        raise OSError("the state store is gone")

    monkeypatch.setattr(CreateLedger, "created", broken)
    run = run_dag("grok_test_create_retries")  # retries=2
    assert states(run) == {"create": "failed"}
    assert tries(run) == {-1: 1}
    assert emulator.creates == 1
    [video_id] = list(emulator.tasks)
    out, err = capfd.readouterr()
    logs = out + err
    assert f"Created Grok video task {video_id}" in logs
    assert f"Created (and paid for) video task {video_id}, but could not record it" in logs
    assert logs.index(f"Created Grok video task {video_id}") < logs.index("Created (and paid for)")


@needs_state_store
def test_a_429_wait_cut_by_execution_timeout_leaves_no_uncertain_record(emulator: GrokVideoEmulator) -> None:
    # Try 1's create is answered 429 "come back in 30 s": it waits, and its execution_timeout (2 s)
    # kills it during that wait. Nothing was bought, so try 2 creates; it does not refuse to.
    emulator.configure({"queue_seconds": 0, "generation_seconds": 0})
    emulator.inject(Fault("status", status=429, retry_after=30, method="POST"))
    run = run_dag("grok_test_execution_timeout")
    assert states(run) == {"create": "success"}
    assert tries(run) == {-1: 2}
    assert (emulator.creates, emulator.accepted_creates) == (2, 1)


@needs_state_store
def test_a_gateway_404_on_the_retry_does_not_buy_a_second_video(
    emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # Try 1 buys a video and is killed before its first query. Try 2 looks for that video and gets
    # a gateway's plain 404: that is no proof the API lost it, so try 2 fails, buying nothing.
    with Gateway(emulator.base_url, not_found="/api/open-api/v1/videos/") as gateway:
        monkeypatch.setenv("AIRFLOW_CONN_GROK_VIDEO_DEFAULT", conn_json(gateway.base_url))
        run = run_dag("grok_test_killed_before_the_first_query")
    assert states(run) == {"create": "failed"}
    assert tries(run) == {-1: 2}
    assert emulator.creates == 1
    out, err = capfd.readouterr()
    assert "not the API's JSON envelope" in out + err


@needs_state_store
def test_a_json_look_alike_404_on_the_retry_does_not_buy_a_second_video(
    emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # As above, but the gateway's 404 is JSON with a code ({"code": 404, "message": ...}): it only
    # looks like the API's envelope (whose code is a string, its text in msg), so it proves nothing.
    with LookAlikeGateway(emulator.base_url, not_found="/api/open-api/v1/videos/") as gateway:
        monkeypatch.setenv("AIRFLOW_CONN_GROK_VIDEO_DEFAULT", conn_json(gateway.base_url))
        run = run_dag("grok_test_killed_before_the_first_query")
    assert states(run) == {"create": "failed"}
    assert tries(run) == {-1: 2}
    assert emulator.creates == 1
    assert emulator.count("GET") == 0  # every look was answered by the gateway
    out, err = capfd.readouterr()
    assert "not the API's JSON envelope" in out + err


@needs_state_store
def test_the_apis_own_404_on_the_retry_buys_a_new_video(emulator: GrokVideoEmulator) -> None:
    # Try 1 times out while its video is processing; once it has stopped querying, the API forgets
    # that video: its own envelope says so with HTTP 404 to try 2's look, which buys a new one.
    emulator.add_rule(Rule(prompt_contains="fox", generation_seconds=3.5, times=1))
    forget = _once_the_first_try_is_gone(
        emulator, lambda: emulator.inject(Fault("status", status=404, method="GET"))
    )
    run = run_dag("grok_test_retry_after_failure")
    forget.join()
    assert states(run) == {"create": "success"}
    assert tries(run) == {-1: 2}
    assert emulator.creates == 2


@needs_state_store  # the retry reattaches from the create recorded there
def test_a_retry_that_reattaches_reserves_no_spend(
    emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests.test_caps import capped_connection, rows, sqlite_store

    sqlite_store(monkeypatch, tmp_path / "spend.db")
    capped_connection(monkeypatch, emulator.base_url, {"videos_per_day": 1})
    emulator.add_rule(Rule(prompt_contains="fox", generation_seconds=2.5))
    run = run_dag("grok_test_deferred_retry")
    # The second try would be refused by a cap of one video if it reserved again.
    assert states(run) == {"create": "success"}
    assert tries(run) == {-1: 2}
    assert [state for _, state, _ in rows(tmp_path / "spend.db")] == ["accepted"]
    assert emulator.creates == 1
