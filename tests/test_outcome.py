"""The ``video_outcome`` XCom: which video each wait ended on, and how, pushed on every path a wait ends.

Real Airflow (``dag.test()``) against the emulator, as tests/test_dags.py; the path that ends a task
in the triggerer (Airflow 3.3+) with the triggerer's channel recorded, as tests/test_trigger.py (and
end to end in tests/test_deployment.py and tests/test_deployment_batch.py).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_grok_video.emulator import GrokVideoEmulator, Rule
from airflow_grok_video.outcome import NO_ERROR_MESSAGE, OUTCOME_XCOM_KEY, outcome
from airflow_grok_video.video_task import VIDEO_URL_LIFETIME
from tests.conftest import API_KEY
from tests.test_dags import run_dag, states
from tests.test_durable import needs_state_store

ERROR = "content policy"
#: The storage connection the kept copy's event names (tests/dag_files/grok_outcome_dags.py).
KEEP_CONN_ID = "grok_outcome_storage"
DOOMED = Rule(prompt_contains="doomed", outcome="failed", error_message=ERROR)


def url_expires_at(emulator: GrokVideoEmulator, video_task_id: str) -> str:
    """When the emulator's video URL stops working, as the record says it (ISO 8601, UTC)."""
    done_at = datetime.fromtimestamp(int(emulator.tasks[video_task_id].done_at), tz=timezone.utc)
    return (done_at + VIDEO_URL_LIFETIME).isoformat()


def succeeded(emulator: GrokVideoEmulator, video_task_id: str) -> dict[str, Any]:
    """The record of a wait that ended with the emulator's video done."""
    return {
        "video_task_id": video_task_id,
        "status": "success",
        "video_url": f"{emulator.base_url}/videos/{video_task_id}.mp4",
        "url_expires_at": url_expires_at(emulator, video_task_id),
    }


def failed(video_task_id: str, error: str = ERROR) -> dict[str, Any]:
    """The record of a wait that ended with the video failed, with the API's message."""
    return {"video_task_id": video_task_id, "status": "failed", "error": error}


def task_instance(run: Any, task_id: str) -> Any:
    [ti] = [ti for ti in run.get_task_instances() if ti.task_id == task_id]
    return ti


def outcome_of(run: Any, task_id: str) -> Any:
    return task_instance(run, task_id).xcom_pull(task_ids=task_id, key=OUTCOME_XCOM_KEY)


def only_video(emulator: GrokVideoEmulator) -> str:
    [video_task_id] = list(emulator.tasks)
    return video_task_id


def video_of(emulator: GrokVideoEmulator, prompt: str) -> str:
    [video] = [task.task_id for task in emulator.tasks.values() if task.prompt == prompt]
    return video


# -- the record ---------------------------------------------------------------------------------------


def test_the_record_holds_only_what_its_status_says() -> None:
    expires = datetime(2026, 12, 6, 7, 0, tzinfo=timezone.utc)
    assert outcome("v1", "success", video_url="https://x/v1.mp4", url_expires_at=expires) == {
        "video_task_id": "v1",
        "status": "success",
        "video_url": "https://x/v1.mp4",
        "url_expires_at": "2026-12-06T07:00:00+00:00",
    }
    assert outcome("v1", "success", video_url="https://x/v1.mp4", error="ignored") == {
        "video_task_id": "v1",
        "status": "success",
        "video_url": "https://x/v1.mp4",
    }
    assert outcome("v2", "failed", error=ERROR, video_url="https://x/ignored.mp4") == failed("v2")
    assert outcome("v2", "failed") == failed("v2", NO_ERROR_MESSAGE)
    with pytest.raises(ValueError, match="needs the video's URL"):
        outcome("v3", "success")
    with pytest.raises(ValueError, match="not 'timeout'"):
        outcome("v3", "timeout")  # type: ignore[arg-type]


# -- the sensor, in every mode ------------------------------------------------------------------------

