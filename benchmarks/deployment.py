"""Deployment benchmark: what a video costs in a real Airflow, four ways, against the emulator.

A real api-server, scheduler (LocalExecutor, parallelism 4), dag-processor and triggerer on SQLite
(``tests/deployment.py``), the emulator beside them; N mapped videos per pattern, one pattern at a
time, the emulator reset in between:

- ``sensor``: ``GrokCreateVideoOperator`` + ``GrokVideoSensor(deferrable=True)``;
- ``batch``: ``GrokCreateVideoBatchOperator(deferrable=True)``, one task buying all N videos (at most
  ``--batch-in-flight`` creates at once) and waiting for them in one trigger; compared with ``sensor``
  measured in the same deployment (the mapped pattern it replaces);
- ``wait``: ``GrokCreateVideoOperator(wait_for_completion=True, deferrable=True)``;
- ``peer``, what a user writes without this provider: ``HttpOperator`` POST to the create endpoint +
  ``HttpSensor(response_check=..., mode="reschedule")`` on the query endpoint (``HttpSensor`` cannot
  defer with a ``response_check``, so every poke is a worker run; it does not hand the URL on either).

Per pattern: worker runs per video (the supervisor logs one ``Workload finished ... ExecuteTask``
line per worker run), worker seconds per video (the sum of those lines' ``duration=``), API queries
per video (the emulator's count), wall time from the run's start to its end, creates seen by the
emulator (must equal N), and task instances the scheduler ran for the run (``task_instance`` rows).
Sensors, the batch and the peer poke every ``--poke-interval`` seconds.

"Today's code" (``--today``, default ``28a0907``: main before the trigger ended successful waits) is
measured in a second deployment whose Airflow components all import that commit's
``airflow_grok_video`` (``git archive`` into a temporary directory, put first on ``PYTHONPATH``); a
task reports the package path each deployment's workers import, and the trigger logs are checked
for the line a trigger that ends its task writes. ``--today none`` skips it (and that commit has no
batch: the batch is measured in this checkout's deployment only).
Run with ``make bench`` (about 15 minutes on 2 cores) or ``python benchmarks/deployment.py --videos 20``;
the batch at full size beside its mapped anchor: ``--videos 200 --patterns sensor,batch --today none``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.deployment import Deployment  # noqa: E402

PATTERNS = {
    "sensor": "create + GrokVideoSensor(deferrable=True)",
    "batch": "GrokCreateVideoBatchOperator(deferrable=True)",
    "wait": "GrokCreateVideoOperator(wait_for_completion=True, deferrable=True)",
    "peer": 'HttpOperator + HttpSensor(response_check, mode="reschedule")',
}
ENDS_IN_TRIGGERER = "the task ends here, without going back to a worker"
WORKLOAD = re.compile(
    r"Workload finished.*?duration=([0-9.]+).*?workload_id=([0-9a-f-]+) workload_type=ExecuteTask"
)

# Patterns that only this checkout's package has (not measured for today's code).
NEW_PATTERNS = ("batch",)

# The DAGs, written into the deployment's DAG folder; BENCH_VIDEOS, BENCH_POKE and BENCH_IN_FLIGHT
# come from its environment.
DAGS = """
from __future__ import annotations

import json
import os

import pendulum
from airflow.sdk import DAG, task

from airflow_grok_video.operators.grok_video import GrokCreateVideoOperator
from airflow_grok_video.sensors.grok_video import GrokVideoSensor

START = pendulum.datetime(2026, 1, 1, tz="UTC")
IMAGE = "https://example.com/fox.png"
VIDEOS = int(os.environ.get("BENCH_VIDEOS", "20"))
POKE = float(os.environ.get("BENCH_POKE", "10"))
IN_FLIGHT = int(os.environ.get("BENCH_IN_FLIGHT", "4"))
PROMPTS = [f"bench video {i}" for i in range(VIDEOS)]


@task
def package() -> str:
    import airflow_grok_video

    return str(airflow_grok_video.__file__)


