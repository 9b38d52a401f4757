"""The Videos plugin in Airflow's api-server app (in process), every minor: rows, spend, player, access."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_grok_video.emulator import GrokVideoEmulator, Rule
from tests.conftest import API_KEY
from tests.test_dags import run_dag, states
from tests.videos_auth import OUTSIDER, OUTSIDER_DAG

pytestmark = pytest.mark.usefixtures("airflow_db")


@pytest.fixture(scope="module")
def bought(tmp_path_factory: pytest.TempPathFactory, grok_video_airflow: Any) -> Iterator[dict[str, Any]]:
    """Runs whose videos the page shows: kept, ready through a sensor, failed, and a batch of both."""
    from airflow_grok_video.pytest_plugin import connection_json

    kept = tmp_path_factory.mktemp("kept") / "heron.mp4"
    with (
        GrokVideoEmulator(queue_seconds=0.1, generation_seconds=0.5, playable=True) as emulator,
        pytest.MonkeyPatch.context() as mp,
    ):
        mp.setenv("AIRFLOW_CONN_GROK_VIDEO_DEFAULT", connection_json(emulator.base_url, API_KEY))
        emulator.add_rule(Rule(prompt_contains="doomed", outcome="failed", error_message="content policy"))
        runs = {
            "keep": run_dag("grok_ui_keep", dest=f"file://{kept}"),
            "ready": run_dag("grok_ui_sensor"),
            "failed": run_dag("grok_ui_sensor", prompt="a doomed fox"),
            "batch": run_dag("grok_ui_batch"),
        }
        yield {"runs": runs, "kept": kept, "emulator_tasks": dict(emulator.tasks)}


@pytest.fixture(scope="module")
def api(bought: dict[str, Any]) -> Iterator[Any]:
    """Airflow's api-server app, built in process with the plugin and a restricting auth manager."""
    from fastapi.testclient import TestClient

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW__CORE__AUTH_MANAGER", "tests.videos_auth.OneDagAuthManager")
        mp.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
        mp.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "videos-plugin-test-secret")
        from airflow.api_fastapi.app import create_app

        with TestClient(create_app("all")) as client:
            yield client


def token(username: str, role: str = "admin") -> dict[str, str]:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    jwt = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=username, role=role))
    return {"Authorization": f"Bearer {jwt}"}


ADMIN = "admin"
#: This module's DAGs: the suite's other tests share the database and buy videos of their own.
OURS = ("grok_ui_keep", "grok_ui_sensor", "grok_ui_batch")


def ours(page: dict[str, Any]) -> list[dict[str, Any]]:
    return [row for row in page["videos"] if row["dag_id"] in OURS]


def videos(api: Any, user: str = ADMIN, **params: Any) -> dict[str, Any]:
    response = api.get("/grok_video/api/videos", params=params, headers=token(user))
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def test_every_video_bought_is_a_row_with_its_record_and_state(api: Any, bought: dict[str, Any]) -> None:
    for name in ("keep", "ready"):
        assert set(states(bought["runs"][name]).values()) == {"success"}
    page = videos(api, limit=500)
    mine = ours(page)
    rows = {(r["dag_id"], r["prompt"]): r for r in mine}
    assert len(rows) == len(mine) == len(bought["emulator_tasks"]) == 6
    heron = rows[("grok_ui_keep", "a heron lands on a quiet pond")]
    assert (heron["state"], heron["seconds"], heron["ratio"], heron["kept_uri"]) == (
        "kept",
        15,
        "16:9",
        f"file://{bought['kept']}",
    )
    fox = rows[("grok_ui_sensor", "a fox in the snow")]
    assert (fox["state"], fox["orientation"], fox["waited_by"]["task_id"]) == ("ready", "portrait", "wait")
    assert fox["video_url"].endswith(f"/videos/{fox['video_task_id']}.mp4")
    doomed = rows[("grok_ui_sensor", "a doomed fox")]
    assert (doomed["state"], doomed["error"], doomed["video_url"]) == ("failed", "content policy", None)
    batch = sorted((r["item"], r["state"], r["seconds"]) for r in mine if r["dag_id"] == "grok_ui_batch")
    assert batch == [(0, "ready", 10), (1, "ready", 15), (2, "failed", 10)]
    assert {r["video_task_id"] for r in mine} == set(bought["emulator_tasks"])
    created = [r["created"] for r in page["videos"]]
    assert created == sorted(created, reverse=True)  # newest first