# How the sensor's wait ends, by case: its DAG, and whether it defers. "first_look": deferrable, the
# video has ended before the sensor's look (the look ends the wait, in the worker); "deferred": the
# video is still queued at that look, the wait defers and ends in execute_complete.
SENSOR_CASES = {
    "poke": ("grok_test_poke", False),
    "reschedule": ("grok_test_reschedule", False),
    "first_look": ("grok_test_deferrable", False),
    "deferred": ("grok_test_deferrable", True),
}


def video_ends_once_deferred(emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Keep each video queued until a task defers to wait for it, then end it within a moment.

    The wait then defers and ends in ``execute_complete`` however long ``dag.test()`` takes to start
    the sensor on a loaded machine (24 s seen on Airflow 3.1: longer than any generation time a
    test would wait for), and the trigger, handed a ``queued`` look, queries within its floor.
    """
    from airflow_grok_video.triggers import grok_video as triggers

    emulator.configure({"queue_seconds": 600})
    deferring = triggers.defer_until_done

    def end_then_defer(task: Any, **kwargs: Any) -> Any:
        now = time.time()
        for video in emulator.tasks.values():
            video.queue_seconds, video.generation_seconds = max(0.0, now - video.created), 0.3
        return deferring(task, **kwargs)

    monkeypatch.setattr(triggers, "defer_until_done", end_then_defer)


def sensor_case(
    emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch, case: str, *, doomed: bool
) -> str:
    """Set the emulator up for the case and return the sensor's DAG."""
    dag_id, _ = SENSOR_CASES[case]
    if case == "first_look":
        emulator.configure({"queue_seconds": 0, "generation_seconds": 0})
    if case == "deferred":
        video_ends_once_deferred(emulator, monkeypatch)
    if doomed:
        emulator.add_rule(DOOMED)
    return dag_id


def assert_deferred_as_the_case_says(case: str, logs: str) -> None:
    assert ("Deferring" in logs) is SENSOR_CASES[case][1], logs[-3000:]


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize("case", list(SENSOR_CASES))
def test_the_sensor_records_the_video_it_ended_on(
    emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], case: str
) -> None:
    run = run_dag(sensor_case(emulator, monkeypatch, case, doomed=False))
    assert states(run) == {"create": "success", "wait": "success"}
    video_task_id = only_video(emulator)
    assert outcome_of(run, "wait") == succeeded(emulator, video_task_id)
    wait = task_instance(run, "wait")
    assert wait.xcom_pull(task_ids="wait", key="video_url") == succeeded(emulator, video_task_id)["video_url"]
    assert_deferred_as_the_case_says(case, "".join(capfd.readouterr()))


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize("case", list(SENSOR_CASES))
def test_a_failed_video_fails_the_sensor_and_its_outcome_stays(
    emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], case: str
) -> None:
    run = run_dag(sensor_case(emulator, monkeypatch, case, doomed=True), prompt="a doomed fox")
    assert states(run) == {"create": "success", "wait": "failed"}
    assert task_instance(run, "wait").try_number == 1
    assert outcome_of(run, "wait") == failed(only_video(emulator))  # pushed before failing, kept
    assert_deferred_as_the_case_says(case, "".join(capfd.readouterr()))