with DAG("bench_package", schedule=None, start_date=START):
    package()

with DAG("bench_sensor", schedule=None, start_date=START, max_active_tasks=64):
    creates = GrokCreateVideoOperator.partial(task_id="create", image_url=IMAGE).expand(prompt=PROMPTS)
    GrokVideoSensor.partial(task_id="wait", poke_interval=POKE, timeout=1800, deferrable=True).expand(
        video_task_id=creates.output
    )

try:  # not in today's code
    from airflow_grok_video.operators.grok_video_batch import GrokCreateVideoBatchOperator
except ImportError:
    GrokCreateVideoBatchOperator = None

if GrokCreateVideoBatchOperator is not None:
    with DAG("bench_batch", schedule=None, start_date=START):
        GrokCreateVideoBatchOperator(
            task_id="batch", items=PROMPTS, image_url=IMAGE, max_in_flight=IN_FLIGHT, poll_interval=POKE,
            timeout=1800, deferrable=True,
        )

with DAG("bench_wait", schedule=None, start_date=START, max_active_tasks=64):
    GrokCreateVideoOperator.partial(
        task_id="create", image_url=IMAGE, wait_for_completion=True, deferrable=True, poll_interval=POKE,
        timeout=1800,
    ).expand(prompt=PROMPTS)


def _video_task_id(response):
    return response.json()["data"]["task_id"]


def _query_path(video_task_id):
    return f"/api/open-api/v1/videos/{video_task_id}"


def _done(response):
    data = response.json()["data"]
    if data["status"] == "failed":
        raise ValueError(f"video {data['task_id']} failed: {data.get('error_message')}")
    return data["status"] in ("completed", "success")


with DAG("bench_peer", schedule=None, start_date=START, max_active_tasks=64):
    from airflow.providers.http.operators.http import HttpOperator
    from airflow.providers.http.sensors.http import HttpSensor

    HEADERS = {"Authorization": "Bearer sk_bench_peer", "Content-Type": "application/json"}
    bodies = [
        json.dumps({"model": "grok-1.5", "prompt": p, "image_urls": [IMAGE]}) for p in PROMPTS
    ]
    posts = HttpOperator.partial(
        task_id="create", http_conn_id="grok_http", endpoint="/api/open-api/v1/grok/videos",
        method="POST", headers=HEADERS, response_filter=_video_task_id,
    ).expand(data=bodies)
    HttpSensor.partial(
        task_id="wait", http_conn_id="grok_http", method="GET", headers=HEADERS,
        response_check=_done, mode="reschedule", poke_interval=POKE, timeout=1800,
    ).expand(endpoint=posts.output.map(_query_path))
"""


@dataclass
class Figures:
    """One pattern's figures in one deployment."""

    videos: int
    worker_runs: float
    worker_seconds: float
    queries: float
    wall_seconds: float
    creates: int
    state: str
    task_instances: int = 0