def test_the_spend_adds_up_to_the_purchase_records(api: Any, bought: dict[str, Any]) -> None:
    tasks = bought["emulator_tasks"]
    expected = {"grok_ui_keep": (1, 15), "grok_ui_sensor": (2, 20), "grok_ui_batch": (3, 35)}
    assert sum(seconds for _, seconds in expected.values()) == sum(t.duration for t in tasks.values())
    for dag_id, (count, seconds) in expected.items():
        spend = videos(api, dag_id=dag_id)["spend"]
        assert (spend["total"]["videos"], spend["total"]["seconds"]) == (count, seconds), dag_id
        assert [(r["dag_id"], r["videos"], r["seconds"]) for r in spend["by_dag"]] == [
            (dag_id, count, seconds)
        ]
        assert sum(r["videos"] for r in spend["by_day"]) == count
        assert sum(r["seconds"] for r in spend["by_day"]) == seconds
    whole = videos(api)["spend"]
    for part in ("by_day", "by_dag"):  # every DAG's rows, this module's and the suite's others
        assert sum(r["videos"] for r in whole[part]) == whole["total"]["videos"]
        assert sum(r["seconds"] for r in whole[part]) == whole["total"]["seconds"]


def test_filters_and_pages(api: Any) -> None:
    failed = videos(api, state="failed", limit=500)["videos"]
    assert "a doomed fox" in {r["prompt"] for r in failed}
    assert all(r["state"] == "failed" for r in failed)
    assert {r["dag_id"] for r in videos(api, dag_id="grok_ui_keep")["videos"]} == {"grok_ui_keep"}
    tomorrow = dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=1)
    assert videos(api, since=tomorrow.isoformat())["total"] == 0
    everything = [r["video_task_id"] for r in videos(api, dag_id="grok_ui_batch")["videos"]]
    assert len(everything) == 3
    paged = [
        r["video_task_id"]
        for offset in range(0, 3, 2)
        for r in videos(api, dag_id="grok_ui_batch", limit=2, offset=offset)["videos"]
    ]
    assert paged == everything
    assert (
        api.get("/grok_video/api/videos", params={"state": "lost"}, headers=token(ADMIN)).status_code == 422
    )


def test_the_task_tab_shows_the_video_the_task_bought_waited_for_or_kept(
    api: Any, bought: dict[str, Any]
) -> None:
    run = bought["runs"]["keep"]
    for task_id in ("make", "keep"):
        found = videos(
            api, dag_id="grok_ui_keep", run_id=run.run_id, task_id=task_id, map_index="{MAP_INDEX}"
        )
        assert [r["prompt"] for r in found["videos"]] == ["a heron lands on a quiet pond"]
    sensor = bought["runs"]["ready"]
    found = videos(api, dag_id="grok_ui_sensor", run_id=sensor.run_id, task_id="wait", map_index="-1")
    assert [r["prompt"] for r in found["videos"]] == ["a fox in the snow"]
    page = api.get(f"/grok_video/task/grok_ui_keep/{run.run_id}/keep/-1", headers=token(ADMIN))
    assert page.status_code == 200
    [main] = [line for line in page.text.splitlines() if line.startswith("<main")]
    assert 'data-mode="task"' in main and 'data-task-id="keep"' in main and 'data-root="/grok_video"' in main


