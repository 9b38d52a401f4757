"""Trigger benchmark: N concurrent waits polling the emulator every second, three ways, in one event loop.

- ours: ``GrokVideoTrigger`` at a fixed 1 s interval (connection resolved once per trigger, one HTTP
  session per connection shared by all its waits, first query jittered across the interval);
- anchor (a): the HTTP provider's ``HttpSensorTrigger`` (a new session and a connection lookup per poll;
  it polls a task id the emulator answers 404 for, which is how it keeps waiting);
- anchor (b), the floor: one shared ``aiohttp`` session doing GET + JSON parse in a bare loop, with the
  same jittered start;
- anchor (c), the previous code: ``GrokVideoTrigger`` of ``--anchor`` (a commit; ``git archive`` of its
  ``airflow_grok_video`` first on ``PYTHONPATH``), measured the same way in the same run.

Each scenario runs in a fresh process (for RSS), logging at INFO as a triggerer does (what a wait logs is
part of its cost); the emulator runs in another. Reports, as medians of
``--runs`` runs: CPU ms per poll after the first 2 s (and, apart, with them: each of our waits resolves
its connection at its first query), net of an idle run of the same measuring process; peak RSS per
1,000 waits; worst event-loop lag after the first 2 s (and, apart, during them; the last second, when
every wait of the benchmark times out at the same instant, is left out); polls achieved vs due.
``make bench`` runs it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DURATION = 6.0
WARM_UP = 2.0  # every wait has made its first query (and resolved its connection) by then
KEY = "sk_bench_key"
MODES = ("ours", "previous", "http_sensor", "floor")
REPO = Path(__file__).resolve().parent.parent
#: The code measured as "previous": main before issue 25 (the look handed on, a line per reading).
DEFAULT_ANCHOR = "f4c7f89"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def control(base: str, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base}/_emulator/{path}", timeout=30) as response:
        return dict(json.loads(response.read()))


def create_tasks(base: str, count: int) -> list[str]:
    body = json.dumps({"model": "grok-1.5", "prompt": "bench", "image_urls": ["https://example.com/a.png"]})
    ids = []
    for _ in range(count):
        request = urllib.request.Request(
            f"{base}/api/open-api/v1/grok/videos",
            data=body.encode(),
            method="POST",
            headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request) as response:
            ids.append(json.loads(response.read())["data"]["task_id"])
    return ids


SCENARIO = r"""
import asyncio, json, os, random, resource, sys, time
mode, duration, warm_up, base = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
ids = json.loads(sys.stdin.read())

async def ours(task_id, end):
    from airflow_grok_video.triggers.grok_video import GrokVideoTrigger
    trigger = GrokVideoTrigger(task_id, "grok_video_default", poll_interval=1.0, end_time=end)
    async for _ in trigger.run():
        pass

async def http_sensor(task_id, end):
    from airflow.providers.http.triggers.http import HttpSensorTrigger
    trigger = HttpSensorTrigger(endpoint=f"api/open-api/v1/videos/missing_{task_id}", http_conn_id="bench_http",
                                method="GET", poke_interval=1.0)
    try:
        await asyncio.wait_for(anext(trigger.run()), timeout=end - time.time())
    except (asyncio.TimeoutError, StopAsyncIteration):
        pass

async def floor(session, task_id, end):
    url = f"{base}/api/open-api/v1/videos/{task_id}"
    headers = {"Authorization": "Bearer sk_bench_key"}
    await asyncio.sleep(random.uniform(0.0, 1.0))  # the same jittered start as ours
    while time.time() < end:
        async with session.get(url, headers=headers) as response:
            json.loads(await response.read())
        await asyncio.sleep(1.0)

