"""A local emulator of Jimmy AI's Grok video API, for demos and tests (yours too).

Run it with ``python -m airflow_grok_video.emulator --port 8089``, or in-process::

    with GrokVideoEmulator(generation_seconds=1) as emu:
        ...  # point the connection at emu.base_url
"""

from __future__ import annotations

from airflow_grok_video.emulator.server import Fault, GrokVideoEmulator, RecordedRequest, Rule

__all__ = ["Fault", "GrokVideoEmulator", "RecordedRequest", "Rule"]
