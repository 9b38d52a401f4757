"""A local emulator of Jimmy AI's Grok video API, for demos and tests (yours too).

Run it with ``python -m airflow_grok_video.emulator --port 8089``, or in-process::

    with GrokVideoEmulator(generation_seconds=1) as emu:
        emu.add_rule(Rule(prompt_contains="doomed", outcome="failed"))
        emu.inject(Fault("status", status=503, method="GET"))
        ...  # point the connection at emu.base_url
        assert emu.accepted_creates == 1

It depends on aiohttp and the standard library only, and the provider never imports it.
"""

from __future__ import annotations

from airflow_grok_video.emulator.server import Fault, GrokVideoEmulator, RecordedRequest, Rule

__all__ = ["Fault", "GrokVideoEmulator", "RecordedRequest", "Rule"]
