"""``@task.grok_video`` in real ``dag.test()`` runs against the emulator, on every supported minor."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_grok_video.emulator import GrokVideoEmulator, Rule
from tests.dag_files.grok_taskflow_dags import BAD_RETURNS, IMAGE, OTHER_IMAGE, SUBJECTS
from tests.test_dags import dag_bag, run_dag, states, xcom
from tests.test_durable import needs_state_store, tries

pytestmark = pytest.mark.usefixtures("airflow_db")


def url_of(emulator: GrokVideoEmulator, video_task_id: str) -> str:
    return f"{emulator.base_url}/videos/{video_task_id}.mp4"


def pull(run: Any, task_id: str, key: str, map_index: int = -1) -> Any:
    [ti] = [ti for ti in run.get_task_instances() if (ti.task_id, ti.map_index) == (task_id, map_index)]
    return ti.xcom_pull(task_ids=task_id, key=key, map_indexes=map_index)


def query_clients(emulator: GrokVideoEmulator) -> set[str]:
    """The HTTP clients that queried the video: aiohttp in the triggerer, requests in the worker."""
    return {r.user_agent.split()[-1].split("/")[0] for r in emulator.requests if r.method == "GET"}


def test_task_grok_video_is_registered_by_the_provider_info() -> None:
    from airflow.sdk import task

    from airflow_grok_video.decorators.grok_video import grok_video_task
    from airflow_grok_video.decorators.grok_video_batch import grok_video_batch_task
    from airflow_grok_video.get_provider_info import get_provider_info

    assert task.grok_video is grok_video_task
    assert task.grok_video_batch is grok_video_batch_task
    assert get_provider_info()["task-decorators"] == [
        {"class-name": "airflow_grok_video.decorators.grok_video.grok_video_task", "name": "grok_video"},
        {
            "class-name": "airflow_grok_video.decorators.grok_video_batch.grok_video_batch_task",
            "name": "grok_video_batch",
        },
    ]


@pytest.mark.parametrize("path", ["deferred", "worker"])
def test_the_returned_prompt_buys_one_video_and_the_task_returns_its_url(
    emulator: GrokVideoEmulator, path: str
) -> None:
    if path == "deferred":  # still generating when the task defers: the trigger waits for it
        emulator.add_rule(Rule(prompt_contains="fox", generation_seconds=3))
    dag_id = f"grok_test_tf_prompt_{path}"
    run = run_dag(dag_id)
    assert states(run) == {"fox": "success", "length": "success"}
    assert emulator.creates == 1
    [(video_task_id, video)] = emulator.tasks.items()
    url = url_of(emulator, video_task_id)
    assert xcom(run, "fox") == url
    assert xcom(run, "length") == len(url)  # a downstream task received it
    # The returned prompt is sent as it is (its "{{ ds }}" is not rendered); the decorator's
    # image_url and the function's argument are templates, rendered.
    assert video.prompt == "a fox in winter, shot on {{ ds }}"
    assert video.image_url == IMAGE
    # What the create operator pushes besides: purchase, video_url, the extra link's URL.
    purchase = pull(run, "fox", "purchase")
    assert purchase["video_task_id"] == video_task_id and purchase["reattached"] is False
    assert purchase["prompt"] == video.prompt and purchase["seconds"] == 10
    assert pull(run, "fox", "video_url") == url
    assert pull(run, "fox", "_link_GrokVideoLink") == url
    assert query_clients(emulator) == ({"aiohttp"} if path == "deferred" else {"python-requests"})
    task = dag_bag().dags[dag_id].get_task("fox")
    assert task.deferrable is (path == "deferred") and task.wait_for_completion is True


def test_a_returned_mapping_overrides_the_decorators_arguments(emulator: GrokVideoEmulator) -> None:
    run = run_dag("grok_test_tf_mapping")
    assert states(run) == {"owl": "success"}
    [create] = [r.json for r in emulator.requests if r.method == "POST"]
    # duration, image and shape from the mapping; the decorator's image_url and orientation are
    # replaced by the returned image_urls and ratio, not sent beside them.
    assert create == {
        "model": "grok-imagine-video-1.5",
        "prompt": "an owl at night",
        "image_urls": [OTHER_IMAGE],
        "duration": 15,
        "ratio": "1:1",
    }
    [video_task_id] = list(emulator.tasks)
    assert xcom(run, "owl") == url_of(emulator, video_task_id)
    assert pull(run, "owl", "purchase")["seconds"] == 15


def test_expand_buys_one_video_per_mapped_argument_each_returning_its_own_url(
    emulator: GrokVideoEmulator,
) -> None:
    run = run_dag("grok_test_tf_expand")
    assert states(run) == {**{f"scene[{i}]": "success" for i in range(3)}, "collect": "success"}
    assert emulator.creates == len(SUBJECTS) == len(emulator.tasks)
    urls = [pull(run, "scene", "return_value", i) for i in range(len(SUBJECTS))]
    # Each map index returns the URL of the video its own prompt bought.
    by_prompt = {
        video.prompt: url_of(emulator, video_task_id) for video_task_id, video in emulator.tasks.items()
    }
    assert urls == [by_prompt[f"{subject} at dawn, cinematic"] for subject in SUBJECTS]
    assert len(set(urls)) == len(SUBJECTS)
    assert xcom(run, "collect") == urls


@pytest.mark.parametrize("returns", list(BAD_RETURNS))
def test_a_bad_return_fails_the_task_naming_the_field_and_buys_nothing(
    emulator: GrokVideoEmulator, capfd: pytest.CaptureFixture[str], returns: str
) -> None:
    run = run_dag("grok_test_tf_bad_return", returns=returns)
    assert states(run) == {"bad": "failed"}
    assert tries(run, "bad") == {-1: 1}  # retries=2, but a refused value is not retried
    assert emulator.creates == 0 and emulator.requests == []
    out, err = capfd.readouterr()
    expected = {
        "unknown field": "Invalid seconds=15 (int): not a create field; @task.grok_video's return value",
        "bad value": "Invalid duration='15' (str): must be the integer 10 or 15",
        "not a prompt": "Invalid @task.grok_video's return value=42 (int): must be the prompt (a str) or a",
        "no prompt": "Invalid prompt=None (NoneType): the function returned no prompt",
    }[returns]
    assert expected in out + err
    assert "GrokVideoValidationError" in out + err


@needs_state_store
def test_a_retry_reattaches_to_the_earlier_tries_video(emulator: GrokVideoEmulator) -> None:
    emulator.add_rule(Rule(prompt_contains="patient", generation_seconds=2.5))
    run = run_dag("grok_test_tf_retry")
    assert states(run) == {"retried": "success"}
    assert tries(run, "retried") == {-1: 2}
    assert emulator.creates == 1
    [video_task_id] = list(emulator.tasks)
    assert xcom(run, "retried") == url_of(emulator, video_task_id)
    purchase = pull(run, "retried", "purchase")
    assert purchase["video_task_id"] == video_task_id and purchase["reattached"] is True


def test_the_decorator_builds_a_create_operator_that_waits_deferred_and_returns_the_url() -> None:
    import pendulum
    from airflow.sdk import DAG, task

    from airflow_grok_video.decorators.grok_video import GrokVideoDecoratedOperator
    from airflow_grok_video.links.grok_video import GrokVideoLink
    from airflow_grok_video.operators.grok_video import GrokCreateVideoOperator

    with DAG("grok_test_tf_shape", schedule=None, start_date=pendulum.datetime(2026, 1, 1)) as dag:

        @task.grok_video(image_url=IMAGE, duration=15, retries=3)
        def fox() -> dict[str, Any]:  # a Mapping annotation must not unroll the URL into XComs
            return {"prompt": "a fox"}

        @task.grok_video(image_url=IMAGE, wait_for_completion=False)
        def fox_id() -> str:
            return "a fox"

        fox()
        fox_id()
    made, only_created = dag.get_task("fox"), dag.get_task("fox_id")
    assert isinstance(made, GrokVideoDecoratedOperator) and isinstance(made, GrokCreateVideoOperator)
    assert isinstance(only_created, GrokVideoDecoratedOperator)
    assert (made.duration, made.image_url, made.retries) == (15, IMAGE, 3)
    assert (made.wait_for_completion, made.deferrable, made.returns) == (True, True, "video_url")
    assert made.multiple_outputs is False
    assert only_created.returns == "video_task_id"  # it does not wait: no URL, the video task id
    assert GrokCreateVideoOperator.returns == "video_task_id"  # the operator's own is left alone
    assert {type(link) for link in made.operator_extra_links} == {GrokVideoLink}
    assert set(GrokCreateVideoOperator.template_fields) < set(made.template_fields)
    assert {"op_args", "op_kwargs"} < set(made.template_fields)
    with pytest.raises(ValueError, match="multiple_outputs"):
        task.grok_video(image_url=IMAGE, multiple_outputs=True)


def test_taskflow_example_buys_one_video_per_subject(emulator: GrokVideoEmulator) -> None:
    from dags.grok_video_taskflow import SUBJECTS as EXAMPLE_SUBJECTS

    run = run_dag("grok_video_taskflow")
    assert set(states(run).values()) == {"success"}
    assert emulator.creates == len(EXAMPLE_SUBJECTS) == len(emulator.tasks)
    by_prompt = {video.prompt: url_of(emulator, task_id) for task_id, video in emulator.tasks.items()}
    expected = [by_prompt[f"{subject}, cinematic, slow motion"] for subject in EXAMPLE_SUBJECTS]
    assert xcom(run, "publish") == expected
