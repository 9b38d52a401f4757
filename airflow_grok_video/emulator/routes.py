"""The emulator's routing: which handler answers which method and path."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from airflow_grok_video.emulator.api import ApiHandlers
from airflow_grok_video.emulator.control import ControlHandlers
from airflow_grok_video.emulator.wire import CONTROL_PREFIX, CREATE_PATH, QUERY_PREFIX, VIDEO_PREFIX

if TYPE_CHECKING:
    from airflow_grok_video.emulator.server import GrokVideoEmulator


def application(emulator: GrokVideoEmulator) -> web.Application:
    """
    The aiohttp application serving one emulator: the API, the video downloads and the control endpoints.

    :param emulator: the emulator whose record the handlers read and write.
    """
    api, control = ApiHandlers(emulator), ControlHandlers(emulator)
    app = web.Application()
    app.router.add_post(CREATE_PATH, api.create)
    app.router.add_get(QUERY_PREFIX + "{task_id}", api.query)
    app.router.add_get(VIDEO_PREFIX + "{task_id}.mp4", api.video)
    app.router.add_get(CONTROL_PREFIX + "requests", control.requests)
    app.router.add_get(CONTROL_PREFIX + "stats", control.stats)
    app.router.add_post(CONTROL_PREFIX + "reset", control.reset)
    app.router.add_post(CONTROL_PREFIX + "rules", control.rules)
    app.router.add_post(CONTROL_PREFIX + "faults", control.faults)
    app.router.add_post(CONTROL_PREFIX + "config", control.config)
    app.router.add_route("*", "/{tail:.*}", api.unknown)
    return app
