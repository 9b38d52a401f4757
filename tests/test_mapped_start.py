"""Which mapped deferrable sensors start in the triggerer, at parse time and after serialization."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import airflow
import pendulum
from airflow.sdk import DAG, TaskGroup, task_group
from packaging.version import Version

from airflow_grok_video.operators.grok_video import GrokCreateVideoOperator
from airflow_grok_video.sensors.grok_video import GrokVideoSensor

IMAGE = "https://example.com/a.png"
RENDERS = Version(airflow.__version__).release >= (3, 3)


def mapped_sensors() -> tuple[DAG, dict[str, Any]]:
    with DAG(
        "grok_test_mapped_start",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1),
        default_args={"retries": 1},
    ) as dag:
        create = GrokCreateVideoOperator(task_id="create", prompt="p", image_url=IMAGE)
        creates = GrokCreateVideoOperator.partial(task_id="creates", image_url=IMAGE).expand(
            prompt=["a", "b"]
        )
        wait = GrokVideoSensor.partial
        sensors = {
            "over a mapped output": wait(task_id="w1", deferrable=True, poke_interval=5, timeout=600).expand(
                video_task_id=creates.output
            ),
            "timeout as a timedelta": wait(
                task_id="w2", deferrable=True, timeout=timedelta(minutes=5)
            ).expand(video_task_id=creates.output),
            "over a list": wait(task_id="w3", deferrable=True).expand(video_task_id=["video_1", "video_2"]),
            "over an unmapped output": wait(task_id="w4", deferrable=True).expand(
                video_task_id=create.output
            ),
            "not deferrable": wait(task_id="w5", deferrable=False).expand(video_task_id=creates.output),
            "opted out": wait(task_id="w6", deferrable=True, start_in_triggerer=False).expand(
                video_task_id=creates.output
            ),
            "poke_interval mapped too": wait(task_id="w7", deferrable=True).expand(
                video_task_id=creates.output, poke_interval=[3, 4]
            ),
        }
        with TaskGroup("group", default_args={"timeout": 60}):  # type: ignore[arg-type]
            sensors["timeout from default_args"] = wait(task_id="w8", deferrable=True).expand(
                video_task_id=creates.output
            )
    return dag, sensors


def test_which_mapped_sensors_start_in_the_triggerer() -> None:
    _, sensors = mapped_sensors()
    starts = {name: bool(sensor.start_from_trigger) for name, sensor in sensors.items()}
    expected = {"over a mapped output": RENDERS, "timeout as a timedelta": RENDERS}
    assert starts == {name: expected.get(name, False) for name in sensors}


def test_a_mapped_sensor_reads_the_video_of_its_own_map_index() -> None:
    if not RENDERS:
        return  # older Airflow: no mapped sensor starts in the triggerer (asserted above)
    _, sensors = mapped_sensors()
    args = sensors["over a mapped output"].start_trigger_args
    assert args.trigger_kwargs == {
        "video_task_id": (
            "{{ ti.xcom_pull(task_ids='creates', key='return_value', map_indexes=ti.map_index) }}"
        ),
        "grok_conn_id": "grok_video_default",
        "poll_interval": 5.0,
        "end_time": None,
        "max_poll_interval": 120.0,
        "success_xcoms": {
            "return_value": "video_url",
            "video_url": "video_url",
            "_link_GrokVideoLink": "video_url",
        },
    }
    assert args.timeout == timedelta(seconds=600) + timedelta(seconds=60)
    assert args.next_method == "execute_complete"
    assert sensors["timeout as a timedelta"].start_trigger_args.timeout == timedelta(minutes=6)


def test_the_scheduler_sees_the_start_arguments_of_a_mapped_sensor() -> None:
    try:
        from airflow.serialization.serialized_objects import DagSerialization as Serialization
    except ImportError:  # Airflow < 3.3
        from airflow.serialization.serialized_objects import (  # type: ignore[attr-defined,no-redef,assignment]
            SerializedDAG as Serialization,
        )

    dag, _ = mapped_sensors()
    scheduled = Serialization.from_dict(Serialization.to_dict(dag))
    starts = {task_id: scheduled.get_task(task_id).start_from_trigger for task_id in ("w1", "w3", "w6")}
    assert starts == {"w1": RENDERS, "w3": False, "w6": False}
    args = scheduled.get_task("w1").start_trigger_args
    if RENDERS:  # the kwargs as the scheduler stores them for the trigger (serialized)
        assert args is not None and "map_indexes=ti.map_index) }}" in json.dumps(args.trigger_kwargs)


def grouped_sensors() -> tuple[DAG, dict[str, Any]]:
    """Deferrable sensors in and around a mapped task group (issue 21 item 4)."""
    sensors: dict[str, Any] = {}
    wait = GrokVideoSensor
    with DAG("grok_test_grouped_start", schedule=None, start_date=pendulum.datetime(2026, 1, 1)) as dag:
        top = GrokCreateVideoOperator(task_id="top", prompt="p", image_url=IMAGE)
        with TaskGroup("plain"):
            sensors["in a task group, over a create outside"] = wait(
                task_id="wait", video_task_id=top.output, deferrable=True
            )

        @task_group
        def group(prompt: str) -> None:
            create = GrokCreateVideoOperator(task_id="create", prompt=prompt, image_url=IMAGE)
            sensors["beside its create"] = wait(task_id="wait", video_task_id=create.output, deferrable=True)
            with TaskGroup("nested"):
                sensors["in a group nested in the mapped one"] = wait(
                    task_id="wait", video_task_id=create.output, deferrable=True
                )
            sensors["over a create outside the group"] = wait(
                task_id="wait_top", video_task_id=top.output, deferrable=True
            )

            @task_group
            def inner(n: int) -> None:
                sensors["in a mapped group inside, over the outer create"] = wait(
                    task_id="wait", video_task_id=create.output, deferrable=True
                )

            inner.expand(n=[1, 2])
            sensors["group create"] = create

        group.expand(prompt=["a", "b"])
        sensors["after the group, over every index"] = wait(
            task_id="after", video_task_id=sensors.pop("group create").output, deferrable=True
        )
    return dag, sensors


def test_sensors_in_a_mapped_task_group_read_their_own_map_index() -> None:
    _, sensors = grouped_sensors()
    read = {
        name: sensor.start_trigger_args.trigger_kwargs["video_task_id"] if sensor.start_from_trigger else None
        for name, sensor in sensors.items()
    }
    own = "{{ ti.xcom_pull(task_ids='group.create', key='return_value', map_indexes=ti.map_index) }}"
    top = "{{ ti.xcom_pull(task_ids='top', key='return_value', map_indexes=-1) }}"
    expected = {
        "in a task group, over a create outside": top,
        "beside its create": own,
        "in a group nested in the mapped one": own,
        "over a create outside the group": top,
        # Airflow works the index out from task counts, or hands the sensor every index: a worker.
        "in a mapped group inside, over the outer create": None,
        "after the group, over every index": None,
    }
    assert read == (expected if RENDERS else dict.fromkeys(sensors))


def test_the_scheduler_sees_what_a_sensor_in_a_mapped_task_group_reads() -> None:
    if not RENDERS:
        return  # older Airflow: nothing starts in the triggerer (asserted above)
    from airflow.serialization.serialized_objects import DagSerialization

    dag, _ = grouped_sensors()
    scheduled = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    args = scheduled.get_task("group.nested.wait").start_trigger_args
    assert args is not None and "map_indexes=ti.map_index) }}" in json.dumps(args.trigger_kwargs)
    assert not scheduled.get_task("group.inner.wait").start_from_trigger
