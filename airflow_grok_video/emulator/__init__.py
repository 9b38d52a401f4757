"""A local emulator of Jimmy AI's Grok video API, for demos and tests (yours too).

Run it with ``python -m airflow_grok_video.emulator --port 8089``, or in-process::

    with GrokVideoEmulator(generation_seconds=1) as emu:
        emu.add_rule(Rule(prompt_contains="doomed", outcome="failed"))
        emu.inject(Fault("status", status=503, method="GET"))
        ...  # point the connection at emu.base_url
        assert emu.accepted_creates == 1

It depends on aiohttp and the standard library only, and the provider never imports it.

Its modules: ``server`` (:class:`GrokVideoEmulator`: lifecycle, settings, the record of tasks and
requests), ``routes`` (which handler answers which path), ``api`` (the answers to the API's
requests and video downloads), ``control`` (the ``/_emulator/...`` endpoints), ``tasks``
(:class:`Rule` and :class:`EmulatedVideo`, whose status follows the clock), ``progress``
(``ProgressModel``: how status and progress follow the clock), ``validation`` (the create request's
documented rules), ``faults`` (:class:`Fault` and the answers that stand for it) and ``wire``
(paths, the JSON envelope, dropped connections, video bytes).
"""

from __future__ import annotations

from airflow_grok_video.emulator.faults import Fault
from airflow_grok_video.emulator.server import GrokVideoEmulator, RecordedRequest
from airflow_grok_video.emulator.tasks import EmulatedVideo, Rule

__all__ = ["EmulatedVideo", "Fault", "GrokVideoEmulator", "RecordedRequest", "Rule"]
