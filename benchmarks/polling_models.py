"""Polling benchmark across the emulator's progress models and the three ways a wait starts, in simulated time.

The real API's progress model is undocumented (how long a task stays queued, whether progress counts
from the create or from the processing start, whether it grows evenly), so the adaptive schedule is
measured against a family of them: each ``ProgressModel`` of the emulator (linear progress, queue
0-30 %, counted from the create or from the processing start; ``--shapes all`` adds the eased, 10 %
steps and no-progress ones), for 30-180 s videos, with the sensor's ``poke_interval`` at 30 s and at
its default 15 s as the floor and the default ``max_poll_interval`` (120 s) as the ceiling, along
the three paths a wait takes:

- ``worker``: a deferrable sensor started in a worker, 1-8 s after its create: it looks once, then
  defers; its trigger starts 0.5-3 s later (Airflow 3.1 and 3.2, and 3.3 where the sensor cannot
  start in the triggerer);
- ``triggerer``: a deferrable sensor started in the triggerer (Airflow 3.3), 1-8 s after its create;
- ``operator``: the create operator's own deferred wait, its trigger starting 0.5-3 s after the create.

Time is simulated, not waited for: each video is the emulator's own ``EmulatedVideo``, each answer
its ``view`` at the simulated time, read by the provider's ``VideoTask.from_data`` and handed to the
``VideoWait`` (and its ``PollSchedule``) that every real wait uses, the look included as the trigger
takes it (``Look``); the clock then jumps by the delay the wait asks for. The schedule is pure (no
I/O, no clock of its own), so this measures exactly the queries it would make; only network and
triggerer latency (milliseconds) are left out. ``benchmarks/polling.py`` measures the default model
in real time, through real triggers.

Requests per video count the create and every query (the look included); detection lag is the time
from the video's end to the query that sees it. Target, in every linear model with progress counted
from the create (and the default), for 90-180 s videos and every path: <= 4 requests per video
(mean) and <= 5 s mean lag. With progress counted from the processing start after a queue, one
reading cannot tell when processing began: ``--frontier`` prints requests against lag for the
schedule's one knob there.

``--anchor COMMIT`` (by default the commit before issue 25, as ``make bench`` runs it) runs the same table with that
commit's ``airflow_grok_video`` (``git archive``, first on ``PYTHONPATH``) and prints each cell
beside it; a package without ``Look`` starts each trigger from nothing after the worker's look, as
it did.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from airflow_grok_video import polling
from airflow_grok_video.emulator.progress import SHAPES, ProgressModel
from airflow_grok_video.emulator.tasks import EmulatedVideo
from airflow_grok_video.polling import DEFAULT_MAX_POLL_INTERVAL, PollSchedule, VideoWait
from airflow_grok_video.video_task import VideoTask

sys.path.insert(0, str(Path(__file__).resolve().parent))
from triggers import checkout

DEFAULT_QUEUE_SECONDS = 1.0  # the emulator's default, used by the default model
TARGET_REQUESTS = 4.0
TARGET_LAG = 5.0
TARGET_GENERATIONS = (90.0, 120.0, 180.0)
TIMEOUT = 3600.0
PATHS = ("worker", "triggerer", "operator")
#: The code measured beside ours: main before issue 25 (the look thrown away, "as long again" after a queue).
DEFAULT_ANCHOR = "f4c7f89"
#: Seconds from the create to the wait's start (the look, in a worker), then to the trigger's start.
STARTS: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "worker": ((1.0, 8.0), (0.5, 3.0)),
    "triggerer": ((1.0, 8.0), (0.0, 0.0)),
    "operator": ((0.5, 3.0), (0.0, 0.0)),
}
#: Whether the package measured hands the look to the trigger (not before issue 25).
HANDS_ON_THE_LOOK = hasattr(polling, "Look")


@dataclass(frozen=True)
class Figures:
    """One model, floor, path and generation time: requests per video and detection lags."""

    requests: list[int]
    lags: list[float]

    @property
    def mean_requests(self) -> float:
        return statistics.mean(self.requests)

    @property
    def mean_lag(self) -> float:
        return statistics.mean(self.lags)

    @property
    def met(self) -> bool:
        return self.mean_requests <= TARGET_REQUESTS and self.mean_lag <= TARGET_LAG


def models(shapes: str = "linear") -> Iterator[ProgressModel]:
    """The family: the default, then each queue share, origin and shape (``none`` once per share)."""
    yield ProgressModel()
    for queue in (0.0, 0.1, 0.2, 0.3):
        for shape in SHAPES if shapes == "all" else ("linear", "none"):
            for origin in ("processing", "created"):
                if origin == "created" and (queue == 0 or shape == "none"):
                    continue  # the same as counting from the processing start
                yield ProgressModel(queue=queue, origin=origin, shape=shape)  # type: ignore[arg-type]


def targeted(model: ProgressModel) -> bool:
    """Whether the target applies: linear progress that one reading places (not counted from a late start)."""
    return model.shape == "linear" and (model.queue in (None, 0.0) or model.origin == "created")


def wait_once(
    model: ProgressModel, generation: float, floor: float, path: str, rng: random.Random
) -> tuple[int, float]:
    """One video and its wait, in simulated time: (requests including the create, detection lag)."""
    created = 1_700_000_000 + rng.random()
    video = EmulatedVideo(
        task_id="video_bench",
        model="grok-imagine-video-1.5",
        prompt="bench",
        image_url="https://example.com/a.png",
        duration=10,
        ratio="16:9",
        created=created,
        queue_seconds=DEFAULT_QUEUE_SECONDS,
        generation_seconds=generation,
        progress_model=model,
    )

    def ask(at: float) -> VideoTask:
        return VideoTask.from_data(video.view("http://emulator", at), video_task_id=video.task_id)

    (low, high), (then_low, then_high) = STARTS[path]
    now = created + rng.uniform(low, high)
    wait = VideoWait(
        video.task_id, PollSchedule(floor, DEFAULT_MAX_POLL_INTERVAL, started=now), now + TIMEOUT
    )
    queries = 0
    answer: tuple[VideoTask, float] | None = None
    if path == "worker":  # the sensor's look from the worker, read by the same step
        queries, answer = 1, (ask(now), now)
        if answer[0].succeeded:
            return 2, now - video.done_at
        now += rng.uniform(then_low, then_high)
        if not HANDS_ON_THE_LOOK:  # the trigger started from nothing
            wait = VideoWait(
                video.task_id, PollSchedule(floor, DEFAULT_MAX_POLL_INTERVAL, started=now), now + TIMEOUT
            )
            answer = None
    if answer is None:
        now += wait.first_delay(now)
    while True:
        if answer is None:
            queries += 1
            task, read_at = ask(now), now
        else:
            (task, read_at), answer = answer, None
        step = wait.step(task, read_at)
        if step.status != "waiting":
            assert step.status == "success", step.message
            return 1 + queries, read_at - video.done_at
        now = max(now, read_at + step.delay)


def measure(model: ProgressModel, generation: float, floor: float, path: str, videos: int) -> Figures:
    # The schedule jitters its first query with the random module: seed it too, for repeatable runs.
    random.seed(f"{model}/{generation}/{floor}/{path}")
    rng = random.Random(f"{model}/{generation}/{floor}/{path}")
    runs = [wait_once(model, generation, floor, path, rng) for _ in range(videos)]
    return Figures([r for r, _ in runs], [lag for _, lag in runs])


def table(
    floors: list[float], generations: list[float], videos: int, shapes: str
) -> dict[str, list[tuple[float, float, int, float]]]:
    """Every cell: (mean requests, mean lag, max requests, max lag) by row key, per generation time."""
    rows = {}
    for model in models(shapes):
        for floor in floors:
            for path in PATHS:
                cells = [measure(model, g, floor, path, videos) for g in generations]
                rows[f"{model}|{floor:g}|{path}"] = [
                    (c.mean_requests, c.mean_lag, max(c.requests), max(c.lags)) for c in cells
                ]
    return rows


def anchor_table(commit: str, argv: list[str]) -> dict[str, list[tuple[float, float, int, float]]] | None:
    """The same table with ``commit``'s package, in a subprocess; ``None`` if it cannot be had."""
    with checkout(commit) as tmp:
        if tmp is None:
            return None
        out = subprocess.run(
            [sys.executable, __file__, *argv, "--json"],
            env={**os.environ, "PYTHONPATH": os.pathsep.join([tmp, os.environ.get("PYTHONPATH", "")])},
            capture_output=True,
            text=True,
            check=True,
        )
    rows: dict[str, list[tuple[float, float, int, float]]] = json.loads(out.stdout)
    return rows


