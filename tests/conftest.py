"""Shared fixtures: an isolated Airflow home, its database, and the emulator as the API."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
API_KEY = "sk_test_SENTINEL_7f3a9c"

# Airflow reads its configuration when first imported: set it before any test module imports it.
# DAGs must live in a bundle for dag.test(): the folder holds the examples and the tests' own DAGs.
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="grok-video-airflow-")
DAGS_FOLDER = Path(_AIRFLOW_HOME) / "dags"
DAGS_FOLDER.mkdir()
for _dag_file in [*(REPO / "dags").glob("*.py"), *(REPO / "tests" / "dag_files").glob("*.py")]:
    if _dag_file.name != "__init__.py":
        (DAGS_FOLDER / _dag_file.name).symlink_to(_dag_file)
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
        "AIRFLOW_HOME": _AIRFLOW_HOME,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }
)

from airflow_grok_video.emulator import GrokVideoEmulator  # noqa: E402


def conn_json(base_url: str, api_key: str = API_KEY) -> str:
    """The connection as Airflow reads it from an ``AIRFLOW_CONN_*`` variable."""
    return json.dumps({"conn_type": "grok_video", "host": base_url, "password": api_key})


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """Migrate the test Airflow's SQLite database once per session."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )
    return _AIRFLOW_HOME


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[GrokVideoEmulator]:
    """A fresh emulator on 127.0.0.1, wired up as the ``grok_video_default`` connection."""
    with GrokVideoEmulator(queue_seconds=0.2, generation_seconds=1.0) as emu:
        monkeypatch.setenv("AIRFLOW_CONN_GROK_VIDEO_DEFAULT", conn_json(emu.base_url))
        yield emu


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