def test_a_kept_copy_streams_with_range_requests(api: Any, bought: dict[str, Any]) -> None:
    [row] = videos(api, dag_id="grok_ui_keep")["videos"]
    url = "/grok_video/media/grok_ui_keep/{run_id}/make/-1/{video_task_id}".format(**row)
    data = bought["kept"].read_bytes()
    whole = api.get(url, headers=token(ADMIN))
    assert (whole.status_code, whole.content, whole.headers["accept-ranges"]) == (200, data, "bytes")
    part = api.get(url, headers={**token(ADMIN), "Range": "bytes=100-1099"})
    assert part.status_code == 206 and part.content == data[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{len(data)}"
    tail = api.get(url, headers={**token(ADMIN), "Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    beyond = api.get(url, headers={**token(ADMIN), "Range": f"bytes={len(data)}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(data)}"


def test_anonymous_requests_get_nothing(api: Any, bought: dict[str, Any]) -> None:
    run_id = bought["runs"]["keep"].run_id
    for path in (
        "/grok_video/videos",
        "/grok_video/api/videos",
        f"/grok_video/task/grok_ui_keep/{run_id}/make/-1",
        f"/grok_video/run/grok_ui_keep/{run_id}",
        f"/grok_video/media/grok_ui_keep/{run_id}/make/-1/video_x",
    ):
        response = api.get(path)
        assert response.status_code in (401, 403), (path, response.status_code)
        assert "heron" not in response.text and "grok_ui_keep" not in response.text.replace(path, "")


def test_a_user_sees_only_the_dags_they_may_read(api: Any, bought: dict[str, Any]) -> None:
    page = videos(api, OUTSIDER, limit=500)
    assert {r["dag_id"] for r in page["videos"]} == {OUTSIDER_DAG}
    assert {r["dag_id"] for r in page["spend"]["by_dag"]} == {OUTSIDER_DAG}
    assert videos(api, OUTSIDER, dag_id="grok_ui_keep")["total"] == 0
    run_id = bought["runs"]["keep"].run_id
    [row] = videos(api, dag_id="grok_ui_keep")["videos"]
    for path in (
        f"/grok_video/task/grok_ui_keep/{run_id}/make/-1",
        f"/grok_video/run/grok_ui_keep/{run_id}",
        f"/grok_video/media/grok_ui_keep/{run_id}/make/-1/{row['video_task_id']}",
    ):
        assert api.get(path, headers=token(OUTSIDER)).status_code == 403, path


def test_the_key_never_reaches_the_browser(api: Any, bought: dict[str, Any]) -> None:
    run_id = bought["runs"]["keep"].run_id
    for path in (
        "/grok_video/videos",
        "/grok_video/api/videos",
        f"/grok_video/task/grok_ui_keep/{run_id}/make/-1",
    ):
        assert API_KEY not in api.get(path, headers=token(ADMIN)).text


def test_the_plugin_comes_through_its_entry_point_and_builds_its_app_only_when_asked(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from airflow import plugins_manager as pm\n"
        "from importlib.metadata import entry_points\n"
        "[ep] = [e for e in entry_points(group='airflow.plugins') if e.name == 'grok_video']\n"
        "cls = ep.load()\n"
        "assert 'airflow_grok_video.plugins.app' not in sys.modules, 'built on import'\n"
        "views = {v['destination']: v['href'] for v in cls.external_views}\n"
        "print(sorted(views.items()))\n"
        "[app] = cls().fastapi_apps\n"
        "print(app['url_prefix'], sorted(r.path for r in app['app'].routes))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "('nav', 'grok_video/videos')" in out.stdout
    assert "('task_instance', 'grok_video/task/{DAG_ID}/{RUN_ID}/{TASK_ID}/{MAP_INDEX}')" in out.stdout
    assert "('dag_run', 'grok_video/run/{DAG_ID}/{RUN_ID}')" in out.stdout
    assert "/grok_video " in out.stdout and "/api/videos" in out.stdout


def test_use_against_the_caps_is_shown_to_those_who_may_read_connections(
    api: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import json

    from airflow_grok_video.hooks.grok_video import GrokVideoHook
    from airflow_grok_video.hooks.spend_store import SpendRequest, SpendStore
    from airflow_grok_video.spend_caps import Spend

    store = "grok_ui_spend_store"
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{store.upper()}", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "s.db")})
    )
    extra = {"spend_caps": {"videos_per_day": 5, "seconds_per_run": 60}, "spend_cap_conn_id": store}
    connection = {
        "conn_type": "grok_video",
        "host": "http://127.0.0.1:9",
        "password": API_KEY,
        "extra": extra,
    }
    monkeypatch.setenv("AIRFLOW_CONN_GROK_VIDEO_DEFAULT", json.dumps(connection))
    policy = GrokVideoHook().spend_policy()
    assert policy is not None
    now = dt.datetime.now(dt.timezone.utc)
    for map_index in (0, 1):
        request = SpendRequest("grok_video_default", "d", "r", "t", map_index, 1, Spend(1, 10), policy.caps)
        SpendStore(store).reserve(request, now)
    response = api.get("/grok_video/api/caps", headers=token(ADMIN))
    assert response.status_code == 200, response.text
    rows = {row["cap"]: row for row in response.json()["caps"] if row["conn_id"] == "grok_video_default"}
    assert (rows["videos_per_day"]["used"], rows["videos_per_day"]["limit"]) == (2, 5)
    assert rows["videos_per_day"]["window"] == now.strftime("%Y-%m-%d")
    assert rows["seconds_per_run"]["window"] == "each DAG run"
    assert api.get("/grok_video/api/caps", headers=token("viewer", role="viewer")).status_code == 403
    assert api.get("/grok_video/api/caps").status_code in (401, 403)