class BenchDeployment(Deployment):
    """A deployment whose Airflow components import ``airflow_grok_video`` from ``package_root`` if given."""

    def __init__(
        self, home: Path, dag_file: Path, generation_seconds: float, package_root: Path | None
    ) -> None:
        super().__init__(home, [dag_file], generation_seconds=generation_seconds)
        if package_root is not None:
            self.env["PYTHONPATH"] = str(package_root)

    def spawn(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        if name != "emulator":
            return super().spawn(name, command)
        env = self.env  # the emulator is this checkout's in both deployments: the same API behaviour
        self.env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
        try:
            return super().spawn(name, command)
        finally:
            self.env = env


def workloads(deployment: Deployment) -> dict[str, list[float]]:
    """Durations of the finished worker runs, by task instance id (without dashes, as SQLite has it)."""
    runs: dict[str, list[float]] = {}
    log = (deployment.home / "scheduler.log").read_text(errors="replace")
    for match in WORKLOAD.finditer(log):
        runs.setdefault(match.group(2).replace("-", ""), []).append(float(match.group(1)))
    return runs


def ti_ids(deployment: Deployment, dag_id: str, run_id: str) -> set[str]:
    rows = deployment.query("SELECT id FROM task_instance WHERE dag_id=? AND run_id=?", dag_id, run_id)
    rows += deployment.query(
        "SELECT task_instance_id FROM task_instance_history WHERE dag_id=? AND run_id=?", dag_id, run_id
    )
    return {uuid.UUID(str(ti_id)).hex for (ti_id,) in rows}


def worker_runs(deployment: Deployment, dag_id: str, run_id: str) -> list[float]:
    """Every finished worker run's duration in the run, once the supervisor has logged them all."""
    ids = ti_ids(deployment, dag_id, run_id)
    last: list[float] = []
    stable_since = time.monotonic()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = workloads(deployment)
        durations = [d for ti in ids for d in found.get(ti, [])]
        if len(durations) != len(last):
            last, stable_since = durations, time.monotonic()
        elif time.monotonic() - stable_since > 5:
            break
        time.sleep(1)
    return last


def measure(deployment: Deployment, dag_id: str, videos: int) -> Figures:
    deployment.emulator("reset", {})
    run_id = deployment.trigger(dag_id)
    state = deployment.finish(dag_id, run_id, timeout=1800)
    [(start, end)] = deployment.query(
        "SELECT start_date, end_date FROM dag_run WHERE dag_id=? AND run_id=?", dag_id, run_id
    )
    wall = _timestamp(end) - _timestamp(start)
    durations = worker_runs(deployment, dag_id, run_id)
    if state != "success":
        print(f"{dag_id} ended {state}:\n{failed_task_logs(deployment, dag_id, run_id)}", file=sys.stderr)
    stats = deployment.emulator("stats")
    [(task_instances,)] = deployment.query(
        "SELECT COUNT(*) FROM task_instance WHERE dag_id=? AND run_id=?", dag_id, run_id
    )
    return Figures(
        videos=videos,
        worker_runs=len(durations) / videos,
        worker_seconds=sum(durations) / videos,
        queries=stats["queries"] / videos,
        wall_seconds=wall,
        creates=int(stats["creates"]),
        state=str(state),
        task_instances=int(task_instances),
    )


def failed_task_logs(deployment: Deployment, dag_id: str, run_id: str, lines: int = 15) -> str:
    """The last lines of each failed task instance's log."""
    rows = deployment.query(
        "SELECT task_id, map_index FROM task_instance WHERE dag_id=? AND run_id=? AND state='failed'",
        dag_id,
        run_id,
    )
    parts = []
    for task_id, map_index in rows[:3]:
        folder = deployment.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        for log in sorted(folder.rglob("*.log")):
            if map_index < 0 or f"map_index={map_index}" in str(log):
                tail = log.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"==== {log}\n" + "\n".join(line[:400] for line in tail))
    return "\n".join(parts)


def _timestamp(value: Any) -> float:
    from datetime import datetime, timezone

    parsed = datetime.fromisoformat(str(value))
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).timestamp()


def trigger_endings(deployment: Deployment) -> int:
    """Lines written by triggers that ended their task themselves (this checkout's triggers only)."""
    return sum(
        log.read_text(errors="replace").count(ENDS_IN_TRIGGERER)
        for log in (deployment.home / "logs").rglob("*.trigger.*.log")
    )


