"""The emulator's answers to the API's requests: create, query, the video download, unknown paths.

Handlers are cheap and never block: a task's status is computed from the clock on each query
(no background work), and the only sleeps are those of injected ``slow`` faults. They read and
write the emulator's record through its bookkeeping (``_authorized``, ``_record``, ``_take_fault``,
``_accept``), which holds the lock; a video's bytes come from ``_video`` (a
:class:`~airflow_grok_video.emulator.wire.VideoFile`, the one home of what a download holds).
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
    VideoAnswer,
    abort,
    envelope,
    not_found,
    read_json,
    unauthorized,
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

        A single byte range is answered as a CDN does (206, or 416 when no byte of the file is in it).

        :param request: the request.
        """
        emu = self.emulator
        fault = emu._take_fault(request.method, request.path)
        task = emu._tasks.get(request.match_info["task_id"])
        answer = None
        if task is not None and task.ready(time.time()):
            # No validator is ever sent, so an If-Range can match none: the whole file is the answer.
            asked = None if "If-Range" in request.headers else request.headers.get("Range")
            answer = VideoAnswer.asked(emu._video(task.task_id), asked)
        if fault is not None and fault.kind != "slow":
            prefix = RESET_PREFIX if answer is None else answer.prefix()
            return self._serve_fault(request, fault, None, True, prefix)
        emu._record(request, None, 404 if answer is None else answer.status, True)
        if fault is not None:
            await asyncio.sleep(fault.delay)
        if answer is None:
            return web.Response(status=404, text="not found")
        return await _stream_video(request, answer)

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


async def _stream_video(request: web.Request, answer: VideoAnswer) -> web.StreamResponse:
    """
    Send a video download's answer, its body in chunks (``HEAD``: the headers only).

    :param request: the request.
    :param answer: the status, headers and bytes of the video file to send.
    """
    response = web.StreamResponse(status=answer.status, headers=answer.headers)
    response.content_length = answer.stop - answer.start
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    try:
        for chunk in answer.chunks():
            await response.write(chunk)
    except ConnectionError:
        pass  # the client went away; aiohttp then drops the connection quietly
    return response
