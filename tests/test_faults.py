"""The fault matrix in real Airflow runs: each row asserts the task's end state AND what the emulator saw."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest

from airflow_grok_video.emulator import Fault, GrokVideoEmulator, Rule
from airflow_grok_video.operators._ledger import LEDGER_KEY
from tests._net import Gateway
from tests.conftest import conn_json
from tests.test_dags import OUTLASTS_FIRST_LOOK, dag_bag, run_dag, states
from tests.test_durable import HAS_STATE_STORE, LookAlikeGateway

pytestmark = pytest.mark.usefixtures("airflow_db")
QUERY = "/api/open-api/v1/videos/"
MODES = ["poke", "deferrable"]

TRANSIENT = {
    "429 Retry-After": [Fault("status", status=429, retry_after=1)],
    "429 bare": [Fault("status", status=429, times=2)],
    "500": [Fault("status", status=500, times=2)],
    "502": [Fault("status", status=502)],
    "503": [Fault("status", status=503, times=3)],
    "reset": [Fault("reset", times=2)],
    "slow": [Fault("slow", delay=1.5)],
    "html for a while": [Fault("html", times=3)],
    "mixed": [
        Fault("status", status=503),
        Fault("reset"),
        Fault("html"),
        Fault("status", status=429, retry_after=1),
    ],
}


def queries(emu: GrokVideoEmulator) -> int:
    return emu.count("GET", QUERY)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(TRANSIENT))
def test_transient_query_faults_still_succeed(emulator: GrokVideoEmulator, mode: str, name: str) -> None:
    for fault in TRANSIENT[name]:
        emulator.inject(Fault(**{**fault.__dict__, "method": "GET", "path_prefix": QUERY}))
    if name == "slow":  # a slow answer is an answer: the video must still be running then, to be asked again
        emulator.add_rule(Rule(prompt_contains="fox", generation_seconds=OUTLASTS_FIRST_LOOK))
    run = run_dag(f"grok_test_{mode}")
    assert states(run) == {"create": "success", "wait": "success"}
    faulted = sum(f.times for f in TRANSIENT[name])
    assert queries(emulator) >= faulted + 1
    assert emulator.creates == 1
    [task_id] = list(emulator.tasks)
    [wait] = [ti for ti in run.get_task_instances() if ti.task_id == "wait"]
    assert wait.xcom_pull(task_ids="wait") == f"{emulator.base_url}/videos/{task_id}.mp4"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("fault", "cause"),
    [
        (Fault("status", status=503, times=1000), "HTTP 503"),
        (Fault("status", status=429, retry_after=30, times=1000), "HTTP 429"),
        (Fault("html", times=1000), "not the API's JSON envelope"),
    ],
    ids=["503", "429", "html"],
)
def test_persistent_faults_fail_by_the_timeout_naming_the_cause(
    emulator: GrokVideoEmulator, capfd: pytest.CaptureFixture[str], mode: str, fault: Fault, cause: str
) -> None:
    emulator.inject(Fault(**{**fault.__dict__, "method": "GET", "path_prefix": QUERY}))
    started = time.monotonic()
    run = run_dag(f"grok_test_timeout_{mode}")  # sensor timeout: 1 s
    elapsed = time.monotonic() - started
    assert states(run) == {"create": "success", "wait": "failed"}
    assert elapsed < 30
    out, err = capfd.readouterr()
    assert cause in out + err
    assert emulator.creates == 1


def test_a_reschedule_poke_retries_no_longer_than_the_sensor_timeout(emulator: GrokVideoEmulator) -> None:
    # Every query is answered 429 "come back in 30 s"; the sensor's timeout is 1 s.
    emulator.inject(Fault("status", status=429, retry_after=30, times=1000, method="GET", path_prefix=QUERY))
    started = time.monotonic()
    run = run_dag("grok_test_timeout_reschedule")
    assert states(run) == {"create": "success", "wait": "failed"}
    assert time.monotonic() - started < 25
    assert queries(emulator) <= 3


@pytest.mark.parametrize("mode", MODES)
def test_envelope_error_names_code_and_msg(
    emulator: GrokVideoEmulator, capfd: pytest.CaptureFixture[str], mode: str
) -> None:
    emulator.inject(Fault("envelope", code="50001", msg="upstream busy", method="GET", times=1000))
    run = run_dag(f"grok_test_{mode}")
    assert states(run) == {"create": "success", "wait": "failed"}
    assert queries(emulator) == 1
    out, err = capfd.readouterr()
    assert "code 50001: upstream busy" in out + err


@pytest.mark.parametrize("mode", MODES)
def test_refused_key_fails_at_once(
    emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], mode: str
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_GROK_VIDEO_DEFAULT", conn_json(emulator.base_url, "sk_x"))
    video_id = None
    with GrokVideoEmulator(api_keys=["sk_right"], generation_seconds=600) as strict:
        monkeypatch.setenv("AIRFLOW_CONN_GROK_VIDEO_DEFAULT", conn_json(strict.base_url, "sk_right"))
        from airflow_grok_video.hooks.grok_video import GrokVideoHook

        video_id = GrokVideoHook().create_video(prompt="a fox", image_url="https://example.com/f.png")[
            "task_id"
        ]
        monkeypatch.setenv("AIRFLOW_CONN_GROK_VIDEO_DEFAULT", conn_json(strict.base_url, "sk_wrong"))
        run = run_dag(f"grok_test_{mode}_retries")
        assert states(run) == {"create": "failed", "wait": "upstream_failed"}
        assert strict.creates == 2 and strict.accepted_creates == 1
    assert video_id
    out, err = capfd.readouterr()
    assert "API key was refused" in out + err


@pytest.mark.parametrize("mode", MODES)
def test_key_refused_while_waiting_fails_the_sensor_without_retries(
    emulator: GrokVideoEmulator, mode: str
) -> None:
    emulator.inject(Fault("status", status=401, method="GET", times=1000))
    run = run_dag(f"grok_test_{mode}_retries")
    assert states(run) == {"create": "success", "wait": "failed"}
    [wait] = [ti for ti in run.get_task_instances() if ti.task_id == "wait"]
    assert wait.try_number == 1
    assert queries(emulator) == 1


@pytest.mark.parametrize("mode", MODES)
def test_undocumented_status_keeps_waiting_bounded_by_timeout(emulator: GrokVideoEmulator, mode: str) -> None:
    emulator.add_rule(Rule(prompt_contains="fox", processing_status="rendering", generation_seconds=600))
    started = time.monotonic()
    run = run_dag(f"grok_test_timeout_{mode}")
    assert states(run) == {"create": "success", "wait": "failed"}
    assert time.monotonic() - started < 30
    assert queries(emulator) >= 2  # it kept asking while the API said "rendering"


def test_undocumented_status_is_logged_as_still_waiting() -> None:
    from airflow_grok_video.hooks.grok_video import VideoTask

    task = VideoTask.from_data({"status": "Rendering", "progress": 40}, video_task_id="v")
    assert not task.succeeded and not task.failed and not task.known_status
    assert task.describe() == "rendering 40% (undocumented status; still waiting)"


@pytest.mark.parametrize("mode", MODES)
def test_undocumented_status_then_completed_succeeds(emulator: GrokVideoEmulator, mode: str) -> None:
    emulator.add_rule(Rule(prompt_contains="fox", processing_status="rendering"))
    run = run_dag(f"grok_test_{mode}")
    assert states(run) == {"create": "success", "wait": "success"}


@pytest.mark.parametrize("mode", MODES)
def test_lost_task_fails_clearly(
    emulator: GrokVideoEmulator, capfd: pytest.CaptureFixture[str], mode: str
) -> None:
    emulator.inject(Fault("status", status=404, method="GET", times=1000))
    run = run_dag(f"grok_test_{mode}_retries")
    assert states(run) == {"create": "success", "wait": "failed"}
    [wait] = [ti for ti in run.get_task_instances() if ti.task_id == "wait"]
    assert wait.try_number == 1
    assert queries(emulator) == 1
    out, err = capfd.readouterr()
    assert "HTTP 404" in out + err


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("gateway", [Gateway, LookAlikeGateway], ids=["html", "json look-alike"])
def test_a_gateways_404_fails_the_sensor_retryably(
    emulator: GrokVideoEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    mode: str,
    gateway: type[Gateway],
) -> None:
    # The create reaches the API; every query is answered 404 by the gateway in front of it, as
    # HTML or as JSON that only looks like the API's envelope. Neither says the video is gone (the
    # API's own 404 does: test_lost_task_fails_clearly), so each try fails and Airflow retries it.
    dag_id = f"grok_test_{mode}_retries"  # 2 retries; here without Airflow's default 5 min between
    monkeypatch.setattr(dag_bag().dags[dag_id].get_task("wait"), "retry_delay", timedelta(0))
    with gateway(emulator.base_url, not_found=QUERY) as front:
        monkeypatch.setenv("AIRFLOW_CONN_GROK_VIDEO_DEFAULT", conn_json(front.base_url))
        run = run_dag(dag_id)
    assert states(run) == {"create": "success", "wait": "failed"}
    [wait] = [ti for ti in run.get_task_instances() if ti.task_id == "wait"]
    assert wait.try_number == 3
    assert (emulator.creates, queries(emulator)) == (1, 0)
    out, err = capfd.readouterr()
    assert "not the API's JSON envelope (HTTP 404" in out + err
    assert "GrokVideoNotFoundError" not in out + err


@pytest.mark.parametrize("mode", MODES)
def test_success_spelling_ends_the_wait(emulator: GrokVideoEmulator, mode: str) -> None:
    emulator.add_rule(Rule(prompt_contains="fox", status_spelling="success"))
    run = run_dag(f"grok_test_{mode}")
    assert states(run) == {"create": "success", "wait": "success"}


@pytest.mark.parametrize(
    ("fault", "outcome", "accepted", "shown"),
    [
        (Fault("status", status=429, retry_after=1, times=2), "success", 1, ""),
        (Fault("status", status=503), "failed", 0, "may have been created and billed"),
        (Fault("status", status=502, after_accept=True), "failed", 1, "may have been created and billed"),
        (Fault("reset", after_accept=True), "failed", 1, "may have been created and billed"),
        (Fault("html", after_accept=True), "failed", 1, "may have been created and billed"),
        # Accepted (so billed) with a success code, but no data to learn its id from: uncertain.
        (Fault("envelope", code="20000", msg="ok", after_accept=True), "failed", 1, '"data":null'),
        # Refused with HTTP 200 and an envelope code: nothing was bought, and the same body would be
        # refused again, so Airflow does not retry it either.
        (
            Fault("envelope", code="40200", msg="insufficient balance"),
            "failed",
            0,
            "code 40200: insufficient",
        ),
        (Fault("envelope", code="40001", msg="prompt rejected"), "failed", 0, "code 40001: prompt rejected"),
        # Accepted, then an error code from the server range: not a refusal, so the record is kept.
        (
            Fault("envelope", code="50001", msg="upstream error", after_accept=True),
            "failed",
            1,
            "may have been created and billed",
        ),
        # A timeout answered with the API's envelope: it may come after the API accepted the create.
        (Fault("status", status=408, after_accept=True), "failed", 1, "may have been created and billed"),
        # A redirect after accepting: never followed (it would turn the POST into a GET).
        (
            Fault("redirect", status=303, location="/api/open-api/v1/videos/elsewhere", after_accept=True),
            "failed",
            1,
            "may have been created and billed",
        ),
    ],
    ids=[
        "429-then-ok",
        "503-before-accept",
        "502-after-accept",
        "reset-after-accept",
        "html-after-accept",
        "ok-without-data",
        "balance",
        "prompt-rejected",
        "50001-after-accept",
        "408-after-accept",
        "303-after-accept",
    ],
)
def test_create_under_faults_never_sends_a_billed_create_twice(
    emulator: GrokVideoEmulator,
    capfd: pytest.CaptureFixture[str],
    fault: Fault,
    outcome: str,
    accepted: int,
    shown: str,
) -> None:
    emulator.inject(Fault(**{**fault.__dict__, "method": "POST"}))
    run = run_dag("grok_test_create_retries")  # retries=2
    assert states(run) == {"create": outcome}
    assert emulator.accepted_creates == accepted
    if outcome == "success":
        assert emulator.creates == fault.times + 1  # every extra create was refused, none billed
    else:
        # Billed, perhaps billed, or refused for good: never sent again, by any try.
        assert emulator.creates == 1
        [create] = run.get_task_instances()
        assert create.try_number == 1
        out, err = capfd.readouterr()
        assert shown in out + err
    if HAS_STATE_STORE:
        # The ledger follows the verdict: a create that may have been billed keeps its in-flight record
        # (no later try or cleared task buys again); a refusal or a success leaves no uncertain record.
        record = ledger_record(run)
        refused = shown.startswith("code 4")  # the API's own client-error codes
        if outcome == "failed" and not refused:
            assert record is not None and record["video_task_id"] is None
        else:
            assert record is None or record["video_task_id"] is not None


def ledger_record(run: Any) -> dict[str, Any] | None:
    """The create's record in the task state store of ``run`` (Airflow 3.3+), or ``None``."""
    from airflow.utils.session import create_session
    from sqlalchemy import text

    with create_session() as session:
        rows = session.execute(
            text("SELECT value FROM task_state_store WHERE run_id=:run AND task_id='create' AND key=:key"),
            {"run": run.run_id, "key": LEDGER_KEY},
        ).all()
    return json.loads(rows[0][0]) if rows else None