async def main():
    import aiohttp
    # Each scenario imports its trigger class before the timing, as a triggerer loads it once; what
    # its first queries import on top of that is a start-up stall, and is measured.
    if mode in ("ours", "previous"):
        import airflow_grok_video.triggers.grok_video
    elif mode == "http":
        import airflow.providers.http.triggers.http
    lag = {"start": 0.0, "steady": 0.0}
    async def ticker():
        started = time.monotonic()
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.05)
            if before - started < duration - 1.0:  # not the last second: every wait times out at once there
                phase = "start" if before - started < warm_up else "steady"
                lag[phase] = max(lag[phase], time.monotonic() - before - 0.05)
    mark = {}
    async def warm_up_mark():  # CPU used and queries answered when the start-up is over
        await asyncio.sleep(warm_up)
        mark["cpu"] = time.process_time() - cpu_before
        async with aiohttp.ClientSession() as control, control.get(f"{base}/_emulator/stats") as response:
            mark["queries"] = json.loads(await response.read())["queries"]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu_before = time.process_time()
    end = time.time() + duration
    tick, marker = asyncio.create_task(ticker()), asyncio.create_task(warm_up_mark())
    if mode == "idle":  # the measuring process alone; its cost is taken off the others'
        await asyncio.sleep(end - time.time())
    elif mode == "floor":
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            await asyncio.gather(*(floor(session, t, end) for t in ids))
    else:
        runner = http_sensor if mode == "http_sensor" else ours
        await asyncio.gather(*(runner(t, end) for t in ids))
    tick.cancel()
    await marker
    cpu = time.process_time() - cpu_before
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"cpu": cpu, "cpu_steady": cpu - mark["cpu"], "queries_at_warm_up": mark["queries"],
                      "lag": lag["steady"], "start_lag": lag["start"], "rss_growth_kb": rss - rss_before}))

asyncio.run(main())
"""


def run_scenario(
    script: str, mode: str, args: list[str], ids: list[str], env: dict[str, str], previous: str | None
) -> dict[str, Any]:
    """
    Run a scenario script in a process of its own and return the JSON it prints last.

    ``previous`` runs our mode with the previous commit's package (see :func:`checkout`).
    """
    out = subprocess.run(
        [sys.executable, "-c", script, "ours" if mode == "previous" else mode, *args],
        input=json.dumps(ids),
        capture_output=True,
        text=True,
        env=env,
        check=True,
        cwd=previous if mode == "previous" else None,  # `python -c` puts its directory first on sys.path
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@contextlib.contextmanager
def running_emulator() -> Iterator[str]:
    """The emulator in a process of its own, its videos never done; yields its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "airflow_grok_video.emulator", "--port", str(port)]
    emulator = subprocess.Popen(
        [*command, "--generation-seconds", "86400", "--api-key", KEY], stdout=subprocess.PIPE
    )
    try:
        assert emulator.stdout is not None
        emulator.stdout.readline()  # it says it listens
        yield f"http://127.0.0.1:{port}"
    finally:
        emulator.terminate()
        emulator.wait()


@contextlib.contextmanager
def checkout(commit: str | None) -> Iterator[str | None]:
    """That commit's ``airflow_grok_video`` in a temporary directory (``None`` when not asked or not found)."""
    if not commit:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix=f"bench-{commit}-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", commit, "airflow_grok_video"], capture_output=True
        )
        if archive.returncode:
            print(f"anchor {commit}: {archive.stderr.decode().strip()}; not measured")
            yield None
            return
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        yield tmp


def scenario(
    mode: str, ids: list[str], base: str, idle: dict[str, float] | None = None, previous: str | None = None
) -> dict[str, float]:
    before = control(base, "stats")["queries"]
    path = [previous] if mode == "previous" and previous else []
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([*path, os.environ.get("PYTHONPATH", "")]),
        "AIRFLOW_CONN_GROK_VIDEO_DEFAULT": json.dumps(
            {"conn_type": "grok_video", "host": base, "password": KEY}
        ),
        "AIRFLOW_CONN_BENCH_HTTP": json.dumps(
            {"conn_type": "http", "host": base, "extra": {"Authorization": f"Bearer {KEY}"}}
        ),
        # INFO, as a triggerer runs: what a wait logs is part of its cost (the output is discarded).
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }
    result = run_scenario(SCENARIO, mode, [str(DURATION), str(WARM_UP), base], ids, env, previous)
    after = control(base, "stats")["queries"]
    polls, steady_polls = after - before, after - result.pop("queries_at_warm_up")
    idle = idle or {"cpu": 0.0, "cpu_steady": 0.0}
    result["polls"] = polls
    result["due"] = len(ids) * DURATION
    # A saturated anchor may hardly poll after its start-up: then there is no per-poll figure to give.
    steady_due = len(ids) * (DURATION - WARM_UP)
    result["cpu_ms_per_poll"] = (
        1000 * max(0.0, result["cpu_steady"] - idle["cpu_steady"]) / steady_polls
        if steady_polls >= 0.1 * steady_due
        else math.nan
    )
    result["cpu_ms_per_poll_all"] = 1000 * max(0.0, result["cpu"] - idle["cpu"]) / max(polls, 1)
    result["rss_mb_per_1000"] = result["rss_growth_kb"] / 1024 / len(ids) * 1000
    return dict(result)


