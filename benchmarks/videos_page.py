"""Videos page benchmark: the first page of 1,000 videos, through Airflow's api-server, against a 1 s target.

An isolated Airflow (its own ``AIRFLOW_HOME``, a SQLite database migrated with ``airflow db migrate``)
whose DAG folder holds one real DAG file, parsed into a ``DagBag`` and written to the database with
``sync_bag_to_db`` as the dag-processor does:

- ``bench_videos``: ``prompts`` (the run's conf) -> ``create``, a mapped ``GrokCreateVideoOperator`` ->
  ``wait``, a mapped deferrable ``GrokVideoSensor`` on the creates' output;
- ``bench_videos_kept``: the same per video, with a ``GrokVideoToStorageOperator`` after the sensor (a
  mapped task group), its ``dest`` templated (the asset alias);
- ``bench_videos_batch``: one ``GrokCreateVideoBatchOperator``.

The videos are recorded the way real runs record them, without running the tasks' code. Runs are made
by the serialized DAG's ``create_dagrun`` (manual runs, spread over the last 2 days); their task
instances are created and expanded by Airflow's own scheduling step (``DagRun.update_state``, the loop
``dag.test()`` runs, which also sets each run's state); each task instance it finds schedulable is
given the end its task would have, and pushes what its task pushes as ``ti.xcom_push`` does (the Task
SDK's ``BaseXCom.serialize_value``, then ``XComModel.set(serialize=False)`` as the execution API
stores it; ``prompts`` also gets the ``TaskMap`` row the execution API writes for a mapped downstream).
The records come from the provider's own functions: ``purchase()`` on ``build_create_body()`` (a
price of 0.05 USD a second), ``outcome()`` for a sensor's ``video_outcome``, ``ItemResult.outcome()``
for the batch's. A keep's asset event is registered by ``TaskInstance.register_asset_changes_in_db``
(as the execution API does when the task succeeds) with the ``extra`` the transfer gives. Each run's
XComs are then dated when their task instance ran (``XComModel.set`` dates them now).

``--videos`` N: a batch of N/10 items and a kept run of N/10 videos (each at most 100), the rest in
``bench_videos`` runs of 100, the last two still running. Per 20 videos of a run that ended: 14 ready
(kept, in the kept run), 3 failed, 3 waits that timed out (no outcome: ``unknown``); per 5 videos of
a running run: 1 ready, 4 waiting (the sensor deferred). The batch ended: 7 in 10 ready, 2 failed, 1
timed out. With 1,000 videos: 530 ready, 70 kept, 125 failed, 115 unknown, 160 waiting.

The plugin's own ``bought()`` and ``resolve()`` must find N videos. Then each request is sent 3 times
to warm up and 20 times timed, one after the other, with a real JWT (``generate_jwt``): through
Airflow's api-server app in process (``create_app("all")``, ``TestClient``), then over HTTP on
127.0.0.1 to a real ``airflow api-server`` (one worker) on the same database, one keep-alive
connection:

- ``first page``: ``GET /grok_video/api/videos``, the page's first call (50 rows, the spend of all);
- ``failed``: ``?state=failed`` (every video's state read to filter);
- ``offset 950``: a later page;
- the floor, Airflow's own lists the same way: ``GET /api/v2/dags/bench_videos/dagRuns/~/taskInstances?limit=50``
  and ``/api/v2/dags/~/dagRuns/~/taskInstances/~/xcomEntries?limit=50``.

In process, each kind also lists the full (generation 2) garbage collections that fell inside its timed
requests, with their pauses: the api-server's heap holds all of Airflow, and such a pause, whichever
request it lands on, is what makes a request's max stand out from its p95.

Target: the first page's p95 under 1 s over HTTP (in process with ``--no-http``). When it is missed,
or with ``--profile``, one first-page handler call is profiled with cProfile and the hot spots are
printed. Run with ``make bench`` or ``python benchmarks/videos_page.py --videos 1000`` (about 3
minutes on 2 cores: the migration, the seeding, the api-server's start-up and 230 requests).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import http.client
import io
import json
import math
import os
import pstats
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

TARGET_S = 1.0
WARMUP = 3
TIMED = 20
RUN_SIZE = 100
PRICE_PER_SECOND = 0.05
CURRENCY = "USD"
MAPPED_DAG = "bench_videos"
KEPT_DAG = "bench_videos_kept"
BATCH_DAG = "bench_videos_batch"
DAG_IDS = (MAPPED_DAG, KEPT_DAG, BATCH_DAG)
KEPT_ROOT = "file:///srv/videos"

DAGS = '''
"""The Videos page benchmark's DAGs (benchmarks/videos_page.py): mapped create + sensor + keep, and a batch."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task, task_group

