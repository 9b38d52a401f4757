"""The operator and sensor in real Airflow runs: the example DAGs, every sensor mode, failures, timeouts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG

from airflow_grok_video.emulator import GrokVideoEmulator, Rule
from airflow_grok_video.exceptions import GrokVideoGenerationFailed
from airflow_grok_video.hooks.grok_video import GrokVideoHook
from airflow_grok_video.sensors.grok_video import GrokVideoSensor
from tests.conftest import DAGS_FOLDER, conn_json

pytestmark = pytest.mark.usefixtures("airflow_db")


@cache
def dag_bag() -> Any:
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow < 3.2
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert not bag.import_errors, bag.import_errors
    return bag


def run_dag(dag_id: str, **run_conf: Any) -> Any:
    """Run a DAG with ``dag.test()``: its declared params, with ``run_conf`` over them."""
    dag: DAG = dag_bag().dags[dag_id]
    # dag.test() keeps a run's conf in the DAG's params, and the DAG bag is shared by the tests of a
    # process: pass every param, from its declared default unless given, so no run sees another's.
    return dag.test(run_conf={**declared_params(dag_id), **run_conf} or None)


@cache
def declared_params(dag_id: str) -> dict[str, Any]:
    """The DAG's params as its file declares them (read before any run of it in this process)."""
    return dict(dag_bag().dags[dag_id].params)