def report(
    rows: dict[str, list[tuple[float, float, int, float]]],
    anchor: dict[str, list[tuple[float, float, int, float]]] | None,
    commit: str,
    generations: list[float],
    videos: int,
) -> bool:
    """Print the table (each cell beside the anchor's); whether every targeted row met the target."""
    print(
        f"\nPolling across progress models and paths, simulated time ({videos} videos per cell; the schedule"
        " is pure, so this is the exact query sequence)."
    )
    beside = f" (anchor: {commit})" if anchor else ""
    print(
        f"Cells: mean requests per video, create and look included / mean detection lag in s{beside}. Target"
        f" (*: linear, one reading places the end) for {'-'.join(f'{g:g}' for g in TARGET_GENERATIONS)} s:"
        f" <= {TARGET_REQUESTS:g} requests and <= {TARGET_LAG:g} s lag, every path."
    )
    width = 25 if anchor else 13
    print(
        f"{'model':<34}{'floor':>5} {'path':<10}"
        + "".join(f"{f'{g:g} s video':>{width}}" for g in generations)
        + "  target"
    )
    misses = met = 0
    for key, cells in rows.items():
        model, floor, path = key.split("|")
        text = ""
        for i, (req, lag, _, _) in enumerate(cells):
            cell = f"{req:.2f}/{lag:4.1f}"
            if anchor and key in anchor:
                old = anchor[key][i]
                cell += f" ({old[0]:.2f}/{old[1]:4.1f})"
            text += f"{cell:>{width}}"
        verdict = ""
        if targeted(ProgressModel.parse(model)):
            ok = all(
                req <= TARGET_REQUESTS and lag <= TARGET_LAG
                for g, (req, lag, _, _) in zip(generations, cells, strict=True)
                if g in TARGET_GENERATIONS
            )
            met, misses = met + ok, misses + (not ok)
            verdict = "met" if ok else "NOT met"
        star = "*" if targeted(ProgressModel.parse(model)) else " "
        print(f"{star}{model:<33}{floor:>4}s {path:<10}{text}  {verdict}")
    print(f"target met in {met} of {met + misses} targeted rows (model, floor, path)")
    none_rows = [(k, c) for k, c in rows.items() if k.startswith("shape=none")]
    if none_rows:
        worst = max(max_lag for _, cells in none_rows for *_, max_lag in cells)
        print(
            f"no progress at all (shape=none): worst lag {worst:.1f} s, within max_poll_interval"
            f" ({DEFAULT_MAX_POLL_INTERVAL:g} s): {'yes' if worst <= DEFAULT_MAX_POLL_INTERVAL else 'NO'}"
        )
    return not misses


