"""Start-up benchmark: N waits started together in one event loop, and the provider's share of any block.

A triggerer that picks up many deferred tasks at once creates their triggers one after the other and
runs them all in one event loop; Airflow's watchdog (``block_watchdog``: a 0.1 s sleep, timed) warns
when that loop was held for longer than ``[triggerer] blocked_main_thread_warning_threshold`` (0.2 s).
This benchmark starts ``--waits`` ``GrokVideoTrigger`` s together the way the triggerer does (each in
its own task, a ``sleep(0)`` between two creations) against the emulator in another process, with the
same watchdog, and times every turn of the event loop and every step in it. A block is one turn, less
its wait for I/O: the ready callbacks the loop runs before it looks at its timers again (the
watchdog's among them). A step of a wait's task, or of the connection lookup the waits share (its own
task, named ``LOOKUP_TASK_PREFIX``), is the provider's (its code and what it calls: the connection
lookup through Airflow's secrets backends, the hook, the session and the request it sets up, reading
the answer); any other step is not. Modules a triggerer has loaded before any trigger starts (its
job runner imports Airflow's supervisor, which the lookup uses) are loaded first.

Figures, per scenario, over the start-up (every wait's first query and a few more; the waits' deadline
is far beyond it, as waits that all end in the same instant are no start-up):

- the longest turn of the loop, the waits' steps in it (the provider's share of that block) and the
  garbage collection in it; the most the waits' steps took in any one turn (the provider's share of
  any block: the target); the longest single step of a wait;
- Airflow's watchdog's worst lag, as Airflow measures it (it sees only the part of a block that
  outlasts its 0.1 s sleep);
- garbage collection, apart: a collection runs inside whichever step allocates, and its pause is the
  whole heap's (in a triggerer, Airflow's own modules above all), so the waits' steps are counted
  without it;
- what the first queries cost, by part: the connection lookup, the hook's construction, the
  client's set-up (settings, session, TLS), the answers read (envelope and JSON), each as total and
  the longest single call.

Scenarios (each in a fresh process): ``ours`` (the first query after the jittered floor, as a sensor
started in the triggerer); ``ours, resumed`` (each trigger handed the answer read before deferring,
read long ago, as when a triggerer takes over waits from one that died); ``previous`` (``--anchor``'s
trigger, ``git archive`` of its package); ``floor`` (a bare ``aiohttp`` loop, one shared session, the
same jittered start). Target: the provider's share of any block under 50 ms at 1,000 waits.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from triggers import DEFAULT_ANCHOR, KEY, checkout, control, create_tasks, run_scenario, running_emulator

TARGET_MS = 50.0

SCENARIO = r"""
import asyncio, asyncio.events, json, os, random, sys, time
mode, poll, duration, base = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
ids = json.loads(sys.stdin.read())
steps = []  # the seconds of each step of a wait (garbage collection left out)
_run = asyncio.events.Handle._run
# The waits' own tasks, and the connection lookup they share (a task of its own): the provider's steps.
LOOKUP = "wait "  # the previous code looked up in each wait's own task
if mode != "floor":
    try:
        from airflow_grok_video.hooks.grok_video import LOOKUP_TASK_PREFIX as LOOKUP
    except ImportError:
        pass
import gc
collections = []  # (start, seconds): the garbage collector's pauses, while measuring
_gc_started = [0.0]
def on_gc(phase, info):
    if phase == "start":
        _gc_started[0] = time.perf_counter()
    else:
        collections.append((_gc_started[0], time.perf_counter() - _gc_started[0]))

# A block is one turn of the event loop: the ready callbacks it runs before it looks at its timers
# again (Airflow's watchdog among them). Each turn: its length, the waits' steps in it, its GC.
turns = []
current = {"mine": 0.0, "gc": 0.0, "idle": 0.0}
_run_once = asyncio.base_events.BaseEventLoop._run_once
import selectors
_select = selectors.DefaultSelector.select

def timed_select(self, timeout=None):  # waiting for I/O is no block: left out of the turn
    start = time.perf_counter()
    try:
        return _select(self, timeout)
    finally:
        current["idle"] += time.perf_counter() - start

