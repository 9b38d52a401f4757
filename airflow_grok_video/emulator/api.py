"""The emulator's answers to the API's requests: create, query, the video download, unknown paths.

Handlers are cheap and never block: a task's status is computed from the clock on each query
(no background work), and the only sleeps are those of injected ``slow`` faults. They read and
write the emulator's record through its bookkeeping (``_authorized``, ``_record``, ``_take_fault``,
``_accept``), which holds the lock.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from airflow_grok_video.emulator.faults import Fault, fault_answer
from airflow_grok_video.emulator.validation import InvalidCreate, parse_create
from airflow_grok_video.emulator.wire import (
    CONTROL_PREFIX,
    CREATE_PATH,
    QUERY_PREFIX,
    RESET_PREFIX,
    abort,
    envelope,
    not_found,
    read_json,
    unauthorized,
    video_chunks,
    video_prefix,
)

if TYPE_CHECKING:
    from airflow_grok_video.emulator.server import GrokVideoEmulator


class ApiHandlers:
    """
    The API's endpoints, answered from one emulator's tasks, rules and faults.

    :param emulator: the emulator whose record the answers come from and go to.
    """

    def __init__(self, emulator: GrokVideoEmulator) -> None:
        self.emulator = emulator

    async def create(self, request: web.Request) -> web.StreamResponse:
        """
        ``POST`` of a video task: accept (and bill) it, or answer the fault queued for it.

        :param request: the request.
        """
        emu = self.emulator
        body = read_json(await request.read())
        auth_ok = emu._authorized(request)
        fault = emu._take_fault(request.method, request.path)
        if fault is not None and fault.kind != "slow" and not fault.after_accept:
            return self._serve_fault(request, fault, body, auth_ok)
        response = self._create_answer(body, auth_ok)
        if fault is not None and fault.kind != "slow":
            return self._serve_fault(request, fault, body, auth_ok)
        return await self._answer(request, body, response, auth_ok, fault)

    async def query(self, request: web.Request) -> web.StreamResponse:
        """
        ``GET`` of a video task: its status now, or the fault queued for it.

        :param request: the request.
        """
        auth_ok = self.emulator._authorized(request)
        fault = self.emulator._take_fault(request.method, request.path)
        if fault is not None and fault.kind != "slow":
            return self._serve_fault(request, fault, None, auth_ok)
        return await self._answer(request, None, self._query_answer(request, auth_ok), auth_ok, fault)

    async def video(self, request: web.Request) -> web.StreamResponse:
        """
        ``GET`` of a finished video's bytes (no key needed), streamed; 404 until it is done.

        :param request: the request.
        """
        emu = self.emulator
        fault = emu._take_fault(request.method, request.path)
        task = emu._tasks.get(request.match_info["task_id"])
        ready = task is not None and task.ready(time.time())
        if fault is not None and fault.kind != "slow":
            prefix = RESET_PREFIX
            if task is not None and ready:
                prefix = video_prefix(emu.video_bytes, task.task_id)
            return self._serve_fault(request, fault, None, True, prefix)
        emu._record(request, None, 200 if ready else 404, True)
        if fault is not None:
            await asyncio.sleep(fault.delay)
        if not ready:
            return web.Response(status=404, text="not found")
        return await _stream_video(request, emu.video_bytes, request.match_info["task_id"])

    async def unknown(self, request: web.Request) -> web.StreamResponse:
        """
        Any other path or method: the API's 404 or 405 (recorded), or a control endpoint's 404.

        :param request: the request.
        """
        if request.path.startswith(CONTROL_PREFIX):
            return web.json_response({"error": "no such control endpoint"}, status=404)
        known = request.path == CREATE_PATH or request.path.startswith(QUERY_PREFIX)
        if known:
            response = envelope(None, code="40500", msg="method not allowed", status=405)
        else:
            response = not_found("no such endpoint")
        body = read_json(await request.read())
        self.emulator._record(request, body, response.status, self.emulator._authorized(request))
        return response

    def _create_answer(self, body: Any, auth_ok: bool) -> web.Response:
        if not auth_ok:
            return unauthorized()
        try:
            params = parse_create(body)
        except InvalidCreate as exc:
            return envelope(None, code="40000", msg=str(exc), status=400)
        task = self.emulator._accept(params)
        if task is None:
            return envelope(None, code="40200", msg="insufficient balance")
        data = {
            "task_id": task.task_id,
            "status": "queued",
            "model": task.model,
            "created_at": int(task.created),
        }
        return envelope(data)

    def _query_answer(self, request: web.Request, auth_ok: bool) -> web.Response:
        if not auth_ok:
            return unauthorized()
        task = self.emulator._tasks.get(request.match_info["task_id"])
        if task is None:
            return not_found()
        return envelope(task.view(self.emulator.base_url, time.time()))

    async def _answer(
        self, request: web.Request, body: Any, response: web.Response, auth_ok: bool, slow: Fault | None
    ) -> web.Response:
        """Record the request on arrival, then answer (after the delay of a ``slow`` fault)."""
        self.emulator._record(request, body, response.status, auth_ok)
        if slow is not None:
            await asyncio.sleep(slow.delay)
        return response

    def _serve_fault(
        self, request: web.Request, fault: Fault, body: Any, auth_ok: bool, prefix: bytes = RESET_PREFIX
    ) -> web.Response:
        """Answer with a fault; a ``reset`` sends ``prefix`` and drops the connection."""
        if fault.kind == "reset":
            self.emulator._record(request, body, 0, auth_ok)
            abort(request, prefix)
            return web.Response()  # aiohttp finds the transport closed and drops it quietly
        response = fault_answer(fault)
        self.emulator._record(request, body, response.status, auth_ok)
        return response


async def _stream_video(request: web.Request, size: int, task_id: str) -> web.StreamResponse:
    """
    Send a video task's bytes in chunks (``HEAD``: the headers only).

    :param request: the request.
    :param size: the video's size.
    :param task_id: the video task, whose bytes are its own.
    """
    response = web.StreamResponse(status=200, headers={"Content-Type": "video/mp4"})
    response.content_length = size
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    try:
        for chunk in video_chunks(size, task_id):
            await response.write(chunk)
    except ConnectionError:
        pass  # the client went away; aiohttp then drops the connection quietly
    return response
