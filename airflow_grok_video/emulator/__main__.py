"""Command line: ``python -m airflow_grok_video.emulator --port 8089``."""

from __future__ import annotations

import argparse
import asyncio
import signal

from airflow_grok_video.emulator.server import GrokVideoEmulator


def main(argv: list[str] | None = None) -> int:
    """Serve the emulator until SIGINT or SIGTERM.

    :param argv: the arguments (``sys.argv[1:]`` when ``None``).
    """
    parser = argparse.ArgumentParser(prog="python -m airflow_grok_video.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--queue-seconds", type=float, default=1.0)
    parser.add_argument("--generation-seconds", type=float, default=5.0)
    parser.add_argument(
        "--api-key", action="append", dest="api_keys", help="accept only this key (repeatable)"
    )
    parser.add_argument(
        "--balance", type=int, default=None, help="videos that can be bought (default: unlimited)"
    )
    parser.add_argument("--video-bytes", type=int, default=64 * 1024)
    args = parser.parse_args(argv)
    emulator = GrokVideoEmulator(
        args.host,
        args.port,
        api_keys=args.api_keys,
        queue_seconds=args.queue_seconds,
        generation_seconds=args.generation_seconds,
        balance=args.balance,
        video_bytes=args.video_bytes,
    )
    asyncio.run(_serve(emulator))
    return 0


async def _serve(emulator: GrokVideoEmulator) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await emulator.open()
    print(f"Grok video emulator listening on {emulator.base_url}", flush=True)
    try:
        await stop.wait()
    finally:
        await emulator.close()


if __name__ == "__main__":
    raise SystemExit(main())
