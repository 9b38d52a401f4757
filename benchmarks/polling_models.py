"""Polling benchmark across the emulator's progress models, in simulated time.

The real API's progress model is undocumented (how long a task stays queued, whether progress counts
from the create or from the processing start, whether it grows evenly), so the adaptive schedule is
measured against a family of them: each ``ProgressModel`` of the emulator, for 90, 120 and 180 s
videos, with the sensor's ``poke_interval`` at 30 s and at its default 15 s as the floor and the
default ``max_poll_interval`` (120 s) as the ceiling.

Time is simulated, not waited for: each video is the emulator's own ``EmulatedVideo``, each answer
its ``view`` at the simulated time, read by the provider's ``VideoTask.from_data`` and handed to the
``VideoWait`` (and its ``PollSchedule``) that every real wait uses; the simulated clock then jumps
by the delay the wait asks for. The schedule is pure (no I/O, no clock of its own), so this measures
exactly the queries it would make; only network and triggerer latency (milliseconds) are left out.
``benchmarks/polling.py`` measures the default model in real time, through real triggers.

Requests per video count the create and every query; detection lag is the time from the video's end
to the query that sees it. Each wait starts a random 0.2-8 s after the create (a create-and-wait
operator starts at once; a deferred sensor after its worker run) and its first query is jittered as
in production. Target, in each model, for 90-180 s videos: <= 4 requests per video (mean) and
<= 5 s mean lag.
"""

from __future__ import annotations

import argparse
import random
import statistics
from collections.abc import Iterator
from dataclasses import dataclass

from airflow_grok_video.emulator.progress import SHAPES, ProgressModel
from airflow_grok_video.emulator.tasks import EmulatedVideo
from airflow_grok_video.polling import DEFAULT_MAX_POLL_INTERVAL, PollSchedule, VideoWait
from airflow_grok_video.video_task import VideoTask

DEFAULT_QUEUE_SECONDS = 1.0  # the emulator's default, used by the default model
TARGET_REQUESTS = 4.0
TARGET_LAG = 5.0
TIMEOUT = 3600.0


@dataclass(frozen=True)
class Figures:
    """One model, floor and generation time: requests per video and detection lags."""

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


def models() -> Iterator[ProgressModel]:
    """The family: the default, then each queue share, origin and shape (``none`` once per share)."""
    yield ProgressModel()
    for queue in (0.0, 0.1, 0.2, 0.3):
        for shape in SHAPES:
            for origin in ("processing", "created"):
                if origin == "created" and (queue == 0 or shape == "none"):
                    continue  # the same as counting from the processing start
                yield ProgressModel(queue=queue, origin=origin, shape=shape)  # type: ignore[arg-type]


def wait_once(
    model: ProgressModel, generation: float, floor: float, rng: random.Random, start: tuple[float, float]
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
    now = created + rng.uniform(*start)
    wait = VideoWait(
        video.task_id, PollSchedule(floor, DEFAULT_MAX_POLL_INTERVAL, started=now), now + TIMEOUT
    )
    now += wait.first_delay(now)
    queries = 0
    while True:
        queries += 1
        task = VideoTask.from_data(video.view("http://emulator", now), video_task_id=video.task_id)
        step = wait.step(task, now)
        if step.status != "waiting":
            assert step.status == "success", step.message
            return 1 + queries, now - video.done_at
        now += step.delay


def measure(
    model: ProgressModel, generation: float, floor: float, videos: int, start: tuple[float, float]
) -> Figures:
    # The schedule jitters its first query with the random module: seed it too, for repeatable runs.
    random.seed(f"{model}/{generation}/{floor}")
    rng = random.Random(f"{model}/{generation}/{floor}")
    runs = [wait_once(model, generation, floor, rng, start) for _ in range(videos)]
    return Figures([r for r, _ in runs], [lag for _, lag in runs])


def report(floors: list[float], generations: list[float], videos: int, start: tuple[float, float]) -> bool:
    print(
        f"\nPolling across progress models, simulated time ({videos} videos per cell; the schedule is pure,"
        " so this is the exact query sequence; wait starts"
        f" {start[0]:g}-{start[1]:g} s after the create)."
    )
    print(
        "Cells: mean requests per video, create included (max) / mean detection lag in s."
        f" Target for every cell: <= {TARGET_REQUESTS:g} requests and <= {TARGET_LAG:g} s lag."
    )
    header = f"{'model':<46}{'floor':>6}" + "".join(f"{f'{g:g} s video':>22}" for g in generations)
    print(header + "  target")
    met_in: list[str] = []
    misses = 0
    for model in models():
        for floor in floors:
            cells = [measure(model, g, floor, videos, start) for g in generations]
            text = "".join(
                f"{f'{c.mean_requests:.2f} ({max(c.requests)}) / {c.mean_lag:4.1f}':>22}" for c in cells
            )
            met = all(c.met for c in cells)
            if met:
                met_in.append(f"{model} (floor {floor:g} s)")
            else:
                misses += 1
            print(f"{model!s:<46}{floor:>5g}s{text}  {'met' if met else 'NOT met'}")
    print(
        f"target met in {len(met_in)} of {len(met_in) + misses} models and floors: {'; '.join(met_in) or 'none'}"
    )
    return not misses


def run(
    floors: tuple[float, ...] = (30.0, 15.0),
    generations: tuple[float, ...] = (90.0, 120.0, 180.0),
    videos: int = 200,
    start: tuple[float, float] = (0.2, 8.0),
) -> bool:
    """Print the table; whether every model met the target."""
    return report(list(floors), list(generations), videos, start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--generations", default="90,120,180", help="comma-separated seconds")
    parser.add_argument("--floors", default="30,15", help="poke_interval values, comma-separated seconds")
    parser.add_argument("--videos", type=int, default=200, help="videos per model, floor and generation")
    parser.add_argument(
        "--start", default="0.2,8", help="the wait starts this many seconds after the create (min,max)"
    )
    args = parser.parse_args()
    low, high = (float(s) for s in args.start.split(","))
    run(
        tuple(float(f) for f in args.floors.split(",")),
        tuple(float(g) for g in args.generations.split(",")),
        args.videos,
        (low, high),
    )


if __name__ == "__main__":
    main()
