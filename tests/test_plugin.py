"""The pytest plugin as a user meets it: a project of their own, its DAG run against the emulator."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

PLUGIN = "airflow_grok_video.pytest_plugin"

USER_DAG = """
import pendulum
from airflow.sdk import dag, task

from airflow_grok_video.operators.grok_video import GrokCreateVideoOperator


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"))
def my_video():
    video = GrokCreateVideoOperator(
        task_id="make_video",
        prompt="A paper boat on a rainy street",
        image_url="https://example.com/boat.png",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=1,
    )

    @task
    def publish(url: str) -> str:
        return url

    publish(video.output["video_url"])


my_video()
"""

USER_TESTS = """
import os
from pathlib import Path

from airflow_grok_video.hooks.grok_video import GrokVideoHook


def test_my_dag_buys_one_video(grok_video_airflow, grok_video_emulator):
    run = grok_video_airflow.dag("my_video").test()
    assert run.state == "success"
    assert grok_video_emulator.accepted_creates == 1
    [video_id] = grok_video_emulator.tasks
    [publish] = [ti for ti in run.get_task_instances() if ti.task_id == "publish"]
    assert publish.xcom_pull(task_ids="publish") == f"{grok_video_emulator.base_url}/videos/{video_id}.mp4"


def test_airflow_is_isolated(grok_video_airflow):
    assert os.environ["AIRFLOW_HOME"] == str(grok_video_airflow.home)
    assert (grok_video_airflow.home / "airflow.db").is_file()
    assert grok_video_airflow.dags_folder == Path("dags").resolve()
    Path("home.txt").write_text(str(grok_video_airflow.home))


def test_the_hook_talks_to_the_emulator(grok_video_emulator):
    assert GrokVideoHook().test_connection()[0]
    assert grok_video_emulator.requests[0].auth_ok
"""


def run_pytest(project: Path) -> subprocess.CompletedProcess[str]:
    """Run pytest in ``project`` as a user would: none of this suite's Airflow settings; plugins autoload."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "PYTEST_")) and k not in ("PYTHONPATH", "COVERAGE_PROCESS_START")
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )


def test_the_plugin_is_registered_for_pytest() -> None:
    assert [ep.value for ep in entry_points(group="pytest11", name=PLUGIN)] == [PLUGIN]


def test_a_users_dag_runs_against_the_emulator_in_a_few_lines(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.pytest.ini_options]\ngrok_video_dags = ["dags"]\n')
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "my_video.py").write_text(USER_DAG)
    (tmp_path / "tests").mkdir()
    # A conftest that imports Airflow at once: the plugin isolated it before any conftest loads.
    (tmp_path / "tests" / "conftest.py").write_text("import airflow.sdk  # noqa: F401\n")
    (tmp_path / "tests" / "test_my_video.py").write_text(USER_TESTS)

    result = run_pytest(tmp_path)

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "3 passed" in result.stdout
    home = Path((tmp_path / "home.txt").read_text())
    assert home.name.startswith("grok-video-airflow-")
    assert not home.exists(), "the temporary Airflow home outlives the session"


def test_the_airflow_fixture_says_how_to_set_it_up(tmp_path: Path) -> None:
    (tmp_path / "test_nothing_set_up.py").write_text(
        "def test_needs_airflow(grok_video_airflow):\n    pass\n"
    )

    result = run_pytest(tmp_path)

    assert result.returncode == 1, result.stdout
    assert "grok_video_dags" in result.stdout and "isolate_airflow" in result.stdout


def test_isolating_after_airflow_was_imported_is_refused(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import airflow
        from {PLUGIN} import isolate_airflow
        try:
            isolate_airflow()
        except RuntimeError as error:
            print(error)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "Airflow was imported before isolate_airflow() ran" in out


def test_loading_the_plugin_imports_neither_airflow_nor_the_emulator() -> None:
    code = (
        f"import sys, {PLUGIN}; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'airflow' or 'emulator' in m))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_what_airflow_runs_imports_neither_pytest_nor_the_emulator() -> None:
    modules = [
        "airflow_grok_video.operators.grok_video",
        "airflow_grok_video.sensors.grok_video",
        "airflow_grok_video.triggers.grok_video",
        "airflow_grok_video.transfers.grok_video_to_storage",
        "airflow_grok_video.links.grok_video",
        "airflow_grok_video.hooks.grok_video",
        "airflow_grok_video.get_provider_info",
    ]
    code = (
        f"import sys; import {', '.join(modules)}; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pytest', '_pytest') or 'emulator' in m "
        f"or m == '{PLUGIN}'))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "[]"
