"""The API key never lands in what Airflow writes: database, logs, XCom, trigger kwargs, errors, reprs."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from airflow_grok_video.emulator import Fault, GrokVideoEmulator, Rule
from airflow_grok_video.exceptions import GrokVideoAPIError
from airflow_grok_video.hooks.grok_video import GrokVideoHook
from airflow_grok_video.operators.grok_video import GrokCreateVideoOperator
from airflow_grok_video.sensors.grok_video import GrokVideoSensor
from airflow_grok_video.triggers.grok_video import GrokVideoTrigger
from tests.conftest import conn_json
from tests.test_dags import OUTLASTS_FIRST_LOOK, run_dag, states

SENTINEL = "sk_LEAKCHECK_5d1e0b7a94c2"

pytestmark = pytest.mark.usefixtures("airflow_db")


def occurrences(root: Path, text: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


def test_key_never_written_anywhere(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    with GrokVideoEmulator(api_keys=[SENTINEL], queue_seconds=0.2, generation_seconds=1.0) as emu:
        monkeypatch.setenv("AIRFLOW_CONN_GROK_VIDEO_DEFAULT", conn_json(emu.base_url, SENTINEL))
        emu.add_rule(Rule(prompt_contains="doomed", outcome="failed", error_message="content policy"))
        outcomes = {
            "deferred success": states(run_dag("grok_test_deferrable")),
            "poke success": states(run_dag("grok_test_poke")),
            "deferred failed video": states(run_dag("grok_test_deferrable_retries", prompt="a doomed fox")),
            "poke failed video": states(run_dag("grok_test_poke_retries", prompt="a doomed fox")),
            "create and wait": states(run_dag("grok_test_wait_deferred")),
            "invalid parameter": states(run_dag("grok_test_templated_invalid")),
        }
        emu.inject(Fault("envelope", code="50001", msg="upstream busy", method="GET", times=50))
        outcomes["deferred API error"] = states(run_dag("grok_test_deferrable"))
        video_ids = list(emu.tasks)  # the next create's id never reaches Airflow
        emu.inject(Fault("status", status=502, method="POST", after_accept=True))
        outcomes["uncertain create"] = states(run_dag("grok_test_create_retries"))
        assert all(r.auth_ok for r in emu.requests)
    assert outcomes["deferred success"]["wait"] == "success"
    assert outcomes["deferred failed video"]["wait"] == "failed"
    assert outcomes["deferred API error"]["wait"] == "failed"
    assert outcomes["uncertain create"]["create"] == "failed"
    out, err = capfd.readouterr()
    assert SENTINEL not in out + err
    # The metadata database (trigger kwargs, XCom, rendered template fields, ...) and every log file.
    home = Path(os.environ["AIRFLOW_HOME"])
    assert occurrences(home, SENTINEL) == []
    # The scan does see what the runs wrote: the videos' task ids are in the database's XComs.
    assert all(occurrences(home, video_id) for video_id in video_ids)


def test_key_not_in_reprs_exceptions_or_trigger_kwargs(
    monkeypatch: pytest.MonkeyPatch, emulator: GrokVideoEmulator
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_GROK_VIDEO_DEFAULT", conn_json(emulator.base_url, SENTINEL))
    hook = GrokVideoHook()
    task_id = hook.create_video(prompt="a fox", image_url="https://example.com/f.png")["task_id"]
    trigger = GrokVideoTrigger(task_id, "grok_video_default", poll_interval=1, end_time=time.time() + 5)
    operator = GrokCreateVideoOperator(task_id="c", prompt="p", image_url="https://example.com/f.png")
    sensor = GrokVideoSensor(task_id="w", video_task_id=task_id)
    errors: list[BaseException] = []
    for fault in (Fault("status", status=500, after_accept=True), Fault("reset", after_accept=True)):
        emulator.inject(Fault(**{**fault.__dict__, "method": "POST"}))
        with pytest.raises(GrokVideoAPIError) as info:
            hook.create_video(prompt="a fox", image_url="https://example.com/f.png")
        errors.append(info.value)
    texts = [repr(hook), repr(trigger), str(trigger.serialize()), repr(operator), repr(sensor)]
    texts += [f"{e!s} {e!r} {e.__cause__!r}" for e in errors]
    assert [t for t in texts if SENTINEL in t] == []


SIGNATURE = "Signature=SIGSENTINEL_91c3e0"


@pytest.mark.parametrize(
    "dag_id", ["grok_test_deferrable", "grok_test_poke", "grok_test_wait_worker", "grok_test_wait_deferred"]
)
def test_signed_video_url_is_handed_on_but_never_logged(
    emulator: GrokVideoEmulator, capfd: pytest.CaptureFixture[str], dag_id: str
) -> None:
    # Deferred, still running at the sensor's first look: the trigger's path, whose log line is checked.
    slow = OUTLASTS_FIRST_LOOK if dag_id == "grok_test_deferrable" else None
    emulator.add_rule(Rule(prompt_contains="fox", url_query=SIGNATURE, generation_seconds=slow))
    run = run_dag(dag_id)
    assert set(states(run).values()) == {"success"}
    [video_id] = list(emulator.tasks)
    url = f"{emulator.base_url}/videos/{video_id}.mp4"
    pulled = [ti.xcom_pull(task_ids=ti.task_id, key="video_url") for ti in run.get_task_instances()]
    assert f"{url}?{SIGNATURE}" in pulled  # downstream tasks get the working, signed URL
    out, err = capfd.readouterr()
    assert re.search(f"Grok video task {video_id}:? completed", out + err)
    assert "SIGSENTINEL" not in out + err