def timed_run_once(self):
    current["mine"] = current["gc"] = current["idle"] = 0.0
    start = time.perf_counter()
    try:
        return _run_once(self)
    finally:
        turns.append((time.perf_counter() - start - current["idle"], current["mine"], current["gc"]))

def timed_run(self):
    owner = getattr(self._callback, "__self__", None)
    mine = isinstance(owner, asyncio.Task) and owner.get_name().startswith(("wait ", LOOKUP))
    collected = len(collections)
    start = time.perf_counter()
    try:
        return _run(self)
    finally:
        seconds = time.perf_counter() - start
        # A collection runs in whichever step allocates; its pause is the whole heap's (in a
        # triggerer, Airflow's modules above all): taken out of the step, counted apart.
        pause = sum(s for _, s in collections[collected:])
        current["gc"] += pause
        if mine:
            current["mine"] += seconds - pause
            steps.append(seconds - pause)

parts = {}
def timed(owner, name, part, is_async=False):
    original = getattr(owner, name)
    def record(seconds):
        total, longest, calls = parts.get(part, (0.0, 0.0, 0))
        parts[part] = (total + seconds, max(longest, seconds), calls + 1)
    if is_async:
        async def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                record(time.perf_counter() - start)
    else:
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                record(time.perf_counter() - start)
    setattr(owner, name, wrapper)

async def ours(task_id, end, resumed):
    from airflow_grok_video.triggers.grok_video import GrokVideoTrigger
    kwargs = {"video_task_id": task_id, "grok_conn_id": "grok_video_default", "poll_interval": poll,
              "end_time": end, "max_poll_interval": 120.0}
    if resumed:  # read long ago: its next query is due at once
        kwargs["first_answer"] = {"status": "processing", "progress": 1, "created_at": int(time.time()) - 600,
                                  "read_at": time.time() - 300}
    async for _ in GrokVideoTrigger(**kwargs).run():
        pass

async def floor(session, task_id, end):
    url = f"{base}/api/open-api/v1/videos/{task_id}"
    await asyncio.sleep(random.uniform(0.5 * poll, poll))
    while time.time() < end:
        async with session.get(url, headers={"Authorization": "Bearer sk_bench_key"}) as response:
            json.loads(await response.read())
        await asyncio.sleep(poll)

async def main():
    import aiohttp
    if mode != "floor":  # loaded once by the triggerer, before any wait starts
        import airflow.sdk.execution_time.supervisor  # the triggerer's job runner imports it at its start
        import airflow_grok_video.triggers.grok_video
        from airflow.providers.common.compat import connection
        from airflow_grok_video.hooks import _clients, _envelope, grok_video
        from airflow_grok_video import video_task
        timed(connection, "get_async_connection", "connection lookup", is_async=True)
        timed(grok_video.GrokVideoHook, "__init__", "hook construction")
        timed(grok_video.GrokVideoHook, "_settings", "client set-up: settings")
        timed(_clients.AsyncClient, "open", "client set-up: session, TLS")
        timed(grok_video, "unwrap", "answer: envelope and JSON")
        timed(video_task.VideoTask, "from_data", "answer: the video task")
    gc.callbacks.append(on_gc)
    asyncio.events.Handle._run = timed_run
    asyncio.base_events.BaseEventLoop._run_once = timed_run_once
    selectors.DefaultSelector.select = timed_select
    lags = []
    async def watchdog():  # as Airflow's block_watchdog
        while True:
            last = time.monotonic()
            await asyncio.sleep(0.1)
            lags.append((last, time.monotonic() - last))
    dog = asyncio.create_task(watchdog())
    end = time.time() + duration + 600
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) if mode == "floor" else None
    tasks = []
    for i, task_id in enumerate(ids):  # as the triggerer's create_triggers: one by one, yielding between
        await asyncio.sleep(0)
        coro = floor(session, task_id, end) if session else ours(task_id, end, mode == "resumed")
        tasks.append(asyncio.create_task(coro, name=f"wait {i}"))
    # Measured until every wait has made its first query and a few more; the deadline is far beyond
    # (waits that all end in the same instant are no start-up), and the waits are cancelled then.
    await asyncio.sleep(end - 600 - time.time())
    asyncio.events.Handle._run = _run
    asyncio.base_events.BaseEventLoop._run_once = _run_once
    selectors.DefaultSelector.select = _select
    gc.callbacks.remove(on_gc)
    dog.cancel()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if session:
        await session.close()
    worst = max(turns)
    print(json.dumps({
        "worst_turn": worst[0], "share_of_worst": worst[1], "gc_in_worst": worst[2],
        "most_share": max(mine for _, mine, _ in turns), "worst_lag": max(lag for _, lag in lags) - 0.1,
        "longest_step": max(steps, default=0.0), "wait_seconds": sum(steps), "parts": parts,
        "gc_longest": max((s for _, s in collections), default=0.0),
    }))