@pytest.mark.usefixtures("airflow_db")
def test_the_signed_url_is_only_in_the_xcoms(
    emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    video_ends_once_deferred(emulator, monkeypatch)
    emulator.add_rule(Rule(prompt_contains="fox", url_query="signature=SECRET-SIG"))
    run = run_dag("grok_test_deferrable")
    assert states(run) == {"create": "success", "wait": "success"}
    record = outcome_of(run, "wait")
    assert record["video_url"].endswith("?signature=SECRET-SIG")
    assert API_KEY not in json.dumps(record)
    out, err = capfd.readouterr()
    assert "Deferring" in out + err
    assert "SECRET-SIG" not in out + err and API_KEY not in out + err


# -- the create operator waiting, and @task.grok_video ------------------------------------------------


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize("path", ["worker", "deferred"])
@pytest.mark.parametrize("ending", ["success", "failed"])
def test_create_and_wait_records_the_video_it_ended_on(
    emulator: GrokVideoEmulator, path: str, ending: str
) -> None:
    emulator.add_rule(DOOMED)
    prompt = "a doomed fox" if ending == "failed" else "a fox"
    run = run_dag(f"grok_test_status_create_{path}", prompt=prompt)
    assert states(run) == {"create": ending}
    video_task_id = only_video(emulator)
    if ending == "success":
        assert outcome_of(run, "create") == succeeded(emulator, video_task_id)
        assert task_instance(run, "create").xcom_pull(task_ids="create") == video_task_id  # still returned
    else:
        assert task_instance(run, "create").try_number == 1
        assert outcome_of(run, "create") == failed(video_task_id)


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize("path", ["worker", "deferred"])
def test_task_grok_video_records_the_video_it_ended_on(emulator: GrokVideoEmulator, path: str) -> None:
    run = run_dag(f"grok_test_tf_prompt_{path}")
    assert states(run) == {"fox": "success", "length": "success"}
    assert outcome_of(run, "fox") == succeeded(emulator, only_video(emulator))


@needs_state_store
@pytest.mark.usefixtures("airflow_db")
def test_a_retry_that_finds_its_video_done_records_it(emulator: GrokVideoEmulator) -> None:
    # Try 1 defers and times out (1 s) while the video generates; try 2 reattaches to it, done.
    emulator.add_rule(Rule(prompt_contains="patient", generation_seconds=2.5))
    run = run_dag("grok_test_tf_retry")
    assert states(run) == {"retried": "success"}
    assert task_instance(run, "retried").try_number == 2
    assert emulator.creates == 1
    assert outcome_of(run, "retried") == succeeded(emulator, only_video(emulator))


# -- a failed try's outcome, in Airflow itself ----------------------------------------------------------


@pytest.mark.usefixtures("airflow_db")
def test_a_failed_tries_outcome_stays_until_the_next_try_starts() -> None:
    # A wait pushes its failure's record, then raises: the record is kept by the failed try (the
    # sensor and create tests above read it from a failed task). Airflow 3 clears a task instance's
    # XComs when its next try starts (not when it resumes from deferral), so a retry never shows an
    # earlier try's outcome as its own.
    run = run_dag("grok_test_outcome_next_try")
    assert states(run) == {"wait": "success"}
    ti = task_instance(run, "wait")
    assert ti.try_number == 2
    assert ti.xcom_pull(task_ids="wait") == {"seen": None}
    assert outcome_of(run, "wait") is None


# -- the batch --------------------------------------------------------------------------------------------


def batch_outcomes(emulator: GrokVideoEmulator, prompts: list[str]) -> list[dict[str, Any]]:
    """The batch's records for ``prompts``, in input order: a doomed one failed, the others done."""
    return [
        {
            "index": index,
            **(
                failed(video_of(emulator, prompt))
                if "doomed" in prompt
                else {
                    key: value
                    for key, value in succeeded(emulator, video_of(emulator, prompt)).items()
                    if key != "url_expires_at"  # a batch's results do not carry the video's times
                }
            ),
        }
        for index, prompt in enumerate(prompts)
    ]


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize(
    ("dag_id", "state"),
    [
        ("grok_test_batch_some_may_fail", "success"),  # in the worker, min_success=1
        ("grok_test_batch_worker", "failed"),  # in the worker: the failure is pushed before it fails
        ("grok_test_batch_deferred", "failed"),  # resumed in the worker after the batch trigger
    ],
)
def test_a_batch_records_each_item_that_ended(emulator: GrokVideoEmulator, dag_id: str, state: str) -> None:
    emulator.add_rule(DOOMED)
    prompts = ["a fox", "a doomed fox", "a fox again"]
    run = run_dag(dag_id, items=prompts)
    assert states(run) == {"batch": state}
    assert outcome_of(run, "batch") == batch_outcomes(emulator, prompts)


@pytest.mark.usefixtures("airflow_db")
def test_task_grok_video_batch_records_each_item_that_ended(emulator: GrokVideoEmulator) -> None:
    emulator.add_rule(DOOMED)
    run = run_dag("grok_test_batch_taskflow")  # deferred, min_success=1
    assert states(run) == {"nightly": "success"}
    prompts = ["a fox and owls", "a fox and hares", "a doomed fox"]
    assert outcome_of(run, "nightly") == batch_outcomes(emulator, prompts)


# -- ending the task in the triggerer (Airflow 3.3+) ----------------------------------------------------


def _triggerer_channel(monkeypatch: pytest.MonkeyPatch) -> Any:
    from airflow.sdk.execution_time import task_runner

    from tests.test_trigger import RecordingComms

    recording = RecordingComms()
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", recording, raising=False)
    return recording


def _needs_async_xcom_push() -> None:
    from airflow.sdk.execution_time.xcom import XCom

    if getattr(XCom, "aset", None) is None:
        pytest.skip("this Airflow's XCom has no async push: the task resumes in a worker (tested above)")


def create(prompt: str) -> str:
    from airflow_grok_video.hooks.grok_video import GrokVideoHook

    return str(GrokVideoHook().create_video(prompt=prompt, image_url="https://example.com/f.png")["task_id"])


async def test_the_trigger_ending_the_task_pushes_the_outcome(
    emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    _needs_async_xcom_push()
    from tests.test_trigger import as_triggerer_runs_it, ending_trigger

    sent = _triggerer_channel(monkeypatch)
    video_task_id = create("a fox")
    [event] = [event async for event in as_triggerer_runs_it(ending_trigger(video_task_id)).run()]
    assert type(event).__name__ == "TaskSuccessEvent"
    pushed = {message.key: message.value for message in sent.sent}
    assert pushed[OUTCOME_XCOM_KEY] == succeeded(emulator, video_task_id)
    assert pushed["video_url"] == succeeded(emulator, video_task_id)["video_url"]


async def test_the_batch_trigger_ending_the_task_pushes_each_outcome(
    emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    _needs_async_xcom_push()
    from airflow_grok_video.triggers.grok_video_batch import GrokVideoBatchTrigger
    from tests.test_trigger import as_triggerer_runs_it

    sent = _triggerer_channel(monkeypatch)
    emulator.add_rule(DOOMED)
    prompts = ["a fox", "a doomed fox", "a fox refused"]
    videos = [create(prompt) for prompt in prompts[:2]]
    items = [
        {"index": 0, "status": "waiting", "video_task_id": videos[0], "seconds": 10},
        {"index": 1, "status": "waiting", "video_task_id": videos[1], "seconds": 10},
        {"index": 2, "status": "refused", "error": "videos_per_day=2"},  # nothing bought: no outcome
    ]
    end_time = time.time() + 30
    trigger = GrokVideoBatchTrigger(
        items, "grok_video_default", poll_interval=0.1, end_time=end_time, min_success=1, end_here=True
    )
    [event] = [event async for event in as_triggerer_runs_it(trigger).run()]  # type: ignore[arg-type]
    assert type(event).__name__ == "TaskSuccessEvent"
    pushed = {message.key: message.value for message in sent.sent}
    assert pushed[OUTCOME_XCOM_KEY] == batch_outcomes(emulator, prompts[:2])
    assert [result["status"] for result in pushed["return_value"]] == ["success", "failed", "refused"]


# -- the kept copy's storage connection -------------------------------------------------------------------


@pytest.mark.usefixtures("airflow_db")
def test_the_kept_copy_names_the_connection_to_open_it_with(
    emulator: GrokVideoEmulator, tmp_path: Path
) -> None:
    from airflow.sdk import ObjectStoragePath

    from tests.test_transfer import asset_events

    dest = f"file://{tmp_path}/kept.mp4"
    run = run_dag("grok_test_outcome_keep", dest=dest)
    assert states(run) == {"make": "success", "keep": "success"}
    # Airflow's URI of a path opened with a connection names it (file://<conn_id>@/...); the extra
    # says it as its own field, for a reader that does not parse URIs.
    [extra] = asset_events(str(ObjectStoragePath(dest, conn_id=KEEP_CONN_ID)))
    assert extra["conn_id"] == KEEP_CONN_ID
    assert extra["video_task_id"] == only_video(emulator)
    assert outcome_of(run, "make") == succeeded(emulator, only_video(emulator))
    assert API_KEY not in json.dumps(extra)
