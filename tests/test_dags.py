"""The operator and sensor in real Airflow runs: the example DAGs, every sensor mode, failures, timeouts."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pendulum
import pytest
from airflow.sdk import DAG, task

from airflow_grok_video.emulator import GrokVideoEmulator, Rule
from airflow_grok_video.exceptions import GrokVideoGenerationFailed
from airflow_grok_video.operators.grok_video import GrokCreateVideoOperator
from airflow_grok_video.sensors.grok_video import GrokVideoSensor
from tests.conftest import REPO, conn_json

pytestmark = pytest.mark.usefixtures("airflow_db")


def load_example(name: str) -> DAG:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / f"{name}.py"), include_examples=False)
    assert not bag.import_errors, bag.import_errors
    return bag.dags[name]


def states(run: Any) -> dict[str, str]:
    return {
        (ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"): str(ti.state)
        for ti in run.get_task_instances()
    }


def xcom(run: Any, task_id: str, map_index: int = -1) -> Any:
    [ti] = [ti for ti in run.get_task_instances() if ti.task_id == task_id and ti.map_index == map_index]
    return ti.xcom_pull(task_ids=task_id, map_indexes=map_index)


def video_dag(dag_id: str, prompt: str = "a fox", **sensor_kwargs: Any) -> DAG:
    with DAG(dag_id, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
        create = GrokCreateVideoOperator(
            task_id="create", prompt=prompt, image_url="https://example.com/fox.png"
        )
        GrokVideoSensor(
            task_id="wait", video_task_id=create.output, **{"poke_interval": 0.2, **sensor_kwargs}
        )
    return dag


def test_example_dag_deferred_end_to_end(emulator: GrokVideoEmulator) -> None:
    run = load_example("grok_video_example").test()
    assert states(run) == {"create_video": "success", "wait_for_video": "success", "use_video": "success"}
    [task_id] = list(emulator.tasks)
    assert xcom(run, "create_video") == task_id
    assert xcom(run, "use_video") == f"{emulator.base_url}/videos/{task_id}.mp4"
    assert emulator.creates == 1


def test_fan_out_example_maps_one_video_per_prompt(emulator: GrokVideoEmulator) -> None:
    run = load_example("grok_video_fan_out").test()
    assert set(states(run).values()) == {"success"}
    assert emulator.creates == 3
    urls = xcom(run, "collect")
    assert sorted(urls) == sorted(f"{emulator.base_url}/videos/{t}.mp4" for t in emulator.tasks)
    prompts = sorted(r.json["prompt"] for r in emulator.requests if r.method == "POST")
    from dags.grok_video_fan_out import PROMPTS

    assert prompts == sorted(PROMPTS)


@pytest.mark.parametrize(
    "sensor_kwargs",
    [{"deferrable": False}, {"deferrable": False, "mode": "reschedule"}, {"deferrable": True}],
    ids=["poke", "reschedule", "deferrable"],
)
def test_sensor_modes_return_the_url(emulator: GrokVideoEmulator, sensor_kwargs: dict[str, Any]) -> None:
    run = video_dag(f"sensor_{len(sensor_kwargs)}_{sensor_kwargs.get('deferrable')}", **sensor_kwargs).test()
    assert states(run) == {"create": "success", "wait": "success"}
    [task_id] = list(emulator.tasks)
    assert xcom(run, "wait") == f"{emulator.base_url}/videos/{task_id}.mp4"


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferrable"])
def test_failed_generation_fails_the_sensor_without_retry(
    emulator: GrokVideoEmulator, deferrable: bool
) -> None:
    emulator.add_rule(Rule(prompt_contains="doomed", outcome="failed", error_message="content policy"))
    run = video_dag(f"failed_{deferrable}", prompt="a doomed fox", deferrable=deferrable, retries=2).test()
    assert states(run) == {"create": "success", "wait": "failed"}
    ti = next(ti for ti in run.get_task_instances() if ti.task_id == "wait")
    assert ti.try_number == 1


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferrable"])
@pytest.mark.parametrize("soft_fail", [False, True], ids=["fail", "soft_fail"])
def test_timeout_bounds_the_wait(emulator: GrokVideoEmulator, deferrable: bool, soft_fail: bool) -> None:
    emulator.add_rule(Rule(prompt_contains="slow", generation_seconds=600))
    dag = video_dag(
        f"timeout_{deferrable}_{soft_fail}",
        prompt="slow",
        deferrable=deferrable,
        timeout=1,
        soft_fail=soft_fail,
    )
    run = dag.test()
    assert states(run)["wait"] == ("skipped" if soft_fail else "failed")


def test_failed_event_and_poke_raise_the_api_error_message(emulator: GrokVideoEmulator) -> None:
    emulator.add_rule(
        Rule(prompt_contains="doomed", outcome="failed", error_message="content policy", generation_seconds=0)
    )
    from airflow_grok_video.hooks.grok_video import GrokVideoHook

    task_id = GrokVideoHook().create_video(prompt="a doomed fox", image_url="https://example.com/f.png")[
        "task_id"
    ]
    sensor = GrokVideoSensor(task_id="wait", video_task_id=task_id)
    import time

    time.sleep(0.5)
    with pytest.raises(GrokVideoGenerationFailed, match=f"{task_id} failed: content policy"):
        sensor.poke({})  # type: ignore[arg-type]
    with pytest.raises(GrokVideoGenerationFailed, match="content policy"):
        sensor.execute_complete(
            {}, {"status": "failed", "video_task_id": task_id, "error_message": "content policy"}
        )  # type: ignore[arg-type]


def test_templated_parameters_are_validated_after_rendering(emulator: GrokVideoEmulator) -> None:
    with DAG(
        "templated_invalid",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        params={"ratio": "4:3"},
    ) as dag:
        GrokCreateVideoOperator(
            task_id="create",
            prompt="{{ params.missing or '' }}",
            image_url="https://example.com/fox.png",
            retries=2,
        )
    run = dag.test()
    assert states(run) == {"create": "failed"}
    assert emulator.requests == []


def test_taskflow_consumer_receives_the_url(emulator: GrokVideoEmulator) -> None:
    with DAG("taskflow_mix", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
        create = GrokCreateVideoOperator(
            task_id="create", prompt="a fox", image_url="https://example.com/f.png"
        )
        wait = GrokVideoSensor(
            task_id="wait", video_task_id=create.output, poke_interval=0.2, deferrable=True
        )

        @task
        def length(url: str) -> int:
            return len(url)

        length(wait.output)
    run = dag.test()
    [task_id] = list(emulator.tasks)
    assert xcom(run, "length") == len(f"{emulator.base_url}/videos/{task_id}.mp4")


def airflow_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airflow", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_airflow_dags_test_cli_runs_the_example_deferred(emulator: GrokVideoEmulator) -> None:
    env = {**os.environ, "AIRFLOW_CONN_GROK_VIDEO_DEFAULT": conn_json(emulator.base_url)}
    result = airflow_cli("dags", "test", "grok_video_example", env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [task_id] = list(emulator.tasks)
    assert f"Video ready: {emulator.base_url}/videos/{task_id}.mp4" in result.stdout + result.stderr


def test_providers_list_shows_the_provider() -> None:
    result = airflow_cli("providers", "list", env=dict(os.environ))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "airflow-provider-grok-video" in result.stdout
    result = airflow_cli("providers", "hooks", env=dict(os.environ))
    assert "grok_video" in result.stdout
