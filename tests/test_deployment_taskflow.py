"""``@task.grok_video`` mapped in a real Airflow (api-server, scheduler, dag-processor, triggerer)."""

from __future__ import annotations

import pytest

from tests.deploy_dags.grok_deploy_taskflow import TASKFLOW_PROMPTS
from tests.deployment import Deployment, wait_for
from tests.test_deployment import worker_runs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
DAG_ID = "grok_deploy_taskflow"


def test_mapped_task_grok_video_hands_each_url_downstream(deployment: Deployment) -> None:
    deployment.emulator("reset", {})
    deployment.emulator("rules", {"prompt_contains": "taskflow quick", "generation_seconds": 4})
    run_id = deployment.trigger(DAG_ID)
    assert deployment.finish(DAG_ID, run_id, timeout=240) == "success", deployment.logs()
    stats = deployment.emulator("stats")
    assert stats["creates"] == stats["accepted_creates"] == len(TASKFLOW_PROMPTS)
    assert set(stats["tasks"].values()) == {"completed"}
    sent = sorted(r["json"]["prompt"] for r in deployment.emulator("requests") if r["method"] == "POST")
    assert sent == sorted(TASKFLOW_PROMPTS)
    urls = []
    for index, prompt in enumerate(TASKFLOW_PROMPTS):
        # Each map index bought its own prompt's video, and returns that video's URL.
        purchase = deployment.xcom(DAG_ID, run_id, "taskflow_video", index, key="purchase")
        assert purchase["prompt"] == prompt and purchase["reattached"] is False
        url = f"{deployment.emulator_url}/videos/{purchase['video_task_id']}.mp4"
        assert deployment.xcom(DAG_ID, run_id, "taskflow_video", index) == url
        assert deployment.xcom(DAG_ID, run_id, "taskflow_video", index, key="video_url") == url
        urls.append(url)
    assert {url.rsplit("/", 1)[-1].removesuffix(".mp4") for url in urls} == set(stats["tasks"])
    assert deployment.xcom(DAG_ID, run_id, "received", -1) == urls  # the downstream task got them all
    # Each map index ran once on a worker (its create): its wait deferred, and the triggerer ended it.
    wait_for(lambda: worker_runs(deployment, DAG_ID, run_id, "received") == 1, 30, "the workload log")
    runs = [worker_runs(deployment, DAG_ID, run_id, "taskflow_video", i) for i in range(len(urls))]
    assert runs == [1] * len(urls), deployment.logs()