def run_deployment(
    label: str, patterns: list[str], args: argparse.Namespace, package_root: Path | None
) -> dict[str, Figures]:
    with tempfile.TemporaryDirectory(prefix=f"bench-deploy-{label}-") as tmp:
        dag_file = Path(tmp) / "bench_deployment_dags.py"
        dag_file.write_text(DAGS)
        deployment = BenchDeployment(Path(tmp) / "home", dag_file, args.generation_seconds, package_root)
        deployment.env.update(
            BENCH_VIDEOS=str(args.videos),
            BENCH_POKE=str(args.poke_interval),
            BENCH_IN_FLIGHT=str(args.batch_in_flight),
            AIRFLOW_CONN_GROK_HTTP=json.dumps(
                {"conn_type": "http", "host": "127.0.0.1", "port": deployment.emulator_port, "schema": "http"}
            ),
        )
        print(f"[{label}] starting a deployment in {deployment.home}", flush=True)
        try:
            deployment.start()
            run_id = deployment.trigger("bench_package")
            deployment.finish("bench_package", run_id, timeout=300)
            imported = deployment.xcom("bench_package", run_id, "package", -1)
            print(f"[{label}] workers import {imported}", flush=True)
            expected = (package_root or REPO) / "airflow_grok_video" / "__init__.py"
            if Path(str(imported)) != expected:
                raise RuntimeError(f"[{label}] workers import {imported}, not {expected}")
            figures = {}
            for pattern in patterns:
                figures[pattern] = measure(deployment, f"bench_{pattern}", args.videos)
                print(f"[{label}] {pattern}: {figures[pattern]}", flush=True)
            print(
                f"[{label}] trigger logs with {ENDS_IN_TRIGGERER!r}: {trigger_endings(deployment)}",
                flush=True,
            )
        except BaseException:
            print(deployment.logs(30), file=sys.stderr)
            raise
        finally:
            deployment.stop()
        return figures


