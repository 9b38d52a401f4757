"""A batch of videos bought in one task: each item once, checked first, paced, waited for together."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_grok_video.emulator import Fault, GrokVideoEmulator, Rule
from airflow_grok_video.triggers.grok_video_batch import BatchPayload, GrokVideoBatchTrigger
from tests.test_caps import capped_connection, sqlite_store
from tests.test_dags import run_dag, states
from tests.test_durable import needs_state_store, tries

pytestmark = pytest.mark.usefixtures("airflow_db")


def results(run: Any) -> list[dict[str, Any]]:
    [ti] = run.get_task_instances()
    return ti.xcom_pull(task_ids="batch")  # type: ignore[no-any-return]


def purchases(run: Any) -> list[dict[str, Any]]:
    [ti] = run.get_task_instances()
    return ti.xcom_pull(task_ids="batch", key="purchase")  # type: ignore[no-any-return]


def video_of(emulator: GrokVideoEmulator, prompt: str) -> str:
    """The one video the emulator made for ``prompt``."""
    [video] = [task.task_id for task in emulator.tasks.values() if task.prompt == prompt]
    return video


@pytest.mark.parametrize("mode", ["worker", "deferred"])
def test_each_item_is_bought_once_and_its_result_returned_in_input_order(
    emulator: GrokVideoEmulator, mode: str
) -> None:
    items = ["a fox 0", {"prompt": "a fox 1", "duration": 15, "orientation": "portrait"}, "a fox 2"]
    emulator.add_rule(Rule(prompt_contains="fox 0", generation_seconds=2.0))  # ends last
    run = run_dag(f"grok_test_batch_{mode}", items=items)
    assert states(run) == {"batch": "success"}
    assert emulator.creates == 3
    prompts = ["a fox 0", "a fox 1", "a fox 2"]
    assert [(r["index"], r["status"], r["video_task_id"]) for r in results(run)] == [
        (i, "success", video_of(emulator, prompt)) for i, prompt in enumerate(prompts)
    ]
    assert [r["video_url"] for r in results(run)] == [
        f"{emulator.base_url}/videos/{video_of(emulator, prompt)}.mp4" for prompt in prompts
    ]
    by_prompt = {task.prompt: task for task in emulator.tasks.values()}
    assert (by_prompt["a fox 1"].duration, by_prompt["a fox 1"].ratio) == (15, "9:16")
    assert [(p["index"], p["seconds"], p["reattached"]) for p in purchases(run)] == [
        (0, 10, False),
        (1, 15, False),
        (2, 10, False),
    ]


@pytest.mark.parametrize(
    ("items", "named"),
    [
        (["a fox", {"prompt": "a fox", "duration": 12}], "items[1].duration=12"),
        (["a fox", {"prompt": "a fox", "colour": "red"}], "items[1].colour='red'"),
        (["a fox", "  "], "items[1].prompt='  '"),
        (["a fox", 7], "items[1]=7"),
        ([], "items=[]"),
    ],
)
def test_every_item_is_checked_before_the_first_is_bought(
    emulator: GrokVideoEmulator, capfd: pytest.CaptureFixture[str], items: list[Any], named: str
) -> None:
    run = run_dag("grok_test_batch_worker", items=items)
    assert states(run) == {"batch": "failed"}
    assert emulator.requests == []
    out, err = capfd.readouterr()
    assert f"Invalid {named}" in out + err


def test_a_failed_item_fails_the_batch_naming_it_and_the_apis_message(
    emulator: GrokVideoEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    emulator.add_rule(Rule(prompt_contains="doomed", outcome="failed", error_message="content policy"))
    run = run_dag("grok_test_batch_worker", items=["a fox", "a doomed fox"])
    assert states(run) == {"batch": "failed"}
    assert emulator.creates == 2
    out, err = capfd.readouterr()
    doomed = video_of(emulator, "a doomed fox")
    assert f"1 of 2 videos succeeded, 2 needed; item 1 (video {doomed}): failed: content policy" in out + err


def test_min_success_lets_a_batch_succeed_with_its_failures_reported(emulator: GrokVideoEmulator) -> None:
    emulator.add_rule(Rule(prompt_contains="doomed", outcome="failed", error_message="content policy"))
    run = run_dag("grok_test_batch_some_may_fail", items=["a fox", "a doomed fox"])
    assert states(run) == {"batch": "success"}
    assert [(r["status"], r["error"]) for r in results(run)] == [
        ("success", None),
        ("failed", "content policy"),
    ]


@needs_state_store
@pytest.mark.parametrize(
    ("dag_id", "creates"), [("grok_test_batch_retry", 2), ("grok_test_batch_retry_rebuy", 3)]
)
def test_a_retry_reattaches_to_every_video_and_buys_a_failed_one_again_only_if_asked(
    emulator: GrokVideoEmulator, dag_id: str, creates: int
) -> None:
    # Try 1 buys both and is killed (execution_timeout 2 s) while the slow one is still processing;
    # the doomed one has failed by then. Try 2 reattaches to both.
    emulator.add_rule(Rule(prompt_contains="slow", generation_seconds=3.5, times=1))
    emulator.add_rule(Rule(prompt_contains="doomed", outcome="failed", generation_seconds=0.3))
    run = run_dag(dag_id, items=["a slow fox", "a doomed fox"])
    assert states(run) == {"batch": "success"}
    assert tries(run, "batch") == {-1: 2}
    assert emulator.creates == creates
    [slow, doomed] = results(run)
    assert (slow["status"], slow["reattached"], doomed["status"]) == ("success", True, "failed")
    assert slow["video_task_id"] == video_of(emulator, "a slow fox")
    assert doomed["reattached"] is (creates == 2)


def test_a_429_pauses_every_create_of_the_batch_for_its_retry_after(emulator: GrokVideoEmulator) -> None:
    # Two creates in flight at once; the first is answered with a 429 asking for 1 s, every other
    # create takes 0.4 s. Without a shared pause, the other thread would send its next item 0.4 s
    # after the 429, when its first is answered; with it, nothing is sent until the second has passed.
    # (The first 0.25 s are left out: the gate closes only once the client has read the 429.)
    emulator.inject(Fault("status", status=429, retry_after=1, method="POST"))
    emulator.inject(Fault("slow", delay=0.4, method="POST", times=10))
    run = run_dag("grok_test_batch_paced", items=[f"a fox {i}" for i in range(4)])
    assert states(run) == {"batch": "success"}
    assert emulator.accepted_creates == 4
    posts = [request for request in emulator.requests if request.method == "POST"]
    [limited] = [request for request in posts if request.status == 429]
    during = [r for r in posts if limited.time + 0.25 < r.time < limited.time + 0.9]
    assert during == [], [(r.status, round(r.time - limited.time, 3)) for r in posts]


def test_a_batch_larger_than_its_run_cap_buys_nothing(
    emulator: GrokVideoEmulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    sqlite_store(monkeypatch, tmp_path / "spend.db")
    capped_connection(monkeypatch, emulator.base_url, {"videos_per_day": 100})
    run = run_dag("grok_test_batch_capped")  # videos_per_run=2, three items
    assert states(run) == {"batch": "failed"}
    assert emulator.requests == []
    out, err = capfd.readouterr()
    assert "asks for 3 videos in this DAG run (3 > 2), so none of the batch is bought" in out + err


def test_a_daily_cap_buys_up_to_the_cap_and_reports_the_rest_refused(
    emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sqlite_store(monkeypatch, tmp_path / "spend.db")
    capped_connection(monkeypatch, emulator.base_url, {"videos_per_day": 2})
    run = run_dag("grok_test_batch_some_may_fail")  # min_success=1, three items
    assert states(run) == {"batch": "success"}
    assert emulator.creates == 2
    statuses = [r["status"] for r in results(run)]
    assert sorted(statuses) == ["refused", "success", "success"]
    [refused] = [r for r in results(run) if r["status"] == "refused"]
    assert "videos_per_day=2" in refused["error"] and refused["video_task_id"] is None


def test_signed_urls_stay_out_of_the_trigger_and_its_logs(
    emulator: GrokVideoEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    emulator.add_rule(Rule(prompt_contains="fox", url_query="signature=SECRET-SIG"))
    run = run_dag("grok_test_batch_deferred")
    assert states(run) == {"batch": "success"}
    assert all(r["video_url"].endswith("?signature=SECRET-SIG") for r in results(run))
    out, err = capfd.readouterr()
    assert "Batch item 0" in out + err
    assert "SECRET-SIG" not in out + err
    signed = {"index": 0, "status": "success", "video_task_id": "v1", "video_url": "https://x/v.mp4?sig=S3"}
    trigger = GrokVideoBatchTrigger([signed], "grok_video_default", poll_interval=1, end_time=0)
    assert "S3" not in repr(trigger) and "S3" not in repr(
        BatchPayload({"status": "done", "results": [signed]})
    )


def test_the_taskflow_batch_buys_what_its_function_returns(emulator: GrokVideoEmulator) -> None:
    emulator.add_rule(Rule(prompt_contains="doomed", outcome="failed", error_message="content policy"))
    run = run_dag("grok_test_batch_taskflow")
    [ti] = run.get_task_instances()
    assert str(ti.state) == "success"
    returned = ti.xcom_pull(task_ids="nightly")
    assert [(r["status"], r["error"]) for r in returned] == [
        ("success", None),
        ("success", None),
        ("failed", "content policy"),
    ]
    assert sorted((task.prompt, task.duration) for task in emulator.tasks.values()) == [
        ("a doomed fox", 10),
        ("a fox and hares", 15),
        ("a fox and owls", 15),
    ]


def test_the_batch_example_runs_end_to_end(emulator: GrokVideoEmulator) -> None:
    run = run_dag("grok_video_batch")
    assert states(run) == {"nightly": "success", "publish": "success"}
    assert emulator.creates == 4
    [publish] = [ti for ti in run.get_task_instances() if ti.task_id == "publish"]
    urls = publish.xcom_pull(task_ids="publish")
    assert sorted(urls) == sorted(f"{emulator.base_url}/videos/{video}.mp4" for video in emulator.tasks)


def test_one_wait_per_video_length_goes_first_and_the_others_query_once_it_ends(
    emulator: GrokVideoEmulator,
) -> None:
    # Eight videos of one length, bought together: the scout (the first bought, so the first
    # queried) follows the adaptive schedule; the others make no query until it has ended, and one
    # then finds each that is done.
    # Without the scout each would query at the floor, find its video processing, and query again.
    # (How many are done by then depends on how far apart a loaded machine sent the creates.)
    emulator.add_rule(Rule(prompt_contains="fox", generation_seconds=3.0))
    run = run_dag("grok_test_batch_deferred", items=[f"a fox {i}" for i in range(8)])
    assert states(run) == {"batch": "success"}
    times = query_times(emulator)
    scout = min(times, key=lambda video: times[video][0])
    scout_ended = times.pop(scout)[-1]
    assert all(min(seen) >= scout_ended for seen in times.values()), (scout_ended, times)
    done_when_asked = {
        video: len(seen) for video, seen in times.items() if seen[0] >= emulator.tasks[video].done_at
    }
    assert done_when_asked and set(done_when_asked.values()) == {1}, (done_when_asked, times)


def test_a_video_bought_later_than_the_scout_waits_as_much_longer_before_its_query(
    emulator: GrokVideoEmulator,
) -> None:
    # One create at a time, each answered 0.6 s late: the five videos are bought 0.6 s apart, so the
    # last is done 2.4 s after the scout's. Each other video waits, after the scout has ended, as long
    # as it was bought after the scout's, so its one query finds it done. Waiting only for the scout,
    # the later videos would be queried at once, still generating, and queried again.
    emulator.add_rule(Rule(prompt_contains="fox", generation_seconds=3.0))
    emulator.inject(Fault("slow", delay=0.6, method="POST", times=5))
    run = run_dag("grok_test_batch_deferred_one_at_a_time", items=[f"a fox {i}" for i in range(5)])
    assert states(run) == {"batch": "success"}
    times = query_times(emulator)
    [scout] = [video for video, task in emulator.tasks.items() if task.prompt == "a fox 0"]
    times.pop(scout)
    late = {video: seen for video, seen in times.items() if seen[0] < emulator.tasks[video].done_at}
    assert late == {} and {len(seen) for seen in times.values()} == {1}, times
    assert [r["status"] for r in results(run)] == ["success"] * 5
    assert all("created" not in r for r in results(run))  # when each was bought is the trigger's only


def query_times(emulator: GrokVideoEmulator) -> dict[str, list[float]]:
    """When each video was queried, by video task id."""
    queries = [request for request in emulator.requests if request.method == "GET"]
    return {video: [q.time for q in queries if video in q.path] for video in emulator.tasks}