def frontier(floors: list[float], videos: int) -> None:
    """Requests against lag after a queue, for each setting of the bet on progress counted from the create."""
    print(
        "\nFrontier after a queue of 10-30 % (linear; every path and floor; 90-180 s videos): one reading"
        " after a queued answer cannot tell progress counted from the create from progress counted from"
        " the processing start. CREATE_SPREAD is how wide the end it places may be for the next query to"
        " be aimed at it (the bet on the create); mean requests / mean lag (worst cell), * the default."
    )
    default = polling.CREATE_SPREAD
    print(f"{'CREATE_SPREAD':>15}{'from the create':>32}{'from the processing start':>34}")
    for spread in sorted({0.0, 5.0, 10.0, default, 30.0, 1e9}):
        polling.CREATE_SPREAD = spread
        text = ""
        for origin in ("created", "processing"):
            cells = [
                measure(ProgressModel(queue=q, origin=origin), g, floor, path, videos)  # type: ignore[arg-type]
                for q in (0.1, 0.2, 0.3)
                for g in TARGET_GENERATIONS
                for floor in floors
                for path in PATHS
            ]
            req = statistics.mean(c.mean_requests for c in cells)
            lag = statistics.mean(c.mean_lag for c in cells)
            worst = f"({max(c.mean_requests for c in cells):.2f}, {max(c.mean_lag for c in cells):.1f} s)"
            text += f"{f'{req:.2f} / {lag:4.1f} s {worst}':>33}"
        label = "always" if spread >= 1e9 else f"{spread:g} s"
        print(f"{'*' if spread == default else ' '}{label:>14}{text}")
    polling.CREATE_SPREAD = default


def run(
    floors: tuple[float, ...] = (30.0, 15.0),
    generations: tuple[float, ...] = (30.0, 60.0, 90.0, 120.0, 180.0),
    videos: int = 200,
    shapes: str = "linear",
    anchor: str | None = DEFAULT_ANCHOR,
    show_frontier: bool = True,
) -> bool:
    """Print the table (beside ``anchor``'s, if given); whether every targeted row met the target."""
    argv = [
        "--floors",
        ",".join(f"{f:g}" for f in floors),
        "--generations",
        ",".join(f"{g:g}" for g in generations),
        "--videos",
        str(videos),
        "--shapes",
        shapes,
    ]
    rows = table(list(floors), list(generations), videos, shapes)
    old = anchor_table(anchor, argv) if anchor else None
    met = report(rows, old, anchor or "", list(generations), videos)
    if show_frontier:
        frontier(list(floors), videos)
    return met


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--generations", default="30,60,90,120,180", help="comma-separated seconds")
    parser.add_argument("--floors", default="30,15", help="poke_interval values, comma-separated seconds")
    parser.add_argument(
        "--videos", type=int, default=200, help="videos per model, floor, path and generation"
    )
    parser.add_argument("--shapes", choices=("linear", "all"), default="linear", help="progress shapes")
    parser.add_argument(
        "--anchor", default=DEFAULT_ANCHOR, help="the commit measured beside ours ('' for none)"
    )
    parser.add_argument("--frontier", action="store_true", help="also print the frontier (see above)")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # the anchor's run
    args = parser.parse_args()
    floors = tuple(float(f) for f in args.floors.split(","))
    generations = tuple(float(g) for g in args.generations.split(","))
    if args.json:
        print(json.dumps(table(list(floors), list(generations), args.videos, args.shapes)))
        return
    run(floors, generations, args.videos, args.shapes, args.anchor, args.frontier)


if __name__ == "__main__":
    main()