from airflow_grok_video.operators.grok_video import GrokCreateVideoOperator
from airflow_grok_video.operators.grok_video_batch import GrokCreateVideoBatchOperator
from airflow_grok_video.sensors.grok_video import GrokVideoSensor
from airflow_grok_video.transfers.grok_video_to_storage import GrokVideoToStorageOperator

START = pendulum.datetime(2026, 1, 1, tz="UTC")
IMAGE = "https://example.com/fox.png"
BATCH = [f"batch video {{i}}" for i in range({batch})]


@task
def prompts(params=None) -> list[str]:
    return list(params["prompts"])


with DAG("{mapped_dag}", schedule=None, start_date=START, max_active_tasks=64, params={{"prompts": []}}):
    creates = GrokCreateVideoOperator.partial(task_id="create", image_url=IMAGE, duration=10).expand(
        prompt=prompts()
    )
    GrokVideoSensor.partial(task_id="wait", poke_interval=30, timeout=3600, deferrable=True).expand(
        video_task_id=creates.output
    )


@task_group
def video(prompt):
    created = GrokCreateVideoOperator(task_id="create", prompt=prompt, image_url=IMAGE, duration=10)
    waited = GrokVideoSensor(
        task_id="wait", video_task_id=created.output, poke_interval=30, timeout=3600, deferrable=True
    )
    GrokVideoToStorageOperator(
        task_id="keep",
        video_url=waited.output,
        dest="{kept_root}/{{{{ run_id }}}}/{{{{ ti.map_index }}}}.mp4",
        purchase=created.output["purchase"],
    )


with DAG("{kept_dag}", schedule=None, start_date=START, max_active_tasks=64, params={{"prompts": []}}):
    video.expand(prompt=prompts())

with DAG("{batch_dag}", schedule=None, start_date=START):
    GrokCreateVideoBatchOperator(
        task_id="batch", items=BATCH, image_url=IMAGE, duration=15, min_success=1, deferrable=True
    )
