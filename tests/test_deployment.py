"""A real Airflow (api-server, scheduler, dag-processor, triggerers; LocalExecutor): crashes lose nothing."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from tests.deploy_dags.grok_deploy_dags import TAKEOVER_WAITS, TOGETHER_WAITS
from tests.deployment import REPO, Deployment, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
FAN_OUT = "grok_deploy_fan_out"
VIDEOS = 20
# The human review example: a reviewer answers it through the REST API.
REVIEW = "grok_video_review"


def all_deferred(deployment: Deployment, run_id: str) -> bool:
    states = deployment.states(FAN_OUT, run_id, "wait")
    return len(states) == VIDEOS and set(states.values()) == {"deferred"}


def assert_every_video_delivered(deployment: Deployment, run_id: str) -> None:
    assert deployment.finish(FAN_OUT, run_id) == "success", deployment.logs()
    stats = deployment.emulator("stats")
    assert stats["creates"] == VIDEOS and stats["accepted_creates"] == VIDEOS
    for index in range(VIDEOS):
        video_id = deployment.xcom(FAN_OUT, run_id, "create", index)
        assert (
            deployment.xcom(FAN_OUT, run_id, "wait", index)
            == f"{deployment.emulator_url}/videos/{video_id}.mp4"
        )
        # The trigger that ended the wait also recorded which video it ended on (tests/test_outcome.py).
        outcome = deployment.xcom(FAN_OUT, run_id, "wait", index, "video_outcome")
        assert outcome.pop("url_expires_at")  # from the API's completed_at (its value: test_outcome.py)
        assert outcome == {
            "video_task_id": video_id,
            "status": "success",
            "video_url": f"{deployment.emulator_url}/videos/{video_id}.mp4",
        }
        # Each mapped wait started and ended in the triggerer, reading its own index's video.
        assert worker_runs(deployment, FAN_OUT, run_id, "create", index) == 1
        assert worker_runs(deployment, FAN_OUT, run_id, "wait", index) == 0


def test_triggerer_killed_while_all_videos_are_deferred(deployment: Deployment) -> None:
    deployment.emulator("reset", {})
    run_id = deployment.trigger(FAN_OUT)
    wait_for(lambda: all_deferred(deployment, run_id), 240, "20 deferred sensors", every=1)
    deployment.kill("triggerer-1")
    deployment.spawn_triggerer("triggerer-2")
    assert_every_video_delivered(deployment, run_id)


def test_worker_killed_mid_wait_retry_reattaches(deployment: Deployment) -> None:
    deployment.emulator("reset", {})
    dag_id = "grok_deploy_create_and_wait"
    run_id = deployment.trigger(dag_id)

    def running_pid() -> int | None:
        rows = deployment.query(
            "SELECT pid, state FROM task_instance WHERE dag_id=? AND run_id=? AND task_id='create'",
            dag_id,
            run_id,
        )
        if (
            rows
            and rows[0][1] == "running"
            and rows[0][0]
            and deployment.emulator("stats")["accepted_creates"]
        ):
            return int(rows[0][0])
        return None

    pid = wait_for(running_pid, 180, "the create task to run and create its video")
    time.sleep(2)  # mid-wait
    os.kill(pid, signal.SIGKILL)
    assert deployment.finish(dag_id, run_id) == "success", deployment.logs()
    [(try_number,)] = deployment.query(
        "SELECT try_number FROM task_instance WHERE dag_id=? AND run_id=? AND task_id='create'",
        dag_id,
        run_id,
    )
    assert try_number == 2
    assert deployment.emulator("stats")["creates"] == 1
    video_id = deployment.xcom(dag_id, run_id, "create", -1)
    assert (
        deployment.xcom(dag_id, run_id, "create", -1, "video_url")
        == f"{deployment.emulator_url}/videos/{video_id}.mp4"
    )


ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Debian's Chromium, driven by Playwright (the test is skipped where it is not installed)."""
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_page(deployment: Deployment) -> Iterator[Any]:
    with chromium() as browser:
        yield browser.new_page(viewport={"width": 1400, "height": 1000})


