"""A real Airflow deployment for tests: api-server, scheduler, dag-processor, triggerers and the emulator.

Every process runs in its own process group under a private AIRFLOW_HOME, on its own ports, and
is always stopped (SIGTERM, then SIGKILL to the group) when the deployment is closed. This one runs
on SQLite with the LocalExecutor; ``tests/topology.py`` builds the production topology on it.
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
from typing import Any, Protocol, TypeVar

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


class SqliteDatabase:
    """The metadata database of a one-machine deployment: a SQLite file, read only here."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"

    def query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30) as db:
            return db.execute(sql, params).fetchall()


class Database(Protocol):
    """What a deployment needs of its metadata database: its URL and a way to read it."""

    url: str

    def query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Run a read-only statement written with ``?`` placeholders."""
        ...


class Deployment:
    """One Airflow deployment on LocalExecutor and SQLite, and the emulator it talks to."""

    #: How many of each component :meth:`start` runs (subclasses run more).
    schedulers = 1
    triggerers = 1

    def __init__(self, home: Path, dag_files: list[Path], generation_seconds: float = 40.0) -> None:
        self.home = home
        self.api_port = free_port()
        self.emulator_port = free_port()
        self.emulator_url = f"http://127.0.0.1:{self.emulator_port}"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.generation_seconds = generation_seconds
        self.database: Database = SqliteDatabase(home / "airflow.db")
        self._token: str | None = None
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
        self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = self.database.url
        self.airflow("db", "migrate")
        self.migrated()
        self.spawn("api-server", [*AIRFLOW, "api-server", "--port", str(self.api_port)])
        self.spawn("dag-processor", [*AIRFLOW, "dag-processor"])
        for name in self.scheduler_names():
            self.spawn_scheduler(name)
        for i in range(1, self.triggerers + 1):
            self.spawn_triggerer(f"triggerer-{i}")
        self.spawn_workers()
        wait_for(self._api_up, 120, "the api-server")
        return self

    def migrated(self) -> None:
        """Called once the database is migrated, before any component starts."""

    def scheduler_names(self) -> list[str]:
        """``scheduler`` alone, or ``scheduler-1``, ``scheduler-2``, ... when there are several."""
        if self.schedulers == 1:
            return ["scheduler"]
        return [f"scheduler-{i}" for i in range(1, self.schedulers + 1)]

    def spawn_scheduler(self, name: str) -> subprocess.Popen[bytes]:
        """Start one (more) scheduler."""
        return self.spawn(name, [*AIRFLOW, "scheduler"])

    def spawn_workers(self) -> None:
        """Start the executor's workers: none, the LocalExecutor runs in the scheduler."""

    def spawn(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        """Start a process in its own process group, its output in ``<home>/<name>.log``."""
        log = open(self.home / f"{name}.log", "ab")  # noqa: SIM115 - the process owns it
        process = subprocess.Popen(
            command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.home
        )
        self.processes[name] = process
        return process

    def spawn_api_server(self, name: str, settings: dict[str, str]) -> int:
        """Start one more api-server on this deployment's database, on a port of its own; its port.

        ``settings`` go over the deployment's environment (an auth manager, say); the repository
        is on its ``PYTHONPATH``, so that it may name a class in ``tests``. Returns once it answers.
        """
        port = free_port()
        env = self.env
        self.env = {
            **env,
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "PYTHONPATH": os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(REPO)) if p),
            **settings,
        }
        try:
            self.spawn(name, [*AIRFLOW, "api-server", "--port", str(port)])
        finally:
            self.env = env
        wait_for(lambda: self._api_up(port), 120, f"the api-server {name}")
        return port

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

    def _api_up(self, port: int | None = None) -> bool:
        try:
            url = f"http://127.0.0.1:{port or self.api_port}/api/v2/version"
            with urllib.request.urlopen(url, timeout=5):
                return True
        except OSError as error:
            return getattr(error, "code", None) in (401, 403)

    # -- the metadata database (read only) ---------------------------------------------------------

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Read the deployment's metadata database (``?`` placeholders)."""
        return self.database.query(sql, params)

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

    def finish(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        """Wait for a run to end and return its state; still running at ``timeout`` fails, with the logs."""

        def done() -> str | None:
            state = self.run_state(dag_id, run_id)
            return state if state in ("success", "failed") else None

        try:
            return wait_for(done, timeout, f"run {run_id} of {dag_id} to finish", every=1)
        except TimeoutError as error:
            raise AssertionError(f"{error}\n{self.logs()}") from None

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Wait for the DAG to be parsed, then trigger a run (with ``conf``) and return its run id."""
        wait_for(lambda: self.query("SELECT 1 FROM dag WHERE dag_id=?", dag_id), 120, f"DAG {dag_id} parsed")
        self.rest("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        run_id = f"test_{int(time.time() * 1000)}"
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf or {}}
        self.rest("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)
        return run_id

    def rest(self, method: str, path: str, body: Any = None) -> Any:
        """Call Airflow's REST API as a script would, with a JWT from ``/auth/token`` (all users admins)."""
        if self._token is None:
            self._token = str(self._request("GET", "/auth/token", None, {})["access_token"])
        return self._request(method, path, body, {"Authorization": f"Bearer {self._token}"})

    def _request(self, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
        url = f"http://127.0.0.1:{self.api_port}{path}"
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json", **headers}
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
