"""Shared fixtures: an isolated Airflow home, its database, and the emulator as the API.

They come from the provider's own pytest plugin (``airflow_grok_video.pytest_plugin``, the same
fixtures users get), under this suite's older names ``airflow_db`` and ``emulator``.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_grok_video.pytest_plugin import AirflowHome, connection_json, isolate_airflow

if TYPE_CHECKING:
    from tests.deployment import Deployment

# Loaded already through its entry point when the package is installed; this also covers
# PYTEST_DISABLE_PLUGIN_AUTOLOAD and a checkout whose install predates the entry point.
pytest_plugins = ["airflow_grok_video.pytest_plugin"]

REPO = Path(__file__).resolve().parent.parent
API_KEY = "sk_test_SENTINEL_7f3a9c"

# Airflow reads its configuration when first imported: set it before any test module imports it.
# DAGs must live in the DAG folder for dag.test(): it holds the examples and the tests' own DAGs.
AIRFLOW = isolate_airflow([REPO / "dags", REPO / "tests" / "dag_files"])
DAGS_FOLDER = AIRFLOW.dags_folder
# Metrics go to a StatsD port the tests listen on (see the ``statsd`` fixture).
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as _udp:
    _udp.bind(("127.0.0.1", 0))
    STATSD_PORT = _udp.getsockname()[1]
os.environ.update(
    {
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(STATSD_PORT),
        "AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED": "True",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }
)

from airflow_grok_video.emulator import GrokVideoEmulator  # noqa: E402


def conn_json(base_url: str, api_key: str = API_KEY) -> str:
    """The connection as Airflow reads it from an ``AIRFLOW_CONN_*`` variable."""
    return connection_json(base_url, api_key)


@pytest.fixture
def grok_video_api_key() -> str:
    """The plugin's emulator connection carries this suite's sentinel key (never to be logged)."""
    return API_KEY


@pytest.fixture
def grok_video_emulator_options() -> Mapping[str, Any]:
    return {"queue_seconds": 0.2, "generation_seconds": 1.0}


@pytest.fixture(scope="session")
def airflow_db(grok_video_airflow: AirflowHome) -> str:
    """The isolated Airflow's home, its SQLite database migrated once per session."""
    return str(grok_video_airflow.home)


@pytest.fixture
def emulator(grok_video_emulator: GrokVideoEmulator) -> GrokVideoEmulator:
    """A fresh emulator on 127.0.0.1, wired up as the ``grok_video_default`` connection."""
    return grok_video_emulator


@pytest.fixture(scope="session")
def statsd() -> Iterator[socket.socket]:
    """A UDP socket receiving the metrics Airflow's stats client sends."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", STATSD_PORT))
        sock.settimeout(0.2)
        yield sock


def received(sock: socket.socket) -> list[str]:
    """Every StatsD line received so far."""
    lines: list[str] = []
    while True:
        try:
            lines += sock.recv(65536).decode().splitlines()
        except TimeoutError:
            return lines


@pytest.fixture
def closed_port_url() -> str:
    """A base URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """
    One real Airflow deployment (tests/deployment.py) shared by every test module that uses it.

    It runs every DAG file in tests/deploy_dags, the keep example with the DAG scheduled on what it
    keeps, the human review example and the fan-out example; videos take 45 s unless a test's
    emulator rule says otherwise.
    """
    from tests.deployment import REPO, Deployment

    home = tmp_path_factory.mktemp("airflow-deployment")
    examples = (
        "grok_video_keep.py",
        "grok_video_on_kept.py",
        "grok_video_review.py",
        "grok_video_fan_out.py",
    )
    ours = sorted((REPO / "tests" / "deploy_dags").glob("*.py"))
    dag_files = [*ours, *(REPO / "dags" / example for example in examples)]
    running = Deployment(home, dag_files, generation_seconds=45)
    running.env["AIRFLOW_VAR_GROK_VIDEO_DIR"] = str(home / "videos")
    try:
        yield running.start()
    finally:
        running.stop()


@pytest.fixture(scope="session", autouse=True)
def one_in_process_execution_api() -> Iterator[None]:
    """
    Every ``dag.test()`` of the session shares one in-process Execution API, on every minor.

    Before Airflow 3.3, ``InProcessTestSupervisor`` builds the Execution API app anew for each task
    and trigger ``dag.test()`` runs, and its first request generates every versioned router
    (cadwyn): 1-2 s of CPU each time, over half of a ``dag.test()`` test's CPU (profiled on 3.1 and
    3.2). Airflow 3.3 caches ``in_process_api_server`` (``lru_cache(maxsize=1)``); this does the same
    on the older minors.
    """
    from airflow.sdk.execution_time import supervisor

    build = supervisor.in_process_api_server
    if not hasattr(build, "cache_info"):
        supervisor.in_process_api_server = functools.lru_cache(maxsize=1)(build)
    try:
        yield
    finally:
        supervisor.in_process_api_server = build