def median(results: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over the runs (nan if any run had none)."""
    return {
        key: math.nan
        if any(math.isnan(r[key]) for r in results)
        else statistics.median(r[key] for r in results)
        for key in results[0]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100,1000", help="comma-separated numbers of concurrent waits")
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario; figures are medians")
    parser.add_argument(
        "--anchor", default=DEFAULT_ANCHOR, help="the commit measured as the previous code ('' for none)"
    )
    args = parser.parse_args()
    with running_emulator() as base, checkout(args.anchor) as previous:
        modes = [m for m in MODES if m != "previous" or previous]
        for size in (int(s) for s in args.sizes.split(",")):
            ids = create_tasks(base, size)
            idle = median([scenario("idle", ids, base) for _ in range(args.runs)])
            runs = [
                {mode: scenario(mode, ids, base, idle, previous) for mode in modes} for _ in range(args.runs)
            ]
            results = {mode: median([run[mode] for run in runs]) for mode in modes}
            report(size, results, args.runs, args.anchor if previous else None)


def report(size: int, r: dict[str, dict[str, float]], runs: int, anchor: str | None) -> None:
    ours, http, floor = r["ours"], r["http_sensor"], r["floor"]
    previous = r.get("previous")
    print(f"\n{size} concurrent waits, polling every 1 s for {DURATION:g} s; medians of {runs} runs")
    head = f"{'figure':<38}{'ours':>10}"
    if previous is not None:
        head += f"{f'previous ({anchor})':>20}"
    head += f"{'HttpSensorTrigger':>19}{'floor':>9}"
    head += f"{'ours/previous':>15}" if previous is not None else ""
    print(head + f"{'ours/http':>11}{'ours/floor':>11}")
    for label, key, fmt in (
        ("CPU ms per poll", "cpu_ms_per_poll", "{:.3f}"),
        (f"  ... first {WARM_UP:g} s included", "cpu_ms_per_poll_all", "{:.3f}"),
        ("peak RSS growth per 1,000 waits, MB", "rss_mb_per_1000", "{:.1f}"),
        ("worst event-loop lag, ms", "lag", "{:.0f}"),
        (f"  ... in the first {WARM_UP:g} s (start-up)", "start_lag", "{:.0f}"),
    ):
        scale = 1000 if key.endswith("lag") else 1
        o, h, f = (x[key] * scale for x in (ours, http, floor))
        line = f"{label:<38}{fmt.format(o):>10}"
        if previous is not None:
            line += f"{fmt.format(previous[key] * scale):>20}"
        line += f"{fmt.format(h):>19}{fmt.format(f):>9}"
        if previous is not None:
            p = previous[key] * scale
            line += f"{(o / p if p else float('nan')):>15.2f}"
        print(line + f"{(o / h if h else float('nan')):>11.2f}{(o / f if f else float('nan')):>11.2f}")
    line = f"{'polls achieved / due':<38}{ours['polls'] / ours['due']:>10.2f}"
    if previous is not None:
        line += f"{previous['polls'] / previous['due']:>20.2f}"
    print(line + f"{http['polls'] / http['due']:>19.2f}{floor['polls'] / floor['due']:>9.2f}")
    if any(math.isnan(x["cpu_ms_per_poll"]) for x in r.values()):
        print(f"nan: under a tenth of the polls due after the first {WARM_UP:g} s were made (saturated)")


if __name__ == "__main__":
    main()