@contextmanager
def checkout(commit: str) -> Iterator[Path]:
    """That commit's ``airflow_grok_video`` in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{commit}-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", commit, "airflow_grok_video"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield Path(tmp)


METRICS = (
    ("worker runs / video", "worker_runs", "{:.2f}"),
    ("worker s / video", "worker_seconds", "{:.2f}"),
    ("API queries / video", "queries", "{:.2f}"),
    ("wall time to run end, s", "wall_seconds", "{:.0f}"),
    ("creates seen", "creates", "{:d}"),
)


def ratio(ours: float, anchor: float | None) -> str:
    return "" if not anchor else f"{ours / anchor:.2f}"


def report(ours: dict[str, Figures], today: dict[str, Figures], videos: int, today_label: str) -> None:
    peer = ours.get("peer")
    print(f"\nDeployment benchmark: {videos} mapped videos per pattern; today = {today_label}")
    print(f"{'pattern':<10} {'metric':<26} {'ours':>9} {'today':>9} {'x today':>8} {'peer':>9} {'x peer':>7}")
    for pattern, figures in ours.items():
        if pattern in NEW_PATTERNS:
            continue
        before = today.get(pattern)
        for name, attr, fmt in METRICS:
            value = getattr(figures, attr)
            old = getattr(before, attr) if before else None
            anchor = getattr(peer, attr) if peer and pattern != "peer" else None
            print(
                f"{pattern:<10} {name:<26} {fmt.format(value):>9} "
                f"{fmt.format(old) if old is not None else '':>9} {ratio(value, old) if attr != 'creates' else '':>8} "
                f"{fmt.format(anchor) if anchor is not None else '':>9} {ratio(value, anchor) if attr != 'creates' else '':>7}"
            )
        print(f"{pattern:<10} {'run state':<26} {figures.state:>9} {before.state if before else '':>9}")
    batch, mapped = ours.get("batch"), ours.get("sensor")
    if batch:
        report_batch(batch, mapped)
    targets = []
    for pattern, most in (("sensor", 0.4), ("wait", 0.6)):
        if pattern in ours:
            figures = ours[pattern]
            targets.append(f"{pattern}: worker runs/video {figures.worker_runs:.2f} (target 1.0)")
            if pattern in today:
                share = figures.worker_seconds / today[pattern].worker_seconds
                targets.append(f"{pattern}: worker s {share:.2f}x today's (target <= {most})")
            if peer:
                below = "below" if figures.worker_seconds < peer.worker_seconds else "NOT below"
                targets.append(f"{pattern}: worker s {below} the peer's")
    if batch:
        targets.append(f"batch: worker runs {batch.worker_runs * batch.videos:.0f} (target <= 2)")
        if mapped:
            share = batch.worker_seconds / mapped.worker_seconds
            targets.append(f"batch: worker s {share:.3f}x the mapped pattern's (target <= 0.05)")
            fewer = "yes" if batch.queries <= mapped.queries else "NO"
            targets.append(f"batch: API queries/video no more than the mapped pattern's: {fewer}")
    creates_ok = all(f.creates == videos for f in [*ours.values(), *today.values()])
    targets.append(f"creates = {videos} in every pattern: {'yes' if creates_ok else 'NO'}")
    print("\nTargets: " + "; ".join(targets))


# The batch's rows: name, Figures attribute, whether to show it for all the videos (not per video), format.
BATCH_METRICS = (
    ("worker runs (total)", "worker_runs", True, "{:.0f}"),
    ("worker s (total)", "worker_seconds", True, "{:.1f}"),
    ("task instances", "task_instances", False, "{:d}"),
    ("API queries / video", "queries", False, "{:.2f}"),
    ("wall time to run end, s", "wall_seconds", False, "{:.0f}"),
    ("creates seen", "creates", False, "{:d}"),
)


def report_batch(batch: Figures, mapped: Figures | None) -> None:
    """The batch's rows, beside the mapped create + deferrable sensor measured in the same deployment."""
    print(
        f"\nOne batch task against the mapped pattern (sensor), same deployment, {batch.videos} videos each"
    )
    print(f"{'pattern':<10} {'metric':<26} {'batch':>9} {'mapped':>9} {'x mapped':>8}")
    for name, attr, total, fmt in BATCH_METRICS:
        value = getattr(batch, attr) * (batch.videos if total else 1)
        anchor = getattr(mapped, attr) * (mapped.videos if total else 1) if mapped else None
        shown = fmt.format(anchor) if anchor is not None else ""
        share = ratio(value, anchor) if attr != "creates" else ""
        print(f"{'batch':<10} {name:<26} {fmt.format(value):>9} {shown:>9} {share:>8}")
    print(f"{'batch':<10} {'run state':<26} {batch.state:>9} {mapped.state if mapped else '':>9}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--videos", type=int, default=20, help="mapped videos per pattern (default 20)")
    parser.add_argument(
        "--generation-seconds", type=float, default=20.0, help="the emulator's generation time"
    )
    parser.add_argument("--poke-interval", type=float, default=10.0, help="every sensor's poke_interval")
    parser.add_argument(
        "--patterns", default=",".join(PATTERNS), help=f"comma-separated: {','.join(PATTERNS)}"
    )
    parser.add_argument(
        "--batch-in-flight", type=int, default=4, help="the batch's max_in_flight (default 4, the operator's)"
    )
    parser.add_argument("--today", default="28a0907", help="the commit measured as today's code, or 'none'")
    parser.add_argument(
        "--today-videos", type=int, help="videos per pattern for today's code (default: --videos)"
    )
    parser.add_argument(
        "--json", type=Path, default=REPO / "build" / "bench-deployment.json", help="figures file"
    )
    args = parser.parse_args()
    patterns = [p for p in args.patterns.split(",") if p]
    unknown = set(patterns) - set(PATTERNS)
    if unknown:
        parser.error(f"unknown patterns: {sorted(unknown)}")
    ours = run_deployment("ours", patterns, args, None)
    today: dict[str, Figures] = {}
    if args.today != "none":
        provider_patterns = [p for p in patterns if p != "peer" and p not in NEW_PATTERNS]
        today_args = argparse.Namespace(**{**vars(args), "videos": args.today_videos or args.videos})
        with checkout(args.today) as root:
            today = run_deployment(f"today-{args.today}", provider_patterns, today_args, root)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "ours": {k: asdict(v) for k, v in ours.items()},
                "today": {k: asdict(v) for k, v in today.items()},
            },
            indent=2,
        )
    )
    report(ours, today, args.videos, args.today)
    return 0


if __name__ == "__main__":
    sys.exit(main())