asyncio.run(main())
"""


def scenario(mode: str, ids: list[str], base: str, poll: float, previous: str | None) -> dict[str, object]:
    """One scenario in a fresh process: its figures."""
    env = {
        **os.environ,
        "AIRFLOW_CONN_GROK_VIDEO_DEFAULT": json.dumps(
            {"conn_type": "grok_video", "host": base, "password": KEY}
        ),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",  # as a triggerer runs
    }
    return run_scenario(SCENARIO, mode, [str(poll), str(poll + 3), base], ids, env, previous)


def report(waits: int, poll: float, results: dict[str, dict[str, object]], anchor: str | None) -> None:
    """Print each scenario's figures side by side."""
    print(
        f"\n{waits} waits started together, first queries jittered over {poll / 2:g}-{poll:g} s"
        f" (``resumed``: every first query due at once); ms, one run each"
    )
    names = {"ours": "ours", "resumed": "ours, resumed", "previous": f"previous ({anchor})", "floor": "floor"}
    print(f"{'figure':<52}" + "".join(f"{names[m]:>20}" for m in results))
    for label, key in (
        ("longest turn of the event loop (a block)", "worst_turn"),
        ("  the waits' steps in it (the provider's share)", "share_of_worst"),
        ("  garbage collection in it (the heap's)", "gc_in_worst"),
        ("the waits' steps in any one turn, at most", "most_share"),
        ("longest single step of a wait", "longest_step"),
        ("worst watchdog lag (Airflow warns above 200)", "worst_lag"),
        ("longest garbage collection (the heap's)", "gc_longest"),
    ):
        print(f"{label:<52}" + "".join(f"{1000 * float(r[key]):>20.1f}" for r in results.values()))  # type: ignore[arg-type]
    parts = sorted({p for r in results.values() for p in r["parts"]})  # type: ignore[attr-defined]
    if parts:
        print("first queries' parts (ours): total ms over all waits / longest single call ms / calls")
    for part in parts:
        cells = ""
        for r in results.values():
            total, longest, calls = r["parts"].get(part, (0.0, 0.0, 0))  # type: ignore[attr-defined]
            cells += f"{f'{1000 * total:.1f} / {1000 * longest:.2f} / {calls}' if calls else '':>20}"
        print(f"  {part:<50}{cells}")
    worst_share = max(float(r["most_share"]) for m, r in results.items() if m in ("ours", "resumed"))  # type: ignore[arg-type]
    verdict = "met" if 1000 * worst_share < TARGET_MS else "NOT met"
    print(f"target (the provider's share of any block < {TARGET_MS:g} ms): {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--waits", default="1000", help="comma-separated numbers of waits started together")
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=15.0,
        help="the floor (the sensor's default): first queries within it",
    )
    parser.add_argument("--anchor", default=DEFAULT_ANCHOR, help="the commit measured as the previous code")
    args = parser.parse_args()
    with running_emulator() as base, checkout(args.anchor) as previous:
        for waits in (int(w) for w in args.waits.split(",")):
            ids = create_tasks(base, waits)
            modes = ["ours", "resumed", *(["previous"] if previous else []), "floor"]
            results = {m: scenario(m, ids, base, args.poll_interval, previous) for m in modes}
            report(waits, args.poll_interval, results, args.anchor if previous else None)
            control(base, "stats")


if __name__ == "__main__":
    main()
