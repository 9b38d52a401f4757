"""A local emulator of Jimmy AI's Grok video API, with switchable faults and a request record.

Only aiohttp and the standard library: production code never imports this module, and this
module imports nothing else of the provider.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from aiohttp import web

CREATE_PATH = "/api/open-api/v1/grok/videos"
QUERY_PREFIX = "/api/open-api/v1/videos/"
MODEL = "grok-imagine-video-1.5"
MODEL_ALIASES = {MODEL: MODEL, "grok-1.5": MODEL, "grok_1_5": MODEL}
RATIOS = ("16:9", "9:16", "1:1", "3:2", "2:3")
ORIENTATIONS = {"landscape": "16:9", "portrait": "9:16"}
FaultKind = Literal["status", "html", "reset", "slow", "envelope"]


@dataclass(frozen=True)
class Rule:
    """
    Per-task behaviour, chosen by the create request's prompt (the first matching rule wins).

    :param prompt_contains: the rule applies when the prompt contains this text.
    :param outcome: how the task ends: ``completed`` or ``failed``.
    :param error_message: the ``error_message`` of a failed task.
    :param generation_seconds: this task's generation time, instead of the emulator's.
    :param status_spelling: the status reported once done (``completed``, or the FAQ's ``success``).
    :param times: how many creates it applies to (every one when ``None``).
    :param processing_status: the status reported while generating (e.g. an undocumented ``rendering``).
    """

    prompt_contains: str
    outcome: Literal["completed", "failed"] = "completed"
    error_message: str = "generation failed"
    generation_seconds: float | None = None
    status_spelling: str = "completed"
    times: int | None = None
    processing_status: str = "processing"


@dataclass
class Fault:
    """
    A fault served instead of (or on top of) the normal answer to the next matching requests.

    :param kind: ``status`` (HTTP ``status`` with an envelope), ``html`` (a 200 HTML page),
        ``reset`` (the connection is dropped mid-answer), ``slow`` (answer after ``delay``
        seconds), ``envelope`` (HTTP 200 with ``code`` and ``msg``).
    :param times: how many matching requests it applies to.
    :param method: only requests with this method match (any when ``None``).
    :param path_prefix: only paths starting with this match (any when ``None``).
    :param status: the HTTP status of a ``status`` fault.
    :param retry_after: a ``Retry-After`` header value in seconds, for ``status`` faults.
    :param delay: seconds a ``slow`` fault waits.
    :param code: the envelope code of an ``envelope`` fault.
    :param msg: the envelope msg of an ``envelope`` fault.
    :param after_accept: on a create, the task is accepted (and billed) first, then the fault is served.
    """

    kind: FaultKind
    times: int = 1
    method: str | None = None
    path_prefix: str | None = None
    status: int | None = None
    retry_after: float | None = None
    delay: float = 0.0
    code: str | None = None
    msg: str | None = None
    after_accept: bool = False

    def matches(self, method: str, path: str) -> bool:
        """Whether this fault applies to a request.

        :param method: the request's method.
        :param path: the request's path.
        """
        return (self.method is None or self.method.upper() == method) and (
            self.path_prefix is None or path.startswith(self.path_prefix)
        )


@dataclass(frozen=True)
class RecordedRequest:
    """
    One request the emulator received (the API key itself is never kept).

    :param method: HTTP method.
    :param path: the path.
    :param json: the parsed JSON body, or ``None``.
    :param status: the HTTP status sent back, 0 when the connection was dropped.
    :param auth_ok: whether the Bearer key was accepted.
    :param time: Unix time of arrival.
    :param user_agent: the client's ``User-Agent``.
    """

    method: str
    path: str
    json: Any
    status: int
    auth_ok: bool
    time: float
    user_agent: str = ""


@dataclass
class _Task:
    task_id: str
    model: str
    prompt: str
    image_url: str
    duration: int
    ratio: str
    created: float
    queue_seconds: float
    generation_seconds: float
    rule: Rule | None = None

    def view(self, base_url: str, now: float) -> dict[str, Any]:
        elapsed = now - self.created
        done_at = self.queue_seconds + self.generation_seconds
        data: dict[str, Any] = {
            "task_id": self.task_id,
            "status": "queued",
            "progress": 0,
            "model": self.model,
            "created_at": int(self.created),
            "completed_at": None,
            "result": None,
            "error_message": None,
        }
        if elapsed >= done_at:
            data["completed_at"] = int(self.created + done_at)
            if self.rule is not None and self.rule.outcome == "failed":
                data.update(status="failed", error_message=self.rule.error_message)
            else:
                spelling = self.rule.status_spelling if self.rule else "completed"
                video_url = f"{base_url}/videos/{self.task_id}.mp4"
                data.update(
                    status=spelling,
                    progress=100,
                    result={"video_url": video_url, "image_url": self.image_url},
                )
        elif elapsed >= self.queue_seconds:
            fraction = (elapsed - self.queue_seconds) / max(self.generation_seconds, 1e-9)
            status = self.rule.processing_status if self.rule else "processing"
            data.update(status=status, progress=min(99, max(1, int(fraction * 100))))
        return data

    def status(self, now: float) -> str:
        return str(self.view("", now)["status"])


def _envelope(data: Any = None, code: str = "20000", msg: str = "ok", status: int = 200) -> web.Response:
    body = json.dumps({"code": code, "msg": msg, "data": data})
    return web.Response(status=status, body=body.encode(), content_type="application/json")


class _Invalid(Exception):
    pass


class GrokVideoEmulator:
    """
    The API on 127.0.0.1, run in a background thread; a context manager.

    :param host: address to bind.
    :param port: port to bind; 0 picks a free one.
    :param api_keys: the keys accepted; ``None`` accepts any key starting with ``sk_``.
    :param queue_seconds: how long a new task stays ``queued``.
    :param generation_seconds: how long a task stays ``processing``.
    :param balance: videos that can still be bought; ``None`` is unlimited.
    :param video_bytes: size of the video served at ``result.video_url``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_keys: Iterable[str] | None = None,
        queue_seconds: float = 1.0,
        generation_seconds: float = 5.0,
        balance: int | None = None,
        video_bytes: int = 64 * 1024,
    ) -> None:
        self.host = host
        self.port = port
        self.api_keys = None if api_keys is None else frozenset(api_keys)
        self.queue_seconds = queue_seconds
        self.generation_seconds = generation_seconds
        self.balance = balance
        self.video_bytes = video_bytes
        self.requests: list[RecordedRequest] = []
        self.tasks: dict[str, _Task] = {}
        self._rules: list[Rule] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The emulator's base URL, e.g. ``http://127.0.0.1:8089``."""
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> GrokVideoEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Bind and serve in a daemon thread; returns once the port is open."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.open())
            except BaseException as exc:  # reported to the caller of start()
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.close())
            loop.close()

        self._thread = threading.Thread(target=serve, name="grok-video-emulator", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop = None
        self._thread = None

    async def open(self) -> None:
        """Bind and serve on the running event loop (the CLI's way; ``start()`` uses a thread)."""
        app = web.Application()
        app.router.add_post(CREATE_PATH, self._create)
        app.router.add_get(QUERY_PREFIX + "{task_id}", self._query)
        app.router.add_get("/videos/{task_id}.mp4", self._video)
        app.router.add_get("/_emulator/requests", self._control_requests)
        app.router.add_get("/_emulator/stats", self._control_stats)
        app.router.add_post("/_emulator/reset", self._control_reset)
        app.router.add_post("/_emulator/rules", self._control_rules)
        app.router.add_post("/_emulator/faults", self._control_faults)
        app.router.add_post("/_emulator/config", self._control_config)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=4096)
        await site.start()
        server = getattr(site, "_server", None)
        if self.port == 0 and server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop serving on the running event loop."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- control from tests -------------------------------------------------------------

    def add_rule(self, rule: Rule) -> None:
        """Add a per-task rule matched by prompt.

        :param rule: the rule.
        """
        with self._lock:
            self._rules.append(rule)

    def clear_rules(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._rules.clear()

    def inject(self, fault: Fault) -> None:
        """Queue a fault for the next matching requests (FIFO).

        :param fault: the fault.
        """
        with self._lock:
            self._faults.append(fault)

    def reset(self) -> None:
        """Forget tasks, requests, rules and faults."""
        with self._lock:
            self.tasks.clear()
            self.requests.clear()
            self._rules.clear()
            self._faults.clear()

    def count(self, method: str | None = None, path_prefix: str | None = None) -> int:
        """Count recorded requests by method and path prefix.

        :param method: only this method (any when ``None``).
        :param path_prefix: only paths starting with this (any when ``None``).
        """
        with self._lock:
            return sum(
                1
                for r in self.requests
                if (method is None or r.method == method.upper())
                and (path_prefix is None or r.path.startswith(path_prefix))
            )

    @property
    def creates(self) -> int:
        """Create requests received, whatever their outcome."""
        return self.count("POST", CREATE_PATH)

    @property
    def accepted_creates(self) -> int:
        """Tasks created (each one billed)."""
        with self._lock:
            return len(self.tasks)

    def stats(self) -> dict[str, Any]:
        """Counts and task statuses, as ``/_emulator/stats`` serves them."""
        now = time.time()
        with self._lock:
            tasks = {task_id: task.status(now) for task_id, task in self.tasks.items()}
        return {
            "creates": self.creates,
            "accepted_creates": len(tasks),
            "queries": self.count("GET", QUERY_PREFIX),
            "tasks": tasks,
        }

    # -- the API --------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return False
        key = header[len("Bearer ") :].strip()
        return key in self.api_keys if self.api_keys is not None else key.startswith("sk_")

    def _record(self, request: web.Request, body: Any, status: int, auth_ok: bool) -> None:
        user_agent = request.headers.get("User-Agent", "")
        entry = RecordedRequest(request.method, request.path, body, status, auth_ok, time.time(), user_agent)
        with self._lock:
            self.requests.append(entry)

    def _take_rule(self, prompt: str) -> Rule | None:
        with self._lock:
            for index, rule in enumerate(self._rules):
                if rule.prompt_contains in prompt:
                    if rule.times is not None:
                        left = replace(rule, times=rule.times - 1)
                        self._rules[index : index + 1] = [left] if left.times else []
                    return rule
        return None

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    async def _serve_fault(
        self, request: web.Request, fault: Fault, body: Any, auth_ok: bool
    ) -> web.StreamResponse:
        if fault.kind == "reset":
            self._record(request, body, 0, auth_ok)
            transport = request.transport
            if transport is not None:
                transport.write(b'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{"co')
                transport.abort()
            raise asyncio.CancelledError
        if fault.kind == "status":
            status = fault.status or 500
            response = _envelope(None, code=str(status * 100), msg=f"emulated HTTP {status}", status=status)
            if fault.retry_after is not None:
                response.headers["Retry-After"] = str(int(fault.retry_after))
        elif fault.kind == "html":
            response = web.Response(
                status=200, text="<html><body>Bad gateway</body></html>", content_type="text/html"
            )
        elif fault.kind == "envelope":
            response = _envelope(None, code=fault.code or "50000", msg=fault.msg or "emulated error")
        else:
            raise ValueError(f"not an answer fault: {fault.kind}")
        self._record(request, body, response.status, auth_ok)
        return response

    async def _create(self, request: web.Request) -> web.StreamResponse:
        try:
            body: Any = await request.json()
        except ValueError:
            body = None
        auth_ok = self._authorized(request)
        fault = self._take_fault("POST", request.path)
        if fault is not None and fault.kind != "slow" and not fault.after_accept:
            return await self._serve_fault(request, fault, body, auth_ok)
        response = self._create_answer(body, auth_ok)
        if fault is not None and fault.kind != "slow":
            return await self._serve_fault(request, fault, body, auth_ok)
        return await self._answer(request, body, response, auth_ok, fault)

    async def _answer(
        self, request: web.Request, body: Any, response: web.Response, auth_ok: bool, slow: Fault | None
    ) -> web.Response:
        """Record the request on arrival, then answer (after the delay of a ``slow`` fault)."""
        self._record(request, body, response.status, auth_ok)
        if slow is not None:
            await asyncio.sleep(slow.delay)
        return response

    def _create_answer(self, body: Any, auth_ok: bool) -> web.Response:
        if not auth_ok:
            return _envelope(None, code="40100", msg="invalid or missing API key", status=401)
        try:
            task = self._new_task(body)
        except _Invalid as exc:
            return _envelope(None, code="40000", msg=str(exc), status=400)
        with self._lock:
            if self.balance is not None and self.balance <= 0:
                return _envelope(None, code="40200", msg="insufficient balance")
            if self.balance is not None:
                self.balance -= 1
            self.tasks[task.task_id] = task
        return _envelope(
            {
                "task_id": task.task_id,
                "status": "queued",
                "model": task.model,
                "created_at": int(task.created),
            }
        )

    def _new_task(self, body: Any) -> _Task:
        if not isinstance(body, dict):
            raise _Invalid("body: must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or model not in MODEL_ALIASES:
            raise _Invalid(f"model: must be {MODEL} (or grok-1.5, grok_1_5)")
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise _Invalid("prompt: required, a non-empty string")
        images = body.get("image_urls") or body.get("images")
        if (
            not isinstance(images, list)
            or len(images) != 1
            or not isinstance(images[0], str)
            or not images[0]
        ):
            raise _Invalid("image_urls: exactly 1 reference image URL is required")
        duration = body.get("duration", 10)
        if isinstance(duration, bool) or duration not in (10, 15):
            raise _Invalid("duration: must be 10 or 15")
        ratio = body.get("ratio") or None
        orientation = body.get("orientation") or None
        if ratio is not None and ratio not in RATIOS:
            raise _Invalid(f"ratio: must be one of {', '.join(RATIOS)}")
        if ratio is None and orientation is not None and orientation not in ORIENTATIONS:
            raise _Invalid("orientation: must be landscape or portrait")
        rule = self._take_rule(prompt)
        generation = rule.generation_seconds if rule and rule.generation_seconds is not None else None
        return _Task(
            task_id=f"video_{uuid.uuid4().hex}",
            model=MODEL_ALIASES[model],
            prompt=prompt,
            image_url=images[0],
            duration=int(duration),
            ratio=ratio or ORIENTATIONS.get(orientation or "", "16:9"),
            created=time.time(),
            queue_seconds=self.queue_seconds,
            generation_seconds=self.generation_seconds if generation is None else generation,
            rule=rule,
        )

    async def _query(self, request: web.Request) -> web.StreamResponse:
        auth_ok = self._authorized(request)
        fault = self._take_fault("GET", request.path)
        if fault is not None and fault.kind != "slow":
            return await self._serve_fault(request, fault, None, auth_ok)
        if not auth_ok:
            response = _envelope(None, code="40100", msg="invalid or missing API key", status=401)
        else:
            task = self.tasks.get(request.match_info["task_id"])
            if task is None:
                response = _envelope(None, code="40400", msg="task not found", status=404)
            else:
                response = _envelope(task.view(self.base_url, time.time()))
        return await self._answer(request, None, response, auth_ok, fault)

    async def _video(self, request: web.Request) -> web.StreamResponse:
        fault = self._take_fault("GET", request.path)
        if fault is not None and fault.kind == "slow":
            await asyncio.sleep(fault.delay)
        elif fault is not None:
            return await self._serve_fault(request, fault, None, True)
        task = self.tasks.get(request.match_info["task_id"])
        if task is None or task.status(time.time()) not in ("completed", "success"):
            self._record(request, None, 404, True)
            return web.Response(status=404, text="not found")
        self._record(request, None, 200, True)
        response = web.StreamResponse(status=200, headers={"Content-Type": "video/mp4"})
        response.content_length = self.video_bytes
        await response.prepare(request)
        for chunk in _video_chunks(self.video_bytes):
            await response.write(chunk)
        await response.write_eof()
        return response

    # -- control over HTTP ------------------------------------------------------------------

    async def _control_requests(self, request: web.Request) -> web.Response:
        with self._lock:
            entries = [asdict(r) for r in self.requests]
        return web.json_response(entries)

    async def _control_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _control_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    async def _control_rules(self, request: web.Request) -> web.Response:
        self.add_rule(Rule(**await request.json()))
        return web.json_response({"ok": True})

    async def _control_faults(self, request: web.Request) -> web.Response:
        self.inject(Fault(**await request.json()))
        return web.json_response({"ok": True})

    async def _control_config(self, request: web.Request) -> web.Response:
        config = await request.json()
        allowed = {"queue_seconds", "generation_seconds", "balance"}
        for key, value in config.items():
            if key not in allowed:
                return web.json_response({"error": f"unknown setting {key}"}, status=400)
            setattr(self, key, value)
        return web.json_response({"ok": True})


_FTYP = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
_CHUNK = 256 * 1024


def _video_chunks(size: int) -> Iterable[bytes]:
    """Deterministic bytes of an MP4-looking file, in chunks (never the whole file in memory)."""
    pattern = (bytes(range(256)) * (_CHUNK // 256 + 1))[:_CHUNK]
    head = _FTYP[:size]
    yield head
    remaining = size - len(head)
    while remaining > 0:
        piece = pattern[: min(_CHUNK, remaining)]
        remaining -= len(piece)
        yield piece


__all__ = ["Fault", "GrokVideoEmulator", "RecordedRequest", "Rule"]