'''


# -- the isolated Airflow --------------------------------------------------------------------------


def isolate(root: Path, batch: int) -> None:
    """Write the DAG file and point this process's Airflow (and its children) at ``root``."""
    from airflow_grok_video.pytest_plugin import isolate_airflow

    dags = root / "dags"
    dags.mkdir()
    (dags / "bench_videos.py").write_text(
        DAGS.format(
            batch=batch, mapped_dag=MAPPED_DAG, kept_dag=KEPT_DAG, batch_dag=BATCH_DAG, kept_root=KEPT_ROOT
        )
    )
    isolate_airflow([dags], home=root)
    os.environ.update(
        {
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__CORE__FERNET_KEY": "",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            # A kept video's asset is new: Airflow warns as it creates it, as for a real transfer's.
            "AIRFLOW__LOGGING__NAMESPACE_LEVELS": "airflow.assets.manager=ERROR",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        }
    )


def migrate() -> float:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )
    if result.returncode:
        raise SystemExit(f"airflow db migrate failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


# -- seeding ---------------------------------------------------------------------------------------


def sync_dags() -> None:
    """Parse the DAG folder and write it to the database, as the dag-processor does."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.utils.session import create_session

    manager = DagBundlesManager()
    with create_session() as session:
        manager.sync_bundles_to_db(session=session)
    for bundle in manager.get_all_dag_bundles():
        bundle.initialize()
        bag = BundleDagBag(bundle.path, bundle_path=bundle.path, bundle_name=bundle.name)
        if bag.import_errors:
            raise SystemExit(f"the benchmark's DAG file does not import: {bag.import_errors}")
        sync_bag_to_db(bag, bundle.name, bundle.version)


def plan(videos: int) -> tuple[int, int, list[tuple[int, bool]]]:
    """The batch's size, the kept run's size, and each plain mapped run's (size, ended)."""
    batch = max(1, min(RUN_SIZE, videos // 10))
    kept = max(1, min(RUN_SIZE, videos // 10))
    rest = videos - batch - kept
    sizes = [RUN_SIZE] * (rest // RUN_SIZE) + ([rest % RUN_SIZE] if rest % RUN_SIZE else [])
    running = min(2, max(0, len(sizes) - 1))
    return batch, kept, [(size, i < len(sizes) - running) for i, size in enumerate(sizes)]


def mapped_fate(index: int, ended: bool, keeps: bool = False) -> str:
    """How video ``index`` of a mapped run ends: ready, kept, failed, timeout (no outcome) or waiting."""
    if not ended:
        return "ready" if index % 5 == 0 else "waiting"
    slot = index % 20
    return ("kept" if keeps else "ready") if slot < 14 else "failed" if slot < 17 else "timeout"


def batch_fate(index: int) -> str:
    slot = index % 10
    return "success" if slot < 7 else "failed" if slot < 9 else "timeout"


class Seeder:
    """Records runs of the benchmark's DAGs in the database as their tasks would have."""

    def __init__(self) -> None:
        from airflow.models.dagbag import DBDagBag
        from airflow.utils.session import create_session

        from airflow_grok_video.hooks.grok_video import Price

        self.price = Price(PRICE_PER_SECOND, CURRENCY)
        self.counter = 0
        with create_session() as session:
            bag = DBDagBag()
            found = {d: bag.get_latest_version_of_dag(d, session=session) for d in DAG_IDS}
        missing = sorted(d for d, dag in found.items() if dag is None)
        if missing:
            raise SystemExit(f"DAGs not in the database after the sync: {missing}")
        self.dags = {d: dag for d, dag in found.items() if dag is not None}

    def video_id(self) -> str:
        self.counter += 1
        return f"video_{self.counter:06d}_{secrets.token_hex(4)}"

    def body(self, prompt: str, duration: int) -> dict[str, Any]:
        from airflow_grok_video.validation import build_create_body

        return build_create_body(prompt=prompt, image_url="https://example.com/fox.png", duration=duration)

    def url(self, video_task_id: str) -> str:
        return (
            f"https://cdn.example.com/videos/{video_task_id}.mp4?Expires=1&Signature={secrets.token_hex(16)}"
        )

    def start_run(self, dag_id: str, run_id: str, when: datetime, conf: dict[str, Any], session: Any) -> Any:
        from airflow.utils.state import DagRunState
        from airflow.utils.types import DagRunTriggeredByType, DagRunType

        return self.dags[dag_id].create_dagrun(
            run_id=run_id,
            logical_date=None,
            data_interval=None,
            run_after=when,
            conf=conf,
            run_type=DagRunType.MANUAL,
            triggered_by=DagRunTriggeredByType.REST_API,
            triggering_user_name="admin",
            state=DagRunState.RUNNING,
            start_date=when,
            session=session,
        )

    def drive(
        self, run: Any, when: datetime, run_task: Callable[[Any, datetime], None], session: Any
    ) -> None:
        """The scheduler's step until nothing is schedulable; each schedulable task instance ends at once."""
        step = 0
        while True:
            schedulable, _ = run.update_state(session=session, execute_callbacks=False)
            if not schedulable:
                break
            step += 1
            for ti in sorted(schedulable, key=lambda t: (t.task_id, t.map_index)):
                ti.try_number += 1
                run_task(ti, when + timedelta(seconds=20 * step + max(ti.map_index, 0)))
            session.flush()
        if run.end_date is not None:
            run.end_date = when + timedelta(minutes=30)

    def end(self, ti: Any, at: datetime, state: str) -> None:
        ti.state = state
        ti.queued_dttm = ti.start_date = at
        if state != "deferred":
            ti.end_date = at + timedelta(seconds=2)
            ti.duration = 2.0

    def push(self, ti: Any, key: str, value: Any, session: Any) -> None:
        """What ``ti.xcom_push`` does: the Task SDK serializes, the execution API stores it as it came."""
        from airflow.models.xcom import XComModel
        from airflow.sdk.bases.xcom import BaseXCom

        ids = {"dag_id": ti.dag_id, "task_id": ti.task_id, "run_id": ti.run_id, "map_index": ti.map_index}
        serialized = BaseXCom.serialize_value(value, key=key, **ids)
        XComModel.set(key=key, value=serialized, serialize=False, session=session, **ids)

    def mapped_run(
        self, dag_id: str, run_id: str, size: int, ended: bool, when: datetime, session: Any
    ) -> Counter[str]:
        from airflow.api_fastapi.execution_api.datamodels.asset import AssetProfile
        from airflow.models.taskinstance import TaskInstance
        from airflow.models.taskmap import TaskMap

        from airflow_grok_video.operators.grok_video import purchase
        from airflow_grok_video.outcome import outcome
        from airflow_grok_video.transfers.grok_video_to_storage import DEFAULT_ASSET_ALIAS

        prompts = [f"{run_id} video {i}: a heron lands on a quiet pond at dawn" for i in range(size)]
        run = self.start_run(dag_id, run_id, when, {"prompts": prompts}, session)
        keeps = dag_id == KEPT_DAG
        bought: dict[int, dict[str, Any]] = {}
        fates: Counter[str] = Counter()

        def run_task(ti: Any, at: datetime) -> None:
            task = ti.task_id.rsplit(".", 1)[-1]  # the kept DAG's tasks are in a mapped task group
            if task == "prompts":
                self.push(ti, "return_value", prompts, session)
                session.merge(TaskMap.from_task_instance_xcom(ti, prompts))
                self.end(ti, at, "success")
            elif task == "create":
                video_task_id = self.video_id()
                record = purchase(
                    video_task_id, self.body(prompts[ti.map_index], 10), self.price, reattached=False
                )
                bought[ti.map_index] = record
                self.push(ti, "purchase", record, session)
                self.push(ti, "return_value", video_task_id, session)
                self.end(ti, at, "success")
            elif task == "wait":
                record = bought[ti.map_index]
                fate = mapped_fate(ti.map_index, ended, keeps)
                fates[fate] += 1
                if fate in ("ready", "kept"):
                    url = self.url(record["video_task_id"])
                    expires = at + timedelta(days=3)
                    self.push(ti, "video_url", url, session)
                    self.push(
                        ti,
                        "video_outcome",
                        outcome(record["video_task_id"], "success", video_url=url, url_expires_at=expires),
                        session,
                    )
                    self.push(ti, "return_value", url, session)
                    self.end(ti, at, "success")
                elif fate == "failed":
                    self.push(
                        ti,
                        "video_outcome",
                        outcome(record["video_task_id"], "failed", error="content policy"),
                        session,
                    )
                    self.end(ti, at, "failed")
                elif fate == "timeout":
                    self.end(ti, at, "failed")
                else:
                    self.end(ti, at, "deferred")
            elif task == "keep":
                uri = f"{KEPT_ROOT}/{ti.run_id}/{ti.map_index}.mp4"
                about = {
                    k: v
                    for k, v in bought[ti.map_index].items()
                    if k not in ("reattached", "estimated_cost", "currency")
                }
                extra = {
                    "uri": uri,
                    "bytes": 4_718_592,
                    **about,
                    "source_url_expires_at": (at + timedelta(days=3)).isoformat(),
                }
                event = {
                    "dest_asset_key": {"name": uri, "uri": uri},
                    "source_alias_name": DEFAULT_ASSET_ALIAS,
                    "extra": extra,
                    "dest_asset_extra": {},
                }
                TaskInstance.register_asset_changes_in_db(
                    ti, [AssetProfile(name=DEFAULT_ASSET_ALIAS, type="AssetAlias")], [event], session=session
                )
                self.push(ti, "return_value", uri, session)
                self.end(ti, at, "success")
            else:
                raise AssertionError(f"unexpected task {ti.task_id}")

        self.drive(run, when, run_task, session)
        self.move_xcoms(run, when, session)
        return fates

    def batch_run(self, size: int, when: datetime, session: Any) -> Counter[str]:
        from airflow_grok_video.batch import ItemResult, outcomes
        from airflow_grok_video.operators.grok_video import purchase

        run = self.start_run(BATCH_DAG, "bench_batch", when, {}, session)
        fates: Counter[str] = Counter()

        def run_task(ti: Any, at: datetime) -> None:
            results, purchases = [], []
            for index in range(size):
                video_task_id = self.video_id()
                body = self.body(f"batch video {index}", 15)
                purchases.append(
                    {"index": index, **purchase(video_task_id, body, self.price, reattached=False)}
                )
                fate = batch_fate(index)
                fates[fate] += 1
                if fate == "success":
                    result = ItemResult(
                        index, "success", video_task_id, video_url=self.url(video_task_id), seconds=15
                    )
                elif fate == "failed":
                    result = ItemResult(index, "failed", video_task_id, error="content policy", seconds=15)
                else:
                    result = ItemResult(index, "timeout", video_task_id, error="timed out", seconds=15)
                results.append(result)
            self.push(ti, "purchase", purchases, session)
            self.push(ti, "video_outcome", outcomes(results), session)
            self.push(ti, "return_value", [r.to_dict() for r in results], session)
            self.end(ti, at, "success")

        self.drive(run, when, run_task, session)
        self.move_xcoms(run, when, session)
        return fates

    def move_xcoms(self, run: Any, when: datetime, session: Any) -> None:
        """Date the run's XComs as its tasks pushed them (``XComModel.set`` dates them now)."""
        from airflow.models.taskinstance import TaskInstance
        from airflow.models.xcom import XComModel
        from sqlalchemy import select

        ends = {
            (ti.task_id, ti.map_index): ti.start_date
            for ti in session.scalars(
                select(TaskInstance).where(
                    TaskInstance.dag_id == run.dag_id, TaskInstance.run_id == run.run_id
                )
            )
        }
        for xcom in session.scalars(
            select(XComModel).where(XComModel.dag_id == run.dag_id, XComModel.run_id == run.run_id)
        ):
            xcom.timestamp = (ends.get((xcom.task_id, xcom.map_index)) or when) + timedelta(seconds=1)


def seed(videos: int) -> dict[str, Any]:
    from airflow.utils.session import create_session

    started = time.perf_counter()
    sync_dags()
    batch, kept, runs = plan(videos)
    seeder = Seeder()
    now = datetime.now(timezone.utc).replace(microsecond=0)
    first = now - timedelta(hours=48)
    step = timedelta(hours=46) / max(1, len(runs))
    fates: Counter[str] = Counter()
    with create_session() as session:
        fates.update({f"batch {k}": n for k, n in seeder.batch_run(batch, first, session).items()})
    with create_session() as session:
        found = seeder.mapped_run(KEPT_DAG, "bench_kept", kept, True, first + step / 2, session)
        fates.update({f"kept run {k}": n for k, n in found.items()})
    for number, (size, ended) in enumerate(runs):
        with create_session() as session:
            when = first + step * (number + 1)
            fates.update(seeder.mapped_run(MAPPED_DAG, f"bench_{number:03d}", size, ended, when, session))
    return {
        "seconds": time.perf_counter() - started,
        "runs": len(runs) + 2,
        "batch": batch,
        "kept_run": kept,
        "fates": dict(sorted(fates.items())),
    }


def check(videos: int) -> dict[str, int]:
    """What the plugin itself reads: every video, and its state."""
    from airflow.utils.session import create_session

    from airflow_grok_video.plugins.videos import Filters, bought, resolve

    with create_session() as session:
        found = resolve(session, bought(session, set(DAG_IDS), Filters()))
    if len(found) != videos:
        raise SystemExit(f"the plugin finds {len(found)} videos, not {videos}")
    return dict(Counter(video.state for video in found))


def database_counts() -> dict[str, int]:
    from airflow.models.asset import AssetEvent
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        return {
            name: int(session.scalar(select(func.count()).select_from(model)) or 0)
            for name, model in (
                ("dag_runs", DagRun),
                ("task_instances", TaskInstance),
                ("xcoms", XComModel),
                ("asset_events", AssetEvent),
            )
        }


# -- timing ----------------------------------------------------------------------------------------

PLUGIN = "/grok_video/api/videos"
FLOORS = {
    "floor: taskInstances?limit=50": f"/api/v2/dags/{MAPPED_DAG}/dagRuns/~/taskInstances?limit=50",
    "floor: xcomEntries?limit=50": "/api/v2/dags/~/dagRuns/~/taskInstances/~/xcomEntries?limit=50",
}
KINDS = {
    "first page": PLUGIN,
    "failed": f"{PLUGIN}?state=failed",
    "offset 950": f"{PLUGIN}?offset={{last}}",
    **FLOORS,
}


def figures(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": 1000 * ordered[(len(ordered) - 1) // 2],
        "p95_ms": 1000 * ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)],
        "max_ms": 1000 * ordered[-1],
    }


def measure(
    get: Callable[[str], tuple[int, bytes]], paths: dict[str, str], full_gc: list[float] | None = None
) -> dict[str, dict[str, Any]]:
    """Each kind: 3 warm-up requests, then 20 timed, one after the other.

    ``full_gc``, when given, is filled with the pauses of this process's full (generation 2) garbage
    collections: each kind then also gives the ones that fell inside its timed requests.
    """
    out: dict[str, dict[str, Any]] = {}
    for kind, path in paths.items():
        for _ in range(WARMUP):
            status, body = get(path)
            if status != 200:
                raise SystemExit(f"{kind}: {path} answered {status}: {body[:500]!r}")
        samples = []
        collected = len(full_gc) if full_gc is not None else 0
        for _ in range(TIMED):
            started = time.perf_counter()
            status, body = get(path)
            samples.append(time.perf_counter() - started)
            if status != 200:
                raise SystemExit(f"{kind}: {path} answered {status}: {body[:500]!r}")
        answer = json.loads(body)
        rows = answer.get("videos", answer.get("task_instances", answer.get("xcom_entries", [])))
        out[kind] = {"path": path, **figures(samples), "rows": len(rows), "bytes": len(body)}
        if "total" in answer:
            out[kind]["total"] = answer["total"]
        elif "total_entries" in answer:
            out[kind]["total"] = answer["total_entries"]
        if full_gc is not None:
            out[kind]["full_gc_ms"] = [round(1000 * pause) for pause in full_gc[collected:]]
    return out


def jwt() -> str:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return str(get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin")))


def in_process(paths: dict[str, str]) -> tuple[dict[str, dict[str, Any]], str]:
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    full_gc: list[float] = []
    started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if info["generation"] == 2:
            if phase == "start":
                started[0] = time.perf_counter()
            else:
                full_gc.append(time.perf_counter() - started[0])

    with TestClient(create_app("all")) as client:
        token = jwt()
        headers = {"Authorization": f"Bearer {token}"}

        def get(path: str) -> tuple[int, bytes]:
            response = client.get(path, headers=headers)
            return response.status_code, response.content

        gc.callbacks.append(on_gc)
        try:
            return measure(get, paths, full_gc), token
        finally:
            gc.callbacks.remove(on_gc)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def over_http(root: Path, token: str, paths: dict[str, str]) -> tuple[dict[str, dict[str, Any]], float]:
    """A real ``airflow api-server`` (one worker) on the same database; one keep-alive connection."""
    port = free_port()
    log = open(root / "api-server.log", "ab")  # noqa: SIM115 - closed below
    started = time.perf_counter()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow",
            "api-server",
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--workers",
            "1",
        ],
        env={
            **os.environ,
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        },
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=root,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None:
                raise SystemExit(
                    f"airflow api-server exited ({server.returncode}):\n{tail(root / 'api-server.log')}"
                )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=5):
                    break
            except OSError as error:
                if getattr(error, "code", None) in (401, 403):
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"airflow api-server not up after 180 s:\n{tail(root / 'api-server.log')}")
            time.sleep(0.5)
        start_up = time.perf_counter() - started
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

        def get(path: str) -> tuple[int, bytes]:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()

        try:
            return measure(get, paths), start_up
        finally:
            connection.close()
    finally:
        with suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        log.close()


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# -- profiling -------------------------------------------------------------------------------------


def profile(top: int = 25) -> dict[str, Any]:
    """One first-page handler call (the user's DAGs, then the route's function) under cProfile.

    The route's function is called directly, in this thread, with the session and the readable DAGs the
    app would give it: a request through the app runs it in a worker thread, out of cProfile's sight.
    """
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.utils.session import create_session
    from fastapi.routing import APIRoute

    from airflow_grok_video.plugins import app as plugin_app
    from airflow_grok_video.plugins.videos import Filters

    [route] = [
        r for r in plugin_app.create_app().routes if isinstance(r, APIRoute) and r.path == "/api/videos"
    ]
    user = SimpleAuthManagerUser(username="admin", role="admin")
    get_auth_manager()

    def call() -> dict[str, Any]:
        with create_session() as session:
            dags = plugin_app.readable_dags(user)
            return dict(route.endpoint(session=session, dags=dags, filters=Filters(), offset=0, limit=50))

    call()  # warm
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    call()
    profiler.disable()
    seconds = time.perf_counter() - started
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    plugin = {
        f"{Path(file).name}:{line}({name})": round(stats.stats[key][3] * 1000, 1)  # type: ignore[attr-defined]
        for key in stats.stats  # type: ignore[attr-defined]
        for file, line, name in [key]
        if "airflow_grok_video/plugins" in file
    }
    return {
        "seconds": seconds,
        "plugin_cumulative_ms": dict(sorted(plugin.items(), key=lambda kv: -kv[1])),
        "text": text.getvalue(),
    }


# -- report ----------------------------------------------------------------------------------------


def table(title: str, results: dict[str, dict[str, Any]]) -> None:
    gc_column = any("full_gc_ms" in r for r in results.values())
    print(f"\n{title}")
    print(
        f"  {'request':34} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'rows':>5} {'total':>6} {'KiB':>6}"
        + ("  full GC pauses in the timed requests, ms" if gc_column else "")
    )
    for kind, r in results.items():
        pauses = ", ".join(str(ms) for ms in r.get("full_gc_ms", [])) or "none"
        print(
            f"  {kind:34} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f} {r['max_ms']:8.1f} {r['rows']:5d} "
            f"{r.get('total', ''):>6} {r['bytes'] / 1024:6.1f}" + (f"  {pauses}" if gc_column else "")
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=1000, help="videos in the database (default 1000)")
    parser.add_argument(
        "--json", type=Path, default=Path("build/videos-page.json"), help="where the figures go"
    )
    parser.add_argument("--no-http", action="store_true", help="in process only (no airflow api-server)")
    parser.add_argument(
        "--profile", action="store_true", help="profile the first page even when it meets the target"
    )
    parser.add_argument(
        "--keep-home", action="store_true", help="keep the Airflow home (its path is printed)"
    )
    args = parser.parse_args()
    if args.videos < 2:
        parser.error("--videos must be at least 2")

    root = Path(tempfile.mkdtemp(prefix="grok-videos-page-"))
    try:
        batch, kept, runs = plan(args.videos)
        isolate(root, batch)
        print(f"Videos page benchmark: {args.videos} videos, Airflow home {root}")
        print(
            f"  load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs"
        )
        print(f"  airflow db migrate: {migrate():.1f} s")
        seeded = seed(args.videos)
        counts = database_counts()
        print(
            f"  seeded {seeded['runs']} runs (a batch of {batch}, {kept} kept, {len(runs)} mapped) in "
            f"{seeded['seconds']:.1f} s: {counts}"
        )
        states = check(args.videos)
        print(f"  the plugin's bought()/resolve(): {args.videos} videos, {dict(sorted(states.items()))}")

        paths = {kind: path.format(last=max(0, args.videos - 50)) for kind, path in KINDS.items()}
        if args.videos != 1000:
            paths = {kind.replace("offset 950", f"offset {args.videos - 50}"): p for kind, p in paths.items()}
        local, token = in_process(paths)
        table("In process (TestClient on create_app('all'), JWT bearer):", local)
        remote: dict[str, dict[str, Any]] | None = None
        start_up = None
        if not args.no_http:
            remote, start_up = over_http(root, token, paths)
            table(f"Over HTTP (airflow api-server, 1 worker, 127.0.0.1; up in {start_up:.1f} s):", remote)

        counted = remote if remote is not None else local
        where = "over HTTP" if remote is not None else "in process"
        first = counted["first page"]
        met = first["p95_ms"] <= TARGET_S * 1000
        floor = min(v["p50_ms"] for k, v in counted.items() if k.startswith("floor"))
        print(
            f"\nFirst page of {args.videos} videos {where}: p50 {first['p50_ms']:.0f} ms, p95 {first['p95_ms']:.0f} ms, "
            f"max {first['max_ms']:.0f} ms; Airflow's own list (the floor) p50 {floor:.0f} ms "
            f"({first['p50_ms'] / floor:.1f}x)"
        )
        print(f"Target (first page p95 under {TARGET_S:.0f} s): {'met' if met else 'NOT met'}")
        print(f"  load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

        profiled = None
        if not met or args.profile:
            profiled = profile()
            print(
                f"\nProfile of one first-page handler call ({profiled['seconds'] * 1000:.0f} ms under cProfile):"
            )
            for name, ms in list(profiled["plugin_cumulative_ms"].items())[:12]:
                print(f"  {ms:8.1f} ms  {name}")
            print(profiled["text"])

        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "videos": args.videos,
                    "target_s": TARGET_S,
                    "met": met,
                    "counted": where,
                    "seeded": seeded,
                    "database": counts,
                    "states": states,
                    "in_process": local,
                    "http": remote,
                    "api_server_start_s": start_up,
                    "cpus": os.cpu_count(),
                    "load_average_after": os.getloadavg(),
                    "profile": None
                    if profiled is None
                    else {k: v for k, v in profiled.items() if k != "text"},
                },
                indent=2,
            )
        )
        print(f"Figures written to {args.json}")
        return 0
    finally:
        if args.keep_home:
            print(f"Airflow home kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