def worker_runs(deployment: Deployment, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> int:
    """How many times a worker ran the task instance (the supervisor logs each finished workload)."""
    [(ti_id,)] = deployment.query(
        "SELECT id FROM task_instance WHERE dag_id=? AND run_id=? AND task_id=? AND map_index=?",
        dag_id,
        run_id,
        task_id,
        map_index,
    )
    workload = f"workload_id={uuid.UUID(str(ti_id))}"  # SQLite keeps the id without dashes
    log = (deployment.home / "scheduler.log").read_text(errors="replace")
    return sum(1 for line in log.splitlines() if "Workload finished" in line and workload in line)


def run_single(deployment: Deployment, generation_seconds: float) -> tuple[str, str, str]:
    """Run the one-video DAG to success; its DAG id, run id and video URL."""
    deployment.emulator("reset", {})
    deployment.emulator("rules", {"prompt_contains": "quick", "generation_seconds": generation_seconds})
    dag_id = "grok_deploy_single"
    run_id = deployment.trigger(dag_id)
    assert deployment.finish(dag_id, run_id) == "success", deployment.logs()
    video_id = deployment.xcom(dag_id, run_id, "create", -1)
    return dag_id, run_id, f"{deployment.emulator_url}/videos/{video_id}.mp4"


def test_a_deferred_wait_starts_and_ends_in_the_triggerer(deployment: Deployment) -> None:
    dag_id, run_id, video_url = run_single(deployment, generation_seconds=4)
    # The trigger pushed what the worker would have: the URL, its key and the extra link's.
    assert deployment.xcom(dag_id, run_id, "wait", -1) == video_url
    assert deployment.xcom(dag_id, run_id, "wait", -1, key="video_url") == video_url
    assert deployment.xcom(dag_id, run_id, "wait", -1, key="_link_GrokVideoLink") == video_url
    assert deployment.xcom(dag_id, run_id, "use", -1) == video_url  # downstream got it
    # The sensor never ran on a worker: it started in the triggerer (its video task id, the create's
    # output, rendered there) and its success ended it there.
    wait_for(lambda: worker_runs(deployment, dag_id, run_id, "use") == 1, 30, "the use task's workload log")
    assert worker_runs(deployment, dag_id, run_id, "create") == 1
    assert worker_runs(deployment, dag_id, run_id, "wait") == 0, deployment.logs()
    assert deployment.states(dag_id, run_id, "wait") == {-1: "success"}


# Each deferrable sensor of this DAG (tests/deploy_dags) and the create whose video it must read,
# by (sensor, map index) -> (create, map index): every pattern in which a sensor starts in the triggerer.
PATTERNS = "grok_deploy_start_patterns"
PATTERN_VIDEOS = 3
PATTERN_WAITS = {
    ("wait", -1): ("create", -1),
    ("nested.wait", -1): ("create", -1),
    **{("waits", i): ("creates", i) for i in range(PATTERN_VIDEOS)},
    **{
        (f"one_video.{wait}", i): ("one_video.create", i)
        for wait in ("wait", "nested.wait")
        for i in range(PATTERN_VIDEOS)
    },
    **{("one_video.wait_outside", i): ("create", -1) for i in range(PATTERN_VIDEOS)},
}


def test_every_sensor_that_starts_in_the_triggerer_reads_its_own_video(deployment: Deployment) -> None:
    deployment.emulator("reset", {})
    deployment.emulator("rules", {"prompt_contains": "quick", "generation_seconds": 3})
    run_id = deployment.trigger(PATTERNS)
    assert deployment.finish(PATTERNS, run_id) == "success", deployment.logs()
    assert deployment.emulator("stats")["accepted_creates"] == 1 + 2 * PATTERN_VIDEOS
    url = f"{deployment.emulator_url}/videos/{{}}.mp4"
    read = {wait: deployment.xcom(PATTERNS, run_id, *wait) for wait in PATTERN_WAITS}
    expected = {
        wait: url.format(deployment.xcom(PATTERNS, run_id, *create)) for wait, create in PATTERN_WAITS.items()
    }
    assert read == expected
    assert len({read[("one_video.wait", i)] for i in range(PATTERN_VIDEOS)}) == PATTERN_VIDEOS
    # Every one of them started (and ended) in the triggerer: no worker ran a sensor.
    creates = {create for create in PATTERN_WAITS.values()}
    wait_for(
        lambda: all(worker_runs(deployment, PATTERNS, run_id, *create) == 1 for create in creates),
        30,
        "every create's workload log",
    )
    runs = {wait: worker_runs(deployment, PATTERNS, run_id, *wait) for wait in PATTERN_WAITS}
    assert runs == dict.fromkeys(PATTERN_WAITS, 0), deployment.logs()


TOGETHER = "grok_deploy_together"
#: What Airflow's triggerer logs when its event loop was held past [triggerer]
#: blocked_main_thread_warning_threshold (0.2 s by default).
BLOCKED = "Triggerer's async thread was blocked"


def log_times(text: str, event: str) -> list[str]:
    """The ISO timestamps (to the microsecond) of the log lines, console or JSON, that contain ``event``."""
    stamps = (re.search(r"\d{4}-\d\d-\d\dT[\d:.]+Z", line) for line in text.splitlines() if event in line)
    return [stamp.group(0) for stamp in stamps if stamp]


def test_waits_starting_together_do_not_block_the_triggerer(deployment: Deployment) -> None:
    # The create ends and the scheduler defers its 100 sensors at once, straight to the triggerer
    # (issue 25: 1,000 waits starting together held the triggerer's loop for up to 0.94 s). Airflow's
    # own watchdog is the check, once every trigger has started: while the triggerer starts them it
    # blocks on its own (each start-from-trigger workload carries the serialized DAG, and the
    # video task id's template is rendered with a synchronous XCom pull in the event loop; a run
    # with 200 such sensors was blocked 1.34 s before the first of them had started), so only the
    # waits' own work counts: their first queries (10-20 s after each start), the connection
    # lookup they share, the answers, and the successes that end the tasks in the triggerer.
    deployment.emulator("reset", {})
    deployment.emulator("rules", {"prompt_contains": "a fox for everyone", "generation_seconds": 30})
    logs = sorted(deployment.home.glob("triggerer-*.log"))
    seen = {log: log.stat().st_size for log in logs}
    run_id = deployment.trigger(TOGETHER)
    assert deployment.finish(TOGETHER, run_id, timeout=600) == "success", deployment.logs()
    states = {deployment.states(TOGETHER, run_id, f"wait_{i}")[-1] for i in range(TOGETHER_WAITS)}
    assert states == {"success"}
    written = "".join(log.read_bytes()[seen[log] :].decode(errors="replace") for log in logs)
    runs = deployment.home / "logs" / f"dag_id={TOGETHER}" / f"run_id={run_id}"
    texts = [log.read_text(errors="replace") for log in runs.glob("task_id=wait_*/*trigger*.log")]
    started = sorted(t for text in texts for t in log_times(text, " starting"))
    assert len(started) == TOGETHER_WAITS, started
    queries = deployment.emulator("requests")
    assert len([q for q in queries if q["method"] == "GET"]) >= TOGETHER_WAITS  # each wait queried
    blocked = [t for t in log_times(written, BLOCKED) if t > started[-1]]
    assert blocked == [], (started[0], started[-1], log_times(written, BLOCKED))


TAKEOVER = "grok_deploy_takeover"


def test_waits_a_new_triggerer_takes_over_together_do_not_block_it(deployment: Deployment) -> None:
    # The start-up window itself: 20 waits, deferred from their workers, all alive in one triggerer,
    # which dies; the next one takes every wait at once. These start without Airflow's own start-up
    # work in the event loop (that of waits started in the triggerer, above), each resuming from the
    # answer its create read. From the first wait the new triggerer starts, Airflow's watchdog must
    # see no block: the shared lookup, the first queries, the answers and the tasks ended there.
    deployment.emulator("reset", {})
    deployment.emulator("rules", {"prompt_contains": "taken over", "generation_seconds": 60})
    run_id = deployment.trigger(TAKEOVER)

    def all_deferred() -> bool:
        states = deployment.states(TAKEOVER, run_id, "make")
        return len(states) == TAKEOVER_WAITS and set(states.values()) == {"deferred"}

    wait_for(all_deferred, 240, f"{TAKEOVER_WAITS} deferred waits", every=1)
    for name in [name for name in deployment.processes if name.startswith("triggerer")]:
        deployment.kill(name)
    spawned = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # as log_times reads them
    taking_over = f"triggerer-takeover-{uuid.uuid4().hex[:6]}"
    deployment.spawn_triggerer(taking_over)
    assert deployment.finish(TAKEOVER, run_id, timeout=600) == "success", deployment.logs()
    assert deployment.emulator("stats")["accepted_creates"] == TAKEOVER_WAITS
    runs = deployment.home / "logs" / f"dag_id={TAKEOVER}" / f"run_id={run_id}"
    texts = [log.read_text(errors="replace") for log in runs.glob("task_id=make/**/*trigger*.log")]
    taken_over = sorted(t for text in texts for t in log_times(text, " starting") if t > spawned)
    assert len(taken_over) == TAKEOVER_WAITS, taken_over  # the new triggerer started every wait
    written = (deployment.home / f"{taking_over}.log").read_text(errors="replace")
    blocked = [t for t in log_times(written, BLOCKED) if t >= taken_over[0]]
    assert blocked == [], (taken_over[0], taken_over[-1], log_times(written, BLOCKED))


def test_a_kept_video_triggers_the_dag_scheduled_on_it(deployment: Deployment) -> None:
    deployment.emulator("reset", {})
    deployment.emulator("rules", {"prompt_contains": "Waves", "generation_seconds": 2})
    run_id = deployment.trigger("grok_video_keep")
    assert deployment.finish("grok_video_keep", run_id) == "success", deployment.logs()
    video_id = deployment.xcom("grok_video_keep", run_id, "make_video", -1)

    def downstream_run() -> str | None:
        rows = deployment.query("SELECT run_id FROM dag_run WHERE dag_id='grok_video_on_kept'")
        return str(rows[0][0]) if rows else None

    on_kept = wait_for(downstream_run, 120, "the DAG scheduled on the kept video to run", every=1)
    assert deployment.finish("grok_video_on_kept", on_kept) == "success", deployment.logs()
    [kept] = deployment.xcom("grok_video_on_kept", on_kept, "describe", -1)
    stored = deployment.home / "videos" / f"{run_id}.mp4"
    assert kept["uri"] == f"file://{stored}" and kept["bytes"] == stored.stat().st_size
    assert kept["video_task_id"] == video_id and kept["seconds"] == 10
    assert kept["prompt"].startswith("Waves") and kept["source_url_expires_at"]


def test_connection_form_in_a_real_browser(deployment: Deployment, browser_page: Any) -> None:
    page = browser_page
    page.goto(f"http://127.0.0.1:{deployment.api_port}/connections", wait_until="networkidle")
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.locator("[role=dialog]")
    dialog.get_by_role("combobox").click()
    page.keyboard.type("Grok Video")
    page.get_by_role("option", name="Grok Video").click()
    dialog.get_by_text("API Key").wait_for()
    page.screenshot(path=str(ARTIFACTS / "connection-form.png"))
    text = dialog.inner_text()
    assert "Base URL" in text and "API Key" in text
    for hidden in ("Login", "Port", "Schema"):
        assert hidden not in text
    placeholders = {
        i.get_attribute("name"): i.get_attribute("placeholder") for i in dialog.locator("input").all()
    }
    assert placeholders["host"] == "https://www.jimmyai.cn"
    assert placeholders["password"] == "sk_..."


def test_extra_link_opens_the_video_in_a_real_browser(deployment: Deployment, browser_page: Any) -> None:
    dag_id, run_id, video_url = run_single(deployment, generation_seconds=2)
    page = browser_page
    page.goto(
        f"http://127.0.0.1:{deployment.api_port}/dags/{dag_id}/runs/{run_id}/tasks/wait/details",
        wait_until="networkidle",
    )
    link = page.get_by_role("link", name="Grok Video")
    link.wait_for()
    page.screenshot(path=str(ARTIFACTS / "task-instance-extra-link.png"))
    assert link.get_attribute("href") == video_url


def awaiting_review(deployment: Deployment, run_id: str) -> dict[str, Any] | None:
    """The run's review that waits for an answer, as the UI's "Required actions" page lists it."""
    assert deployment.run_state(REVIEW, run_id) != "failed", deployment.logs()
    page = deployment.rest(
        "GET", f"/api/v2/dags/{REVIEW}/dagRuns/{run_id}/hitlDetails?response_received=false"
    )
    waiting = [
        detail
        for detail in page["hitl_details"]
        # Parked: awaiting_input on Airflow 3.3+, deferred to the HITL trigger before.
        if detail["task_instance"]["state"] in ("awaiting_input", "deferred")
        and scheduler_saw_it_park(deployment, run_id, detail["task_instance"]["task_id"])
    ]
    assert len(waiting) <= 1, waiting
    return waiting[0] if waiting else None


def scheduler_saw_it_park(deployment: Deployment, run_id: str, task_id: str) -> bool:
    """Whether the scheduler has handled the exit of the worker run that parked the review task.

    On Airflow 3.3.2 an answer given before that (within about a second of the task parking, which
    no person does) races it: the scheduler takes the resumed task, already queued again, for one
    that changed state under it and fails it (see docs/review.md).
    """
    finished = f"TaskInstance Finished: dag_id={REVIEW}, task_id={task_id}, run_id={run_id},"
    log = (deployment.home / "scheduler.log").read_text(errors="replace")
    return any(finished in line for line in log.splitlines())


def answer(deployment: Deployment, run_id: str, review: dict[str, Any], option: str, comment: str) -> None:
    """Answer a review as a reviewer would: one option, and the form's comment field."""
    ti = review["task_instance"]
    path = (
        f"/api/v2/dags/{REVIEW}/dagRuns/{run_id}/taskInstances/{ti['task_id']}/{ti['map_index']}/hitlDetails"
    )
    response = deployment.rest(
        "PATCH", path, {"chosen_options": [option], "params_input": {"comment": comment}}
    )
    assert response["chosen_options"] == [option] and response["params_input"] == {"comment": comment}


def created_prompts(deployment: Deployment) -> list[str]:
    """The prompt of every create the emulator received, in order."""
    return [r["json"]["prompt"] for r in deployment.emulator("requests") if r["method"] == "POST"]


def test_a_reviewer_rejects_then_approves_through_the_rest_api(deployment: Deployment) -> None:
    prompt = "A paper boat drifts down a rainy city street, cinematic"  # the DAG's default
    deployment.emulator("reset", {})
    deployment.emulator("rules", {"prompt_contains": "paper boat", "generation_seconds": 3})
    run_id = deployment.trigger(REVIEW)

    first = wait_for(lambda: awaiting_review(deployment, run_id), 300, "round 1's review", every=1)
    assert first["task_instance"]["task_id"] == "round_1.review"
    assert first["options"] == ["Approve", "Reject"] and set(first["params"]) == {"comment"}
    video_1 = deployment.xcom(REVIEW, run_id, "round_1.wait", -1)
    assert video_1.startswith(deployment.emulator_url) and f"({video_1})" in first["body"]
    assert prompt in first["body"]
    assert created_prompts(deployment) == [prompt]  # round 2 waits for the answer, buying nothing
    answer(deployment, run_id, first, "Reject", "with a red sail")

    second = wait_for(lambda: awaiting_review(deployment, run_id), 300, "round 2's review", every=1)
    assert second["task_instance"]["task_id"] == "round_2.review"
    revised = f"{prompt} with a red sail"
    assert created_prompts(deployment) == [prompt, revised]
    assert revised in second["body"]
    answer(deployment, run_id, second, "Approve", "")

    assert deployment.finish("grok_video_review", run_id) == "success", deployment.logs()
    states = {
        task_id: state
        for task_id, state in deployment.query(
            "SELECT task_id, state FROM task_instance WHERE dag_id=? AND run_id=?", REVIEW, run_id
        )
    }
    ran = {"create", "wait", "review", "decide"}
    assert states == {
        **{f"round_1.{task}": "success" for task in ran},
        "round_1.keep": "skipped",
        **{f"round_2.{task}": "success" for task in ran},
        "round_2.keep": "success",
        **{f"round_3.{task}": "skipped" for task in [*ran, "keep"]},
        "rejected_every_round": "skipped",
    }
    # Kept once, round 2's video; two videos bought, none by round 3.
    [(tries,)] = deployment.query(
        "SELECT try_number FROM task_instance WHERE dag_id=? AND run_id=? AND task_id='round_2.keep'",
        REVIEW,
        run_id,
    )
    assert tries == 1
    stored = deployment.home / "videos" / f"{run_id}.mp4"
    assert deployment.xcom(REVIEW, run_id, "round_2.keep", -1) == f"file://{stored}"
    assert stored.stat().st_size > 0
    # What was kept is round 2's video, as the asset event the keep task emitted says.
    events = deployment.query(
        "SELECT extra FROM asset_event WHERE source_dag_id=? AND source_run_id=?", REVIEW, run_id
    )
    round_2_video = deployment.xcom(REVIEW, run_id, "round_2.create", -1)
    assert events and {json.loads(extra)["video_task_id"] for (extra,) in events} == {round_2_video}
    stats = deployment.emulator("stats")
    assert stats["creates"] == 2 and stats["accepted_creates"] == 2
    assert created_prompts(deployment) == [prompt, revised]


def test_a_review_rejected_in_every_round_fails_the_run_saying_so(deployment: Deployment) -> None:
    prompt = "A paper boat drifts down a rainy city street, cinematic"
    deployment.emulator("reset", {})
    deployment.emulator("rules", {"prompt_contains": "paper boat", "generation_seconds": 3})
    run_id = deployment.trigger(REVIEW)
    comments = ["at night", "slower", "in black and white"]
    for round_number, comment in enumerate(comments, start=1):
        review = wait_for(lambda: awaiting_review(deployment, run_id), 300, "a review", every=1)
        assert review["task_instance"]["task_id"] == f"round_{round_number}.review"
        answer(deployment, run_id, review, "Reject", comment)

    assert deployment.finish("grok_video_review", run_id) == "failed", deployment.logs()
    assert deployment.states(REVIEW, run_id, "rejected_every_round") == {-1: "failed"}
    for round_number in (1, 2, 3):
        assert deployment.states(REVIEW, run_id, f"round_{round_number}.keep") == {-1: "skipped"}
    # Each rejected round's prompt carries every comment so far: three videos, the most a run buys.
    assert created_prompts(deployment) == [
        prompt,
        f"{prompt} at night",
        f"{prompt} at night slower",
    ]
    assert deployment.emulator("stats")["accepted_creates"] == 3
    [log] = (deployment.home / "logs" / f"dag_id={REVIEW}" / f"run_id={run_id}").glob(
        "task_id=rejected_every_round/attempt=1.log"
    )
    assert "All 3 videos were rejected, so none was kept" in log.read_text()
    assert f"{prompt} at night slower in black and white" in log.read_text()
    assert not (deployment.home / "videos" / f"{run_id}.mp4").exists()