def states(run: Any) -> dict[str, str]:
    return {
        (ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"): str(ti.state)
        for ti in run.get_task_instances()
    }


def xcom(run: Any, task_id: str) -> Any:
    [ti] = [ti for ti in run.get_task_instances() if ti.task_id == task_id]
    return ti.xcom_pull(task_ids=task_id)


def test_example_dag_deferred_end_to_end(emulator: GrokVideoEmulator) -> None:
    run = run_dag("grok_video_example")
    assert states(run) == {"create_video": "success", "wait_for_video": "success", "use_video": "success"}
    [task_id] = list(emulator.tasks)
    assert xcom(run, "create_video") == task_id
    assert xcom(run, "use_video") == f"{emulator.base_url}/videos/{task_id}.mp4"
    assert emulator.creates == 1


def test_dag_test_runs_share_one_in_process_execution_api(
    emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The suite's cost: each Execution API app built costs 1-2 s of CPU (conftest.py says why)."""
    from airflow.api_fastapi.execution_api import app

    built: list[object] = []
    build = app.create_task_execution_api_app

    def counted(**kwargs: Any) -> Any:
        built.append(kwargs)
        return build(**kwargs)

    monkeypatch.setattr(app, "create_task_execution_api_app", counted)
    for _ in range(2):  # three tasks each, one of them deferred to a trigger
        run = run_dag("grok_video_example")
        assert set(states(run).values()) == {"success"}
    assert len(built) <= 1  # the first run of the session builds it; one per task and trigger otherwise


def test_fan_out_example_maps_one_video_per_prompt(emulator: GrokVideoEmulator) -> None:
    from dags.grok_video_fan_out import PROMPTS

    run = run_dag("grok_video_fan_out")
    assert set(states(run).values()) == {"success"}
    assert emulator.creates == len(PROMPTS)
    urls = xcom(run, "collect")
    assert sorted(urls) == sorted(f"{emulator.base_url}/videos/{t}.mp4" for t in emulator.tasks)
    assert sorted(r.json["prompt"] for r in emulator.requests if r.method == "POST") == sorted(PROMPTS)


# A generation time that outlasts the gap between the create task and the sensor's first look, for the
# tests that need the video still running then (a deferrable sensor defers only then): the emulator's
# 1.2 s is shorter than that gap in dag.test() on Airflow 3.1 and 3.2 (measured 1.3 to 1.5 s, and
# 7 s with both minors' suites running side by side on a busy 2-core machine).
OUTLASTS_FIRST_LOOK = 10.0


@pytest.mark.parametrize("mode", ["poke", "reschedule", "deferrable"])
def test_sensor_modes_return_the_url(emulator: GrokVideoEmulator, mode: str) -> None:
    if mode == "deferrable":  # twice the usual margin: it asserts that the trigger, not the look, saw
        # the end, and on 3.2 beside 3.1 (both suites on 2 cores) the look came more than 10 s late
        emulator.add_rule(Rule(prompt_contains="fox", generation_seconds=2 * OUTLASTS_FIRST_LOOK))
    run = run_dag(f"grok_test_{mode}")
    assert states(run) == {"create": "success", "wait": "success"}
    [task_id] = list(emulator.tasks)
    assert xcom(run, "wait") == f"{emulator.base_url}/videos/{task_id}.mp4"
    [wait] = [ti for ti in run.get_task_instances() if ti.task_id == "wait"]
    assert wait.xcom_pull(task_ids="wait", key="video_url") == xcom(run, "wait")
    # The "Grok Video" extra link: Airflow stores what get_link returned for the UI to show.
    assert wait.xcom_pull(task_ids="wait", key="_link_GrokVideoLink") == xcom(run, "wait")
    assert emulator.creates == 1
    # Every request names the provider and its version; deferred, the sensor looks once from the
    # worker (requests), then the trigger polls with aiohttp in the triggerer; otherwise the worker
    # polls with requests.
    from airflow_grok_video import __version__

    agents = [r.user_agent.split() for r in emulator.requests]
    assert {agent[0] for agent in agents} == {f"airflow-provider-grok-video/{__version__}"}
    clients = [r.user_agent.split()[-1].split("/")[0] for r in emulator.requests if r.method == "GET"]
    if mode == "deferrable":
        assert clients[0] == "python-requests" and set(clients[1:]) == {"aiohttp"}
    else:
        assert set(clients) == {"python-requests"}


@pytest.mark.parametrize("mode", ["poke", "deferrable"])
def test_failed_generation_fails_the_sensor_without_retry(emulator: GrokVideoEmulator, mode: str) -> None:
    emulator.add_rule(Rule(prompt_contains="doomed", outcome="failed", error_message="content policy"))
    run = run_dag(f"grok_test_{mode}_retries", prompt="a doomed fox")
    assert states(run) == {"create": "success", "wait": "failed"}
    [wait] = [ti for ti in run.get_task_instances() if ti.task_id == "wait"]
    assert wait.try_number == 1
    assert emulator.creates == 1


@pytest.mark.parametrize("mode", ["poke", "deferrable"])
@pytest.mark.parametrize("soft_fail", [False, True], ids=["fail", "soft_fail"])
def test_timeout_bounds_the_wait(emulator: GrokVideoEmulator, mode: str, soft_fail: bool) -> None:
    emulator.add_rule(Rule(prompt_contains="slow", generation_seconds=600))
    started = time.monotonic()
    run = run_dag(f"grok_test_timeout_{mode}" + ("_soft_fail" if soft_fail else ""), prompt="slow")
    assert states(run) == {"create": "success", "wait": "skipped" if soft_fail else "failed"}
    assert time.monotonic() - started < 60


def test_failed_video_raises_the_api_error_message(emulator: GrokVideoEmulator) -> None:
    emulator.add_rule(
        Rule(prompt_contains="doomed", outcome="failed", error_message="content policy", generation_seconds=0)
    )
    task_id = GrokVideoHook().create_video(prompt="a doomed fox", image_url="https://example.com/f.png")[
        "task_id"
    ]
    sensor = GrokVideoSensor(task_id="wait", video_task_id=task_id)
    time.sleep(0.4)
    with pytest.raises(GrokVideoGenerationFailed, match=f"{task_id} failed: content policy"):
        sensor.poke({})  # type: ignore[arg-type]
    event = {"status": "failed", "video_task_id": task_id, "error_message": "content policy"}
    with pytest.raises(GrokVideoGenerationFailed, match="content policy"):
        sensor.execute_complete({}, event)  # type: ignore[arg-type]


def test_templated_value_rendering_invalid_fails_without_request(emulator: GrokVideoEmulator) -> None:
    run = run_dag("grok_test_templated_invalid")
    assert states(run) == {"create": "failed"}
    [create] = run.get_task_instances()
    assert create.try_number == 1
    assert emulator.requests == []


def test_taskflow_consumer_receives_the_url(emulator: GrokVideoEmulator) -> None:
    run = run_dag("grok_test_taskflow")
    [task_id] = list(emulator.tasks)
    assert xcom(run, "length") == len(f"{emulator.base_url}/videos/{task_id}.mp4")


def airflow_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airflow", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_airflow_dags_test_cli_runs_the_example_deferred(emulator: GrokVideoEmulator) -> None:
    env = {**os.environ, "AIRFLOW_CONN_GROK_VIDEO_DEFAULT": conn_json(emulator.base_url)}
    result = airflow_cli("dags", "test", "grok_video_example", env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    [task_id] = list(emulator.tasks)
    assert f"Video ready: {emulator.base_url}/videos/{task_id}.mp4" in output


def test_providers_list_shows_the_provider() -> None:
    result = airflow_cli("providers", "list", env=dict(os.environ))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "airflow-provider-grok-video" in result.stdout
    result = airflow_cli("providers", "hooks", env=dict(os.environ))
    assert "grok_video" in result.stdout


def test_create_and_wait_example(emulator: GrokVideoEmulator) -> None:
    run = run_dag("grok_video_create_and_wait")
    assert states(run) == {"make_video": "success", "publish": "success"}
    [task_id] = list(emulator.tasks)
    assert xcom(run, "make_video") == task_id
    assert xcom(run, "publish") == f"{emulator.base_url}/videos/{task_id}.mp4"
    [make] = [ti for ti in run.get_task_instances() if ti.task_id == "make_video"]
    assert make.xcom_pull(task_ids="make_video", key="_link_GrokVideoLink") == xcom(run, "publish")
    assert emulator.requests[0].json["orientation"] == "portrait"


def test_every_example_dag_is_run_by_the_suite() -> None:
    from tests.conftest import REPO

    tested = "".join((REPO / "tests" / name).read_text() for name in TESTS_RUNNING_EXAMPLES)
    examples = [p.stem for p in (REPO / "dags").glob("grok_video_*.py")]
    assert examples
    # Run with dag.test(), or to the end in a real deployment (a DAG scheduled on an asset).
    ways = ('run_dag("{}"', 'deployment.finish("{}"')
    assert [name for name in examples if not any(way.format(name) in tested for way in ways)] == []


def test_no_test_dag_sleeps_through_a_retry_delay() -> None:
    # dag.test() waits out a retry's retry_delay (300 s unless set): one test DAG without it once
    # cost make test five minutes, and a DAG whose retries a test proves unused would cost as much
    # the day they are used. The examples keep the delays a DAG author would.
    from tests.conftest import REPO

    ours = {path.name for path in (REPO / "tests" / "dag_files").glob("*.py")}
    dags = [dag for dag in dag_bag().dags.values() if Path(dag.fileloc).name in ours]
    assert len(dags) > 20
    slow = [
        f"{dag.dag_id}.{task.task_id}: {task.retry_delay}"
        for dag in dags
        for task in dag.tasks
        if task.retries and task.retry_delay > timedelta(seconds=5)
    ]
    assert slow == []


TESTS_RUNNING_EXAMPLES = (
    "test_dags.py",
    "test_transfer.py",
    "test_deployment.py",
    "test_decorators.py",
    "test_batch.py",
)


def test_a_video_done_before_the_sensor_starts_is_handed_on_without_deferring(
    emulator: GrokVideoEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    emulator.configure({"queue_seconds": 0, "generation_seconds": 0})
    run = run_dag("grok_test_deferrable")
    assert states(run) == {"create": "success", "wait": "success"}
    [task_id] = list(emulator.tasks)
    url = f"{emulator.base_url}/videos/{task_id}.mp4"
    assert xcom(run, "wait") == url
    [wait] = [ti for ti in run.get_task_instances() if ti.task_id == "wait"]
    assert wait.xcom_pull(task_ids="wait", key="video_url") == url
    assert emulator.count("GET") == 1  # the sensor's one look; a deferred wait would have queried again
    out, err = capfd.readouterr()
    assert f"Grok video task {task_id}: already completed" in out + err
    assert "Deferring" not in out + err


def first_look(emulator: GrokVideoEmulator, **sensor_kwargs: Any) -> None:
    """Buy a video that is still generating, and run a deferrable sensor's first look at it."""
    emulator.add_rule(Rule(prompt_contains="slow", generation_seconds=600))
    task_id = GrokVideoHook().create_video(prompt="a slow fox", image_url="https://example.com/f.png")[
        "task_id"
    ]
    sensor = GrokVideoSensor(task_id="wait", video_task_id=task_id, deferrable=True, **sensor_kwargs)
    sensor.execute({})  # type: ignore[arg-type]


@pytest.mark.parametrize("soft_fail", [False, True], ids=["fail", "soft_fail"])
def test_the_first_look_ends_a_wait_whose_timeout_has_passed(
    emulator: GrokVideoEmulator, soft_fail: bool
) -> None:
    from airflow.providers.common.compat.sdk import AirflowSensorTimeout, AirflowSkipException

    expected = AirflowSkipException if soft_fail else AirflowSensorTimeout
    with pytest.raises(expected, match="did not finish in time"):  # not deferred: the poll step said so
        first_look(emulator, timeout=0, soft_fail=soft_fail)
    assert emulator.count("GET") == 1


def test_the_first_look_follows_the_poll_step(
    emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_grok_video.polling import PollStep, VideoWait

    real_step = VideoWait.step

    def step(wait: VideoWait, task: Any, now: float) -> PollStep:
        # The one poll step (not the sensor) decides that this answer ends the video.
        answer = real_step(wait, task, now)
        return PollStep("failed", task, answer.message) if answer.status == "waiting" else answer

    monkeypatch.setattr(VideoWait, "step", step)
    with pytest.raises(GrokVideoGenerationFailed, match="the API gave no error_message"):
        first_look(emulator)
    assert emulator.count("GET") == 1


def test_which_deferred_sensors_start_in_the_triggerer() -> None:
    import airflow
    import pendulum
    from packaging.version import Version

    from airflow_grok_video.operators.grok_video import GrokCreateVideoOperator

    image = "https://example.com/a.png"
    with DAG("grok_test_start_in_triggerer", schedule=None, start_date=pendulum.datetime(2026, 1, 1)):
        create = GrokCreateVideoOperator(task_id="create", prompt="p", image_url=image)
        mapped = GrokCreateVideoOperator.partial(task_id="mapped", image_url=image).expand(prompt=["a", "b"])
        pull = "{{ ti.xcom_pull(task_ids='create', map_indexes=-1) }}"
        sensors = {
            "output": GrokVideoSensor(task_id="w1", video_task_id=create.output, deferrable=True),
            "pull naming map_indexes": GrokVideoSensor(task_id="w2", video_task_id=pull, deferrable=True),
            "bare pull": GrokVideoSensor(
                task_id="w3", video_task_id="{{ ti.xcom_pull(task_ids='create') }}", deferrable=True
            ),
            "mapped upstream": GrokVideoSensor(task_id="w4", video_task_id=mapped.output, deferrable=True),
            "not deferrable": GrokVideoSensor(task_id="w5", video_task_id=create.output, deferrable=False),
            "opted out": GrokVideoSensor(
                task_id="w6", video_task_id=create.output, deferrable=True, start_in_triggerer=False
            ),
        }
    renders = Version(airflow.__version__).release >= (3, 3)
    starts = {name: bool(sensor.start_from_trigger) for name, sensor in sensors.items()}
    expected = {"output": renders, "pull naming map_indexes": renders}
    assert starts == {name: expected.get(name, False) for name in sensors}
    if renders:
        args = sensors["output"].start_trigger_args
        assert args is not None and args.trigger_kwargs is not None
        assert args.trigger_kwargs["video_task_id"] == (
            "{{ ti.xcom_pull(task_ids='create', key='return_value', map_indexes=-1) }}"
        )
        assert args.trigger_kwargs["end_time"] is None
        assert args.trigger_kwargs["grok_conn_id"] == "grok_video_default"  # a connection id, never a key
        assert set(args.trigger_kwargs) == {
            "video_task_id",
            "grok_conn_id",
            "poll_interval",
            "end_time",
            "max_poll_interval",
            "success_xcoms",
        }


# The review example waits for a person, which dag.test() cannot be: it runs in a real deployment
# (test_deployment.py, a reviewer answering through the REST API); here, its shape on every minor.
def test_review_example_runs_a_round_only_after_a_rejection() -> None:
    from dags.grok_video_review import GAVE_UP, MAX_ROUNDS

    dag = dag_bag().dags["grok_video_review"]
    rounds = [f"round_{n}" for n in range(1, MAX_ROUNDS + 1)]
    assert sorted(dag.task_ids) == sorted(
        [GAVE_UP, *(f"{r}.{task}" for r in rounds for task in ("create", "wait", "review", "decide", "keep"))]
    )
    for n, name in enumerate(rounds, start=1):
        create, review, keep = (dag.get_task(f"{name}.{task}") for task in ("create", "review", "keep"))
        # Round 1 starts the run; each later one waits for the decision of the one before, which
        # chooses it only on a rejection, and takes its prompt from that decision.
        before = set() if n == 1 else {f"round_{n - 1}.decide"}
        assert create.upstream_task_ids == before
        assert create.prompt == (
            "{{ params.prompt }}"
            if n == 1
            else f"{{{{ ti.xcom_pull(task_ids='round_{n - 1}.decide', key='next_prompt') }}}}"
        )
        assert keep.upstream_task_ids == {f"{name}.create", f"{name}.wait", f"{name}.decide"}
        assert dag.get_task(f"{name}.decide").downstream_task_ids == (
            {keep.task_id, f"round_{n + 1}.create"} if n < MAX_ROUNDS else {keep.task_id, GAVE_UP}
        )
        # The form holds only its comment field, not the DAG's params (Airflow 3.1 would add them).
        assert review.options == ["Approve", "Reject"] and set(review.serialized_params) == {"comment"}
        assert f"round {n} of {MAX_ROUNDS}" in review.subject
    assert dag.get_task(GAVE_UP).upstream_task_ids == {f"round_{MAX_ROUNDS}.decide"}


def test_review_example_appends_the_comment_to_the_prompt() -> None:
    from dags.grok_video_review import revised_prompt

    assert revised_prompt("A paper boat ", " with a red sail ") == "A paper boat with a red sail"
    assert revised_prompt("A paper boat", "") == "A paper boat"  # rejected without a comment: same prompt
