"""Command line: ``python -m airflow_grok_video.emulator --host 127.0.0.1 --port 8089``.

Serves the emulator until SIGINT or SIGTERM, then exits 0. Control it from other processes through
its ``/_emulator/...`` endpoints.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from airflow_grok_video.emulator.progress import ProgressModel
from airflow_grok_video.emulator.server import GrokVideoEmulator
from airflow_grok_video.emulator.wire import DEFAULT_VIDEO_BYTES


def main(argv: list[str] | None = None) -> int:
    """
    Serve the emulator until SIGINT or SIGTERM.

    :param argv: the arguments (``sys.argv[1:]`` when ``None``).
    """
    args = _parser().parse_args(argv)
    emulator = GrokVideoEmulator(
        args.host,
        args.port,
        api_keys=args.api_keys,
        queue_seconds=args.queue_seconds,
        generation_seconds=args.generation_seconds,
        balance=args.balance,
        video_bytes=args.video_bytes,
        playable=args.playable,
        progress_model=args.progress_model,
    )
    _raise_open_file_limit()
    asyncio.run(_serve(emulator))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m airflow_grok_video.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8089, help="port to bind; 0 picks one (default: 8089)")
    parser.add_argument("--queue-seconds", type=float, default=1.0, help="time a task stays queued")
    parser.add_argument("--generation-seconds", type=float, default=5.0, help="time a task stays processing")
    parser.add_argument(
        "--progress-model",
        type=_progress_model,
        default=ProgressModel(),
        metavar="SPEC",
        help="how status and progress follow the clock, e.g. 'shape=ease-out,queue=0.2,origin=created' "
        "(shape: linear, ease-in, ease-out, smoothstep, steps, none; queue: a share 0-0.3 of "
        "--generation-seconds, which is then the whole time; origin: processing or created; "
        "default: queued --queue-seconds, then linear from the processing start)",
    )
    parser.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        help="accept only this key (repeatable; default: any sk_...)",
    )
    parser.add_argument(
        "--balance", type=int, default=None, help="videos that can be bought (default: unlimited)"
    )
    parser.add_argument(
        "--video-bytes", type=int, default=DEFAULT_VIDEO_BYTES, help="size of each video served"
    )
    parser.add_argument(
        "--playable",
        action="store_true",
        help="serve each video as a real MP4 that players play (a 6-second H.264 clip, about 55 KB, "
        "and a box naming the task; --video-bytes is then not used)",
    )
    return parser


def _progress_model(spec: str) -> ProgressModel:
    try:
        return ProgressModel.parse(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _raise_open_file_limit() -> None:
    """Let thousands of keep-alive clients connect: lift the soft open-file limit to the hard one."""
    try:
        import resource
    except ImportError:  # not on Unix
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and hard != resource.RLIM_INFINITY:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


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
