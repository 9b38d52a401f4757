"""A batch of videos in one task, in a real Airflow (api-server, scheduler, dag-processor, triggerer)."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from typing import Any

import pytest

from tests.deploy_dags.grok_deploy_batch import BATCH_IN_FLIGHT, BATCH_PROMPTS, BATCH_VIDEOS
from tests.deployment import Deployment, wait_for
from tests.test_deployment import worker_runs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
BATCH = "grok_deploy_batch"
KILLED = "grok_deploy_batch_killed"
CREATE_PATH = "/api/open-api/v1/grok/videos"
#: What the batch's trigger logs when it ends the task itself.
ENDS_HERE = "Every result is in: the task ends here, without going back to a worker"


def creates_sent(deployment: Deployment) -> list[dict[str, Any]]:
    """Every create request the emulator received, oldest first."""
    return [r for r in deployment.emulator("requests") if r["method"] == "POST" and r["path"] == CREATE_PATH]


def video_by_prompt(deployment: Deployment) -> dict[str, str]:
    """
    The video the emulator made for each prompt.

    The emulator accepts a create and records its request in one step of its event loop, so its
    accepted creates (the video ids of ``stats``, in order of acceptance) and the accepted requests
    (in order of arrival) pair one to one.
    """
    accepted = [r["json"]["prompt"] for r in creates_sent(deployment) if r["status"] == 200]
    videos = list(deployment.emulator("stats")["tasks"])
    assert len(accepted) == len(videos)
    assert len(set(accepted)) == len(accepted), Counter(accepted).most_common(3)  # none bought twice
    return dict(zip(accepted, videos, strict=True))


def url(deployment: Deployment, video_id: str) -> str:
    return f"{deployment.emulator_url}/videos/{video_id}.mp4"


def trigger_log(deployment: Deployment, dag_id: str, run_id: str) -> str:
    """What the batch's trigger logged (in the task's log files)."""
    folder = deployment.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / "task_id=batch"
    return "".join(log.read_text(errors="replace") for log in sorted(folder.glob("*trigger*.log")))


def test_a_deferred_batch_buys_each_video_once_and_ends_in_the_triggerer(deployment: Deployment) -> None:
    deployment.emulator("reset", {})
    deployment.emulator("rules", {"prompt_contains": "batch fox", "generation_seconds": 4})
    run_id = deployment.trigger(BATCH)
    assert deployment.finish(BATCH, run_id, timeout=240) == "success", deployment.logs()
    stats = deployment.emulator("stats")
    assert stats["creates"] == stats["accepted_creates"] == BATCH_VIDEOS
    assert set(stats["tasks"].values()) == {"completed"}
    video_of = video_by_prompt(deployment)
    assert sorted(video_of) == sorted(BATCH_PROMPTS)
    # One result per item, in input order, each with its own prompt's video.
    results = deployment.xcom(BATCH, run_id, "batch", -1)
    assert results == [
        {
            "index": index,
            "status": "success",
            "video_task_id": video_of[prompt],
            "video_url": url(deployment, video_of[prompt]),
            "error": None,
            "reattached": False,
            "seconds": 10,
        }
        for index, prompt in enumerate(BATCH_PROMPTS)
    ]
    # The batch trigger that ended the task recorded each item's outcome (tests/test_outcome.py).
    assert deployment.xcom(BATCH, run_id, "batch", -1, key="video_outcome") == [
        {k: r[k] for k in ("index", "video_task_id", "status", "video_url")} for r in results
    ]
    purchases = deployment.xcom(BATCH, run_id, "batch", -1, key="purchase")
    assert [(p["index"], p["prompt"], p["video_task_id"], p["reattached"]) for p in purchases] == [
        (index, prompt, video_of[prompt], False) for index, prompt in enumerate(BATCH_PROMPTS)
    ]
    # One worker run (the creates); the wait deferred, and the trigger ended the task.
    wait_for(lambda: worker_runs(deployment, BATCH, run_id, "batch") >= 1, 30, "the workload log")
    assert worker_runs(deployment, BATCH, run_id, "batch") == 1, deployment.logs()
    logged = trigger_log(deployment, BATCH, run_id)
    assert ENDS_HERE in logged
    for index, prompt in enumerate(BATCH_PROMPTS):
        assert f"Batch item {index} (video {video_of[prompt]}): success" in logged


def test_a_worker_killed_mid_creates_retries_buying_only_what_was_never_sent(deployment: Deployment) -> None:
    """
    SIGKILL the worker while the batch's creates are in flight; the retry buys nothing twice.

    Each create is answered 3 s after the emulator accepted (and billed) it, so the batch's
    ``max_in_flight`` creates are in flight most of the time. The worker is killed once the
    emulator has accepted more than one round of creates and every one of the batch's threads has
    a create in flight (sent less than 2.5 s before: none is between two creates). The retry
    reattaches to every video whose id the first try learned (and recorded in its ledger), buys
    the items never sent, and reports ``uncertain`` the items whose create was in flight at the
    kill, without buying them again. That is as far as anyone can go: the API takes no idempotency
    key, so a create in flight when its worker dies may have been billed (here it was, and the
    emulator says so) without its id ever being known; the task cannot find that video, and does
    not pay twice. ``min_success`` lets the run succeed with those items reported.
    """
    deployment.emulator("reset", {})
    deployment.emulator("rules", {"prompt_contains": "batch fox", "generation_seconds": 4})
    deployment.emulator(
        "faults",
        {"kind": "slow", "delay": 3, "method": "POST", "path_prefix": CREATE_PATH, "times": 2 * BATCH_VIDEOS},
    )
    run_id = deployment.trigger(KILLED)

    def mid_creates() -> int | None:
        rows = deployment.query(
            "SELECT pid, state FROM task_instance WHERE dag_id=? AND run_id=? AND task_id='batch'",
            KILLED,
            run_id,
        )
        if not rows or rows[0][1] != "running" or not rows[0][0]:
            return None
        sent = creates_sent(deployment)
        in_flight = [r for r in sent if time.time() - r["time"] < 2.5]
        if BATCH_IN_FLIGHT < len(sent) <= 2 * BATCH_IN_FLIGHT and len(in_flight) == BATCH_IN_FLIGHT:
            return int(rows[0][0])
        return None

    pid = wait_for(mid_creates, 180, "the batch to have a second round of creates in flight", every=0.2)
    killed_at = time.time()
    os.kill(pid, signal.SIGKILL)
    assert deployment.finish(KILLED, run_id, timeout=300) == "success", deployment.logs()
    [(try_number,)] = deployment.query(
        "SELECT try_number FROM task_instance WHERE dag_id=? AND run_id=? AND task_id='batch'", KILLED, run_id
    )
    assert try_number == 2

    sent = creates_sent(deployment)
    before = {r["json"]["prompt"] for r in sent if r["time"] < killed_at}
    assert BATCH_IN_FLIGHT < len(before) <= 2 * BATCH_IN_FLIGHT
    video_of = video_by_prompt(deployment)  # also: no prompt was sent twice
    stats = deployment.emulator("stats")
    assert stats["creates"] == stats["accepted_creates"] == len(sent)
    results = deployment.xcom(KILLED, run_id, "batch", -1)
    assert [r["index"] for r in results] == list(range(BATCH_VIDEOS))
    uncertain = [r for r in results if r["status"] != "success"]
    assert {r["status"] for r in uncertain} == {"uncertain"}
    # Exactly the creates in flight at the kill: bought by try 1, their ids never learned.
    assert len(uncertain) == BATCH_IN_FLIGHT, results
    for result, prompt in zip(results, BATCH_PROMPTS, strict=True):
        if result["status"] == "success":
            # Its own video: reattached to if try 1 bought it, else bought by the retry.
            assert result["video_task_id"] == video_of[prompt]
            assert result["video_url"] == url(deployment, video_of[prompt])
            assert result["reattached"] is (prompt in before)
        else:
            assert result["video_task_id"] is None and result["video_url"] is None
            assert "a video may have been created and billed" in result["error"]
            assert prompt in before  # sent by try 1 (and accepted), never again
    # Every video the emulator made is in the results, except the uncertain items' own.
    delivered = {r["video_task_id"] for r in results if r["status"] == "success"}
    assert len(delivered) == BATCH_VIDEOS - BATCH_IN_FLIGHT
    assert len(delivered) == stats["accepted_creates"] - len(uncertain)
    assert set(video_of.values()) - delivered == {video_of[BATCH_PROMPTS[r["index"]]] for r in uncertain}
    purchases = deployment.xcom(KILLED, run_id, "batch", -1, key="purchase")
    assert sorted(p["video_task_id"] for p in purchases) == sorted(delivered)


def test_a_triggerer_killed_during_the_batch_wait_hands_it_to_another(deployment: Deployment) -> None:
    deployment.emulator("reset", {})
    deployment.emulator("rules", {"prompt_contains": "batch fox", "generation_seconds": 20})
    run_id = deployment.trigger(BATCH)

    def waiting_in_a_triggerer() -> bool:
        rows = deployment.query(
            "SELECT ti.state, t.triggerer_id FROM task_instance ti JOIN trigger t ON ti.trigger_id = t.id "
            "WHERE ti.dag_id=? AND ti.run_id=? AND ti.task_id='batch'",
            BATCH,
            run_id,
        )
        return bool(rows) and rows[0][0] == "deferred" and rows[0][1] is not None

    wait_for(waiting_in_a_triggerer, 180, "the batch's wait to run in the triggerer")
    time.sleep(2)  # its first queries
    stats = deployment.emulator("stats")
    assert stats["accepted_creates"] == BATCH_VIDEOS
    assert "completed" not in stats["tasks"].values()  # every video is still being made
    [old] = [name for name in deployment.processes if name.startswith("triggerer-")]
    deployment.kill(old)
    deployment.spawn_triggerer(f"triggerer-{len(list(deployment.home.glob('triggerer-*.log'))) + 1}")

    assert deployment.finish(BATCH, run_id, timeout=300) == "success", deployment.logs()
    stats = deployment.emulator("stats")
    assert stats["creates"] == stats["accepted_creates"] == BATCH_VIDEOS  # nothing bought again
    video_of = video_by_prompt(deployment)
    results = deployment.xcom(BATCH, run_id, "batch", -1)
    assert [(r["index"], r["status"], r["video_url"]) for r in results] == [
        (index, "success", url(deployment, video_of[prompt])) for index, prompt in enumerate(BATCH_PROMPTS)
    ]
    # The new triggerer ended the task too: still one worker run.
    assert worker_runs(deployment, BATCH, run_id, "batch") == 1, deployment.logs()
