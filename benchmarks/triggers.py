"""Trigger benchmark: N concurrent waits polling the emulator every second, three ways, in one event loop.

- ours: ``GrokVideoTrigger`` (connection resolved once per trigger, one HTTP session per wait);
- anchor (a): the HTTP provider's ``HttpSensorTrigger`` (a new session and a connection lookup per poll;
  it polls a task id the emulator answers 404 for, which is how it keeps waiting);
- anchor (b), the floor: one shared ``aiohttp`` session doing GET + JSON parse in a bare loop.

Each scenario runs in a fresh process (for RSS); the emulator runs in another. Reports CPU ms per poll,
peak RSS per 1,000 waits, worst event-loop lag, polls achieved vs polls due. ``make bench`` runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import urllib.request

DURATION = 10.0
KEY = "sk_bench_key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def control(base: str, path: str) -> dict:
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
import asyncio, json, os, resource, sys, time
mode, count, duration, base = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
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
    while time.time() < end:
        async with session.get(url, headers=headers) as response:
            json.loads(await response.read())
        await asyncio.sleep(1.0)

async def main():
    import aiohttp
    import airflow_grok_video.triggers.grok_video, airflow.providers.http.triggers.http  # imports outside the timing
    lag = 0.0
    async def ticker():
        nonlocal lag
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.05)
            lag = max(lag, time.monotonic() - before - 0.05)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu_before = time.process_time()
    end = time.time() + duration
    tick = asyncio.create_task(ticker())
    if mode == "floor":
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            await asyncio.gather(*(floor(session, t, end) for t in ids))
    else:
        runner = ours if mode == "ours" else http_sensor
        await asyncio.gather(*(runner(t, end) for t in ids))
    tick.cancel()
    cpu = time.process_time() - cpu_before
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"cpu": cpu, "lag": lag, "rss_growth_kb": rss - rss_before}))

asyncio.run(main())
"""


def scenario(mode: str, ids: list[str], base: str) -> dict[str, float]:
    before = control(base, "stats")["queries"]
    env = {
        **os.environ,
        "AIRFLOW_CONN_GROK_VIDEO_DEFAULT": json.dumps(
            {"conn_type": "grok_video", "host": base, "password": KEY}
        ),
        "AIRFLOW_CONN_BENCH_HTTP": json.dumps(
            {"conn_type": "http", "host": base, "extra": {"Authorization": f"Bearer {KEY}"}}
        ),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    }
    out = subprocess.run(
        [sys.executable, "-c", SCENARIO, mode, str(len(ids)), str(DURATION), base],
        input=json.dumps(ids),
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    polls = control(base, "stats")["queries"] - before
    result["polls"] = polls
    result["due"] = len(ids) * DURATION
    result["cpu_ms_per_poll"] = 1000 * result["cpu"] / max(polls, 1)
    result["rss_mb_per_1000"] = result["rss_growth_kb"] / 1024 / len(ids) * 1000
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100,1000", help="comma-separated numbers of concurrent waits")
    args = parser.parse_args()
    port = free_port()
    emulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_grok_video.emulator",
            "--port",
            str(port),
            "--generation-seconds",
            "86400",
            "--api-key",
            KEY,
        ],
        stdout=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        assert emulator.stdout is not None
        emulator.stdout.readline()
        for size in (int(s) for s in args.sizes.split(",")):
            ids = create_tasks(base, size)
            results = {mode: scenario(mode, ids, base) for mode in ("ours", "http_sensor", "floor")}
            report(size, results)
    finally:
        emulator.terminate()
        emulator.wait()


def report(size: int, r: dict[str, dict[str, float]]) -> None:
    ours, http, floor = r["ours"], r["http_sensor"], r["floor"]
    print(f"\n{size} concurrent waits, polling every 1 s for {DURATION:g} s")
    print(
        f"{'figure':<34}{'ours':>10}{'HttpSensorTrigger':>19}{'floor':>9}{'ours/http':>11}{'ours/floor':>11}"
    )
    for label, key, fmt in (
        ("CPU ms per poll", "cpu_ms_per_poll", "{:.3f}"),
        ("peak RSS growth per 1,000 waits, MB", "rss_mb_per_1000", "{:.1f}"),
        ("worst event-loop lag, ms", "lag", "{:.0f}"),
    ):
        scale = 1000 if key == "lag" else 1
        o, h, f = (x[key] * scale for x in (ours, http, floor))
        print(
            f"{label:<34}{fmt.format(o):>10}{fmt.format(h):>19}{fmt.format(f):>9}"
            f"{(o / h if h else float('nan')):>11.2f}{(o / f if f else float('nan')):>11.2f}"
        )
    print(
        f"{'polls achieved / due':<34}{ours['polls'] / ours['due']:>10.2f}"
        f"{http['polls'] / http['due']:>19.2f}{floor['polls'] / floor['due']:>9.2f}"
    )


if __name__ == "__main__":
    main()
