"""The emulator's control endpoints (``/_emulator/...``): another process drives it over HTTP.

They take no key, are not recorded among the requests, and answer JSON; a body that is not an
acceptable JSON object gets HTTP 400 with ``{"error": "..."}``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from aiohttp import web

from airflow_grok_video.emulator.faults import Fault
from airflow_grok_video.emulator.tasks import Rule
from airflow_grok_video.emulator.wire import read_json

if TYPE_CHECKING:
    from airflow_grok_video.emulator.server import GrokVideoEmulator


class ControlHandlers:
    """
    The control endpoints of one emulator: each calls the emulator's method of the same name.

    :param emulator: the emulator controlled.
    """

    def __init__(self, emulator: GrokVideoEmulator) -> None:
        self.emulator = emulator

    async def requests(self, request: web.Request) -> web.Response:
        """``GET /_emulator/requests``: every request received, oldest first."""
        return web.json_response([asdict(r) for r in self.emulator.requests])

    async def stats(self, request: web.Request) -> web.Response:
        """``GET /_emulator/stats``: counts and task statuses."""
        return web.json_response(self.emulator.stats())

    async def reset(self, request: web.Request) -> web.Response:
        """``POST /_emulator/reset``: forget tasks, requests, counts, rules and faults."""
        self.emulator.reset()
        return web.json_response({"ok": True})

    async def rules(self, request: web.Request) -> web.Response:
        """``POST /_emulator/rules``: add the :class:`Rule` whose fields the body holds."""
        return await _control_call(request, lambda fields: self.emulator.add_rule(Rule(**fields)))

    async def faults(self, request: web.Request) -> web.Response:
        """``POST /_emulator/faults``: queue the :class:`Fault` whose fields the body holds."""
        return await _control_call(request, lambda fields: self.emulator.inject(Fault(**fields)))

    async def config(self, request: web.Request) -> web.Response:
        """``POST /_emulator/config``: change the settings the body names."""
        return await _control_call(request, self.emulator.configure)


async def _control_call(request: web.Request, apply: Callable[[dict[str, Any]], None]) -> web.Response:
    """Apply a control call's JSON object; 400 with the reason when it is not acceptable."""
    fields = read_json(await request.read())
    if not isinstance(fields, dict):
        return web.json_response({"error": "the body must be a JSON object"}, status=400)
    try:
        apply(fields)
    except (TypeError, ValueError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response({"ok": True})
