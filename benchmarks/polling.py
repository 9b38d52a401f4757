"""Polling benchmark: requests per video and detection lag, adaptive polling against a fixed interval.

For each generation time, ``--videos`` videos are created on the emulator (queued 1 s, then
processing with live progress) and waited for by real ``GrokVideoTrigger``s, all at once in one
event loop, two ways:

- ours: adaptive polling with the sensor's defaults (``poke_interval`` 15 s as the floor,
  ``max_poll_interval`` 120 s as the ceiling), the trigger started right after the create (a sensor
  started in the triggerer, or the create operator's own deferred wait);
- ours after a look: the same, as a deferrable sensor started in a worker takes it: one query right
  after the create (the look), whose answer the trigger goes on from (``first_answer``);
- the anchor: a fixed interval at the sensor's default ``poke_interval`` (15 s).

Requests per video count the create and every query the emulator received for that video (the look
included).
Detection lag is the time from the emulator marking the video complete to the trigger's event.
Everything runs in real time, so the run lasts about the longest generation time plus a few seconds.

Then, unless ``--skip-models``, the same schedule across the emulator's family of progress models
(``benchmarks/polling_models.py``: simulated time, a few seconds), since the real API's is undocumented.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from typing import Any

os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"  # before Airflow configures its logging

from airflow_grok_video.emulator import GrokVideoEmulator, Rule
from airflow_grok_video.polling import DEFAULT_MAX_POLL_INTERVAL, Look

KEY = "sk_bench_key"
QUEUE_SECONDS = 1.0
FLOOR = 15.0  # GrokVideoSensor's default poke_interval
STRATEGIES = {"adaptive": DEFAULT_MAX_POLL_INTERVAL, "look": DEFAULT_MAX_POLL_INTERVAL, "fixed": None}


async def wait(task_id: str, ceiling: float | None, first_answer: dict[str, Any] | None = None) -> float:
    from airflow_grok_video.triggers.grok_video import GrokVideoTrigger

    trigger = GrokVideoTrigger(
        task_id,
        "grok_video_default",
        poll_interval=FLOOR,
        end_time=time.time() + 900,
        max_poll_interval=ceiling,
        first_answer=first_answer,
    )
    async for event in trigger.run():
        assert event.payload["status"] == "success", event.payload
    return time.time()


async def measure(
    emulator: GrokVideoEmulator, generations: list[int], videos: int
) -> dict[tuple[int, str], dict[str, list[float]]]:
    from airflow_grok_video.hooks.grok_video import GrokVideoHook

    hook = GrokVideoHook()
    runs: list[tuple[int, str, str, float]] = []
    waits = []
    for generation in generations:
        emulator.add_rule(Rule(prompt_contains=f"[{generation}s]", generation_seconds=generation))
        for strategy, ceiling in STRATEGIES.items():
            for _ in range(videos):
                task_id = hook.create_video(
                    prompt=f"bench [{generation}s]", image_url="https://example.com/a.png"
                )["task_id"]
                done_at = time.time() + QUEUE_SECONDS + generation
                runs.append((generation, strategy, task_id, done_at))
                look = None
                if strategy == "look":  # the sensor's look from a worker, handed to its trigger
                    look = Look(hook.get_video_task(task_id), time.time()).to_kwargs()
                waits.append(asyncio.ensure_future(wait(task_id, ceiling, look)))
    detected = await asyncio.gather(*waits)
    results: dict[tuple[int, str], dict[str, list[float]]] = {}
    for (generation, strategy, task_id, done_at), seen in zip(runs, detected, strict=True):
        entry = results.setdefault((generation, strategy), {"requests": [], "lags": []})
        entry["requests"].append(1 + emulator.count("GET", f"/api/open-api/v1/videos/{task_id}"))
        entry["lags"].append(seen - done_at)
    return results


def report(results: dict[tuple[int, str], dict[str, list[float]]], generations: list[int]) -> None:
    print(
        f"\nRequests per video (create and look included) and detection lag; anchor: a fixed {FLOOR:g} s interval"
    )
    print(
        f"{'generation':<12}{'requests ours':>14}{'after a look':>14}{'(max)':>7}{'fixed 15 s':>12}{'ratio':>7}"
        f"{'lag ours s':>12}{'after a look':>14}{'fixed 15 s':>12}{'ratio':>7}"
    )
    met: bool | None = None
    for generation in generations:
        ours, look, fixed = (results[(generation, s)] for s in ("adaptive", "look", "fixed"))
        req_o, req_l, req_f = (statistics.mean(x["requests"]) for x in (ours, look, fixed))
        lag_o, lag_l, lag_f = (statistics.mean(x["lags"]) for x in (ours, look, fixed))
        most = max(max(ours["requests"]), max(look["requests"]))
        print(
            f"{f'{generation} s':<12}{req_o:>14.2f}{req_l:>14.2f}{most:>7.0f}{req_f:>12.2f}{req_o / req_f:>7.2f}"
            f"{lag_o:>12.1f}{lag_l:>14.1f}{lag_f:>12.1f}{lag_o / lag_f:>7.2f}"
        )
        if 90 <= generation <= 180:
            met = (met is not False) and max(req_o, req_l) <= 4 and max(lag_o, lag_l) <= 5.0
    verdict = {True: "met", False: "NOT met", None: "not measured"}[met]
    print(f"target (90-180 s, both ways: <= 4 requests per video, mean lag <= 5 s): {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--generations", default="30,60,90,120,180", help="comma-separated seconds")
    parser.add_argument("--videos", type=int, default=10, help="videos per generation time and strategy")
    parser.add_argument(
        "--skip-models", action="store_true", help="skip the sweep across progress models (polling_models.py)"
    )
    args = parser.parse_args()
    generations = [int(g) for g in args.generations.split(",")]
    with GrokVideoEmulator(api_keys=[KEY], queue_seconds=QUEUE_SECONDS) as emulator:
        os.environ["AIRFLOW_CONN_GROK_VIDEO_DEFAULT"] = json.dumps(
            {"conn_type": "grok_video", "host": emulator.base_url, "password": KEY}
        )
        results = asyncio.run(measure(emulator, generations, args.videos))
    report(results, generations)
    if not args.skip_models:
        import polling_models  # beside this script

        polling_models.run()


if __name__ == "__main__":
    main()
