"""A real Airflow deployment for tests: api-server, scheduler, dag-processor, triggerers and the emulator.

Every process runs in its own process group under a private AIRFLOW_HOME, on its own ports, and
is always stopped (SIGTERM, then SIGKILL to the group) when the deployment is closed.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent
AIRFLOW = [sys.executable, "-m", "airflow"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], T | None], timeout: float, what: str, every: float = 0.5) -> T:
    """Poll ``check`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")


class Deployment:
    """One Airflow deployment on LocalExecutor and SQLite, and the emulator it talks to."""

    def __init__(self, home: Path, dag_files: list[Path], generation_seconds: float = 40.0) -> None:
        self.home = home
        self.api_port = free_port()
        self.emulator_port = free_port()
        self.emulator_url = f"http://127.0.0.1:{self.emulator_port}"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.generation_seconds = generation_seconds
        dags = home / "dags"
        dags.mkdir(parents=True)
        for dag_file in dag_files:
            (dags / dag_file.name).write_text(dag_file.read_text())
        base = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        self.env = {
            **base,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.api_port}",
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__FERNET_KEY": "",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "5",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW_CONN_GROK_VIDEO_DEFAULT": json.dumps(
                {"conn_type": "grok_video", "host": self.emulator_url, "password": "sk_deploy_test"}
            ),
        }

    # -- processes ------------------------------------------------------------------------

    def start(self) -> Deployment:
        """Start the emulator, migrate the database, start every Airflow component."""
        self.spawn(
            "emulator",
            [
                sys.executable,
                "-m",
                "airflow_grok_video.emulator",
                "--port",
                str(self.emulator_port),
                "--generation-seconds",
                str(self.generation_seconds),
                "--queue-seconds",
                "1",
            ],
        )
        wait_for(lambda: self._emulator_up(), 20, "the emulator")
        self.airflow("db", "migrate")
        self.spawn("api-server", [*AIRFLOW, "api-server", "--port", str(self.api_port)])
        self.spawn("dag-processor", [*AIRFLOW, "dag-processor"])
        self.spawn("scheduler", [*AIRFLOW, "scheduler"])
        self.spawn_triggerer("triggerer-1")
        wait_for(self._api_up, 120, "the api-server")
        return self

    def spawn(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        """Start a process in its own process group, its output in ``<home>/<name>.log``."""
        log = open(self.home / f"{name}.log", "ab")  # noqa: SIM115 - the process owns it
        process = subprocess.Popen(
            command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.home
        )
        self.processes[name] = process
        return process

    def spawn_triggerer(self, name: str) -> subprocess.Popen[bytes]:
        """Start one more triggerer."""
        return self.spawn(name, [*AIRFLOW, "triggerer"])

    def kill(self, name: str) -> None:
        """SIGKILL a process and its whole group, as a machine failure would."""
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def stop(self) -> None:
        """Stop every process: SIGTERM to each group, then SIGKILL what is left."""
        for process in self.processes.values():
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            _signal_group(process, signal.SIGKILL)
            process.wait(timeout=10)
        self.processes.clear()

    def airflow(self, *args: str) -> str:
        """Run an ``airflow`` CLI command against this deployment and return its output."""
        result = subprocess.run(
            [*AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=180, cwd=self.home
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"airflow {' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
            )
        return result.stdout

    def logs(self, lines: int = 40) -> str:
        """The tail of every component's log, for failure messages."""
        parts = []
        for log in sorted(self.home.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"==== {log.name}\n" + "\n".join(tail))
        return "\n".join(parts)

    # -- the emulator -----------------------------------------------------------------------

    def emulator(self, path: str, body: Any = None) -> Any:
        """Call one of the emulator's ``/_emulator/...`` control endpoints."""
        data = None if body is None else json.dumps(body).encode()
        method = "GET" if body is None and path in ("stats", "requests") else "POST"
        request = urllib.request.Request(f"{self.emulator_url}/_emulator/{path}", data=data, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def _emulator_up(self) -> bool:
        try:
            self.emulator("stats")
        except OSError:
            return False
        return True

    def _api_up(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/api/v2/version", timeout=5):
                return True
        except OSError as error:
            return getattr(error, "code", None) in (401, 403)

    # -- the metadata database (read only) ---------------------------------------------------------

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Read the deployment's SQLite metadata database."""
        with sqlite3.connect(f"file:{self.home / 'airflow.db'}?mode=ro", uri=True, timeout=30) as db:
            return db.execute(sql, params).fetchall()

    def states(self, dag_id: str, run_id: str, task_id: str) -> dict[int, str | None]:
        """The state of each map index of a task in a run."""
        rows = self.query(
            "SELECT map_index, state FROM task_instance WHERE dag_id=? AND run_id=? AND task_id=?",
            dag_id,
            run_id,
            task_id,
        )
        return {int(i): s for i, s in rows}

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        rows = self.query("SELECT state FROM dag_run WHERE dag_id=? AND run_id=?", dag_id, run_id)
        return rows[0][0] if rows else None

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int, key: str = "return_value") -> Any:
        rows = self.query(
            "SELECT value FROM xcom WHERE dag_id=? AND run_id=? AND task_id=? AND map_index=? AND key=?",
            dag_id,
            run_id,
            task_id,
            map_index,
            key,
        )
        return json.loads(rows[0][0]) if rows else None

    def trigger(self, dag_id: str) -> str:
        """Wait for the DAG to be parsed, then trigger a run and return its run id."""
        wait_for(lambda: self.query("SELECT 1 FROM dag WHERE dag_id=?", dag_id), 120, f"DAG {dag_id} parsed")
        self.airflow("dags", "unpause", dag_id)
        run_id = f"test_{int(time.time() * 1000)}"
        self.airflow("dags", "trigger", dag_id, "--run-id", run_id)
        return run_id


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
