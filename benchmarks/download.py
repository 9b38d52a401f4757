"""Download benchmark: GrokVideoToStorageOperator vs curl, same emulator, same disk.

Prints throughput (median of N runs) with curl as the anchor, and the operator's memory growth.
Run with ``make bench`` (or ``python benchmarks/download.py --mb 200 --runs 3``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_emulator(size: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_grok_video.emulator",
            "--port",
            str(port),
            "--queue-seconds",
            "0",
            "--generation-seconds",
            "0",
            "--video-bytes",
            str(size),
        ],
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    process.stdout.readline()
    return process, f"http://127.0.0.1:{port}"


def finished_video(base: str) -> str:
    body = json.dumps({"model": "grok-1.5", "prompt": "bench", "image_urls": ["https://example.com/a.png"]})
    request = urllib.request.Request(
        f"{base}/api/open-api/v1/grok/videos",
        data=body.encode(),
        method="POST",
        headers={"Authorization": "Bearer sk_bench", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        task_id = json.loads(response.read())["data"]["task_id"]
    return f"{base}/videos/{task_id}.mp4"


def operator_run(url: str, dest: Path, *, overwrite: bool = True) -> dict[str, float]:
    """
    One run of the operator, in a fresh process: seconds and RSS growth in MB.

    :param url: the video's URL.
    :param dest: where to keep it.
    :param overwrite: download and replace ``dest``; false compares an existing ``dest`` with the video.
    """
    code = f"""
import json, resource, time
from airflow.sdk.execution_time.context import OutletEventAccessors
from airflow_grok_video.transfers.grok_video_to_storage import GrokVideoToStorageOperator
op = GrokVideoToStorageOperator(
    task_id="keep", video_url={url!r}, dest={f"file://{dest}"!r}, overwrite={overwrite!r}
)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
op.execute({{"outlet_events": OutletEventAccessors()}})
seconds = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"seconds": seconds, "rss_growth_mb": (after - before) / 1024}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"the operator's download failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def curl_run(url: str, dest: Path) -> float:
    start = time.perf_counter()
    subprocess.run(["curl", "-s", "-o", str(dest), url], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    size = args.mb * 1024 * 1024
    emulator, base = start_emulator(size)
    folder = Path(tempfile.mkdtemp(prefix="grok-bench-", dir=os.environ.get("BENCH_DIR")))
    try:
        url = finished_video(base)
        ours = [operator_run(url, folder / "ours.mp4") for _ in range(args.runs)]
        # A re-run to a dest that holds the video: streamed again and compared byte for byte.
        again = [operator_run(url, folder / "ours.mp4", overwrite=False) for _ in range(args.runs)]
        curls = [curl_run(url, folder / "curl.mp4") for _ in range(args.runs)] if shutil.which("curl") else []
    finally:
        emulator.terminate()
        emulator.wait()
        shutil.rmtree(folder, ignore_errors=True)
    ours_mbps = statistics.median(size / r["seconds"] / 1e6 for r in ours)
    growth = statistics.median(r["rss_growth_mb"] for r in ours)
    again_mbps = statistics.median(size / r["seconds"] / 1e6 for r in again)
    print(f"\nDownload of {args.mb} MiB to local disk, median of {args.runs} runs")
    print(f"{'figure':<42}{'ours':>12}{'anchor (curl)':>16}{'ratio':>9}")
    if curls:
        curl_mbps = statistics.median(size / s / 1e6 for s in curls)
        print(f"{'throughput, MB/s':<42}{ours_mbps:>12.1f}{curl_mbps:>16.1f}{ours_mbps / curl_mbps:>9.2f}")
    else:
        print(f"{'throughput, MB/s':<42}{ours_mbps:>12.1f}{'(no curl)':>16}")
    print(f"{'re-run to a dest holding it (compare), MB/s':<42}{again_mbps:>12.1f}{'':>16}")
    print(f"{'peak RSS growth during the download, MB':<42}{growth:>12.1f}{'':>16}")


if __name__ == "__main__":
    main()
