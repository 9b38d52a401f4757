"""Import cost at DAG-parse time: our operator + sensor vs the HTTP provider's HttpOperator + HttpSensor.

Each measurement runs in a fresh interpreter that has already imported ``airflow.sdk`` (as every DAG
file does); we time only the extra imports. Median of N runs. ``make bench`` runs it.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

CODE = """
import time, airflow.sdk
start = time.perf_counter()
{imports}
print(time.perf_counter() - start)
"""
OURS = (
    "from airflow_grok_video.operators.grok_video import GrokCreateVideoOperator\n"
    "from airflow_grok_video.sensors.grok_video import GrokVideoSensor"
)
HTTP = (
    "from airflow.providers.http.operators.http import HttpOperator\n"
    "from airflow.providers.http.sensors.http import HttpSensor"
)


def measure(imports: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", CODE.format(imports=imports)], capture_output=True, text=True, check=True
        )
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    ours, http = measure(OURS, args.runs), measure(HTTP, args.runs)
    print(f"\nImport cost on top of airflow.sdk, median of {args.runs} fresh interpreters")
    print(f"{'figure':<44}{'ours':>8}{'anchor (HTTP provider)':>24}{'ratio':>8}")
    print(f"{'operator + sensor import, ms':<44}{ours:>8.1f}{http:>24.1f}{ours / http:>8.2f}")


if __name__ == "__main__":
    main()
