"""A local emulator of Jimmy AI's Grok video API, with switchable faults and a request record.

Only aiohttp and the standard library: production code never imports this module, and this
module imports nothing else of the provider.

Handlers are cheap and never block: a task's status is computed from the clock on each query
(no background work), and the only sleeps are those of injected ``slow`` faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import itertools
import json
import math
import socket
import struct
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, get_args

from aiohttp import web

CREATE_PATH = "/api/open-api/v1/grok/videos"
QUERY_PREFIX = "/api/open-api/v1/videos/"
VIDEO_PREFIX = "/videos/"
CONTROL_PREFIX = "/_emulator/"
MODEL = "grok-imagine-video-1.5"
MODEL_ALIASES = {MODEL: MODEL, "grok-1.5": MODEL, "grok_1_5": MODEL}
DURATIONS = (10, 15)
RATIOS = ("16:9", "9:16", "1:1", "3:2", "2:3")
ORIENTATIONS = {"landscape": "16:9", "portrait": "9:16"}
DEFAULT_VIDEO_BYTES = 64 * 1024
FaultKind = Literal["status", "html", "reset", "slow", "envelope"]
Outcome = Literal["completed", "failed"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
OUTCOMES: tuple[str, ...] = get_args(Outcome)

# How long stop() lets in-flight requests (a slow fault, a big download) finish before cancelling them.
_SHUTDOWN_SECONDS = 0.5
_CHUNK = 256 * 1024
_FTYP = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
_PATTERN = (bytes(range(256)) * (_CHUNK // 256))[:_CHUNK]
_RESET_PREFIX = b"HTTP/1.1 200 O"  # a status line cut short: no valid HTTP response
_RESET_VIDEO_BYTES = 32 * 1024  # a reset download sends its head and at most this much (half) body


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
    :param url_query: a query string appended to ``result.video_url`` (e.g. a signature), ignored
        when the video is downloaded.
    """

    prompt_contains: str
    outcome: Outcome = "completed"
    error_message: str = "generation failed"
    generation_seconds: float | None = None
    status_spelling: str = "completed"
    times: int | None = None
    processing_status: str = "processing"
    url_query: str = ""

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome: must be one of {', '.join(OUTCOMES)}")
        if self.times is not None and self.times < 1:
            raise ValueError("times: must be at least 1 (or None for every create)")


@dataclass
class Fault:
    """
    A fault served instead of (or on top of) the normal answer to the next matching requests.

    :param kind: ``status`` (HTTP ``status`` with an envelope whose code is ``str(status * 100)``),
        ``html`` (a 200 HTML page), ``reset`` (the connection is dropped mid-answer), ``slow``
        (answer normally after ``delay`` seconds), ``envelope`` (HTTP 200 with ``code`` and ``msg``).
    :param times: how many matching requests it applies to.
    :param method: only requests with this method match (any when ``None``).
    :param path_prefix: only paths starting with this match (any when ``None``).
    :param status: the HTTP status of a ``status`` fault (500 when ``None``).
    :param retry_after: a ``Retry-After`` header for ``status`` faults: seconds (rounded up), or a
        string sent as is.
    :param delay: seconds a ``slow`` fault waits.
    :param code: the envelope code of an ``envelope`` fault (or overrides a ``status`` fault's).
    :param msg: the envelope msg of an ``envelope`` fault (or overrides a ``status`` fault's).
    :param after_accept: on a create, the task is accepted (and billed) first, then the fault is served.
    """

    kind: FaultKind
    times: int = 1
    method: str | None = None
    path_prefix: str | None = None
    status: int | None = None
    retry_after: float | str | None = None
    delay: float = 0.0
    code: str | None = None
    msg: str | None = None
    after_accept: bool = False

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"kind: must be one of {', '.join(FAULT_KINDS)}")
        if self.times < 1:
            raise ValueError("times: must be at least 1")

    def matches(self, method: str, path: str) -> bool:
        """
        Whether this fault applies to a request.

        :param method: the request's method.
        :param path: the request's path.
        """
        return (self.method is None or self.method.upper() == method) and (
            self.path_prefix is None or path.startswith(self.path_prefix)
        )


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """
    One request the emulator received (the API key itself is never kept).

    :param method: HTTP method.
    :param path: the path.
    :param json: the parsed JSON body, or ``None``.
    :param status: the HTTP status sent back, 0 when the connection was dropped.
    :param auth_ok: whether the Bearer key was accepted (always true for video downloads, which need none).
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
class VideoTask:
    """
    One accepted create: its status is computed from the clock whenever asked.

    :param task_id: the id returned by the create.
    :param model: the normalized model name.
    :param prompt: the prompt.
    :param image_url: the reference image.
    :param duration: 10 or 15 seconds.
    :param ratio: the aspect ratio (orientation already mapped).
    :param created: Unix time of acceptance.
    :param queue_seconds: how long it stays ``queued``.
    :param generation_seconds: how long it stays ``processing``.
    :param rule: the rule that chose its behaviour, if any.
    """

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

    @property
    def done_at(self) -> float:
        """Unix time at which the task completes or fails."""
        return self.created + self.queue_seconds + self.generation_seconds

    @property
    def fails(self) -> bool:
        """Whether the task ends ``failed``."""
        return self.rule is not None and self.rule.outcome == "failed"

    def ready(self, now: float) -> bool:
        """
        Whether the video can be downloaded.

        :param now: the current Unix time.
        """
        return now >= self.done_at and not self.fails

    def status(self, now: float) -> str:
        """
        The status a query would report.

        :param now: the current Unix time.
        """
        return str(self.view("", now)["status"])

    def view(self, base_url: str, now: float) -> dict[str, Any]:
        """
        The query answer's ``data``.

        :param base_url: the emulator's base URL, for ``result.video_url``.
        :param now: the current Unix time.
        """
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
        if now >= self.done_at:
            data.update(self._finished(base_url))
        elif now - self.created >= self.queue_seconds:
            data.update(
                status=self._spelling("processing_status", "processing"), progress=self._progress(now)
            )
        return data

    def _finished(self, base_url: str) -> dict[str, Any]:
        finished: dict[str, Any] = {"completed_at": int(self.done_at)}
        rule = self.rule
        if rule is not None and rule.outcome == "failed":
            return {**finished, "status": "failed", "error_message": rule.error_message}
        video_url = f"{base_url}{VIDEO_PREFIX}{self.task_id}.mp4"
        if rule is not None and rule.url_query:
            video_url += f"?{rule.url_query}"
        result = {"video_url": video_url, "image_url": self.image_url}
        return {
            **finished,
            "status": self._spelling("status_spelling", "completed"),
            "progress": 100,
            "result": result,
        }

    def _progress(self, now: float) -> int:
        fraction = (now - self.created - self.queue_seconds) / max(self.generation_seconds, 1e-9)
        return min(99, max(1, int(fraction * 100)))

    def _spelling(self, field: str, default: str) -> str:
        return default if self.rule is None else str(getattr(self.rule, field))


class _Invalid(Exception):
    """A create request breaks a documented rule; the text is ``<field>: <what is wrong>``."""


@dataclass(frozen=True)
class _Params:
    model: str
    prompt: str
    image_url: str
    duration: int
    ratio: str


def _parse_create(body: Any) -> _Params:
    if not isinstance(body, dict):
        raise _Invalid("body: must be a JSON object")
    return _Params(_model(body), _prompt(body), _image(body), _duration(body), _ratio(body))


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or model not in MODEL_ALIASES:
        raise _Invalid(f"model: must be {MODEL} (or grok-1.5, grok_1_5)")
    return MODEL_ALIASES[model]


def _prompt(body: dict[str, Any]) -> str:
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise _Invalid("prompt: required, a non-empty string")
    return prompt


def _image(body: dict[str, Any]) -> str:
    field, urls = "image_urls", body.get("image_urls")
    if urls in (None, []) and body.get("images") not in (None, []):
        field, urls = "images", body.get("images")
    if not isinstance(urls, list) or len(urls) != 1 or not isinstance(urls[0], str) or not urls[0].strip():
        raise _Invalid(f"{field}: exactly 1 reference image URL (a string) is required")
    return urls[0]


def _duration(body: dict[str, Any]) -> int:
    duration = body.get("duration")
    if duration is None:
        return DURATIONS[0]
    if isinstance(duration, bool) or not isinstance(duration, int) or duration not in DURATIONS:
        raise _Invalid("duration: must be the integer 10 or 15")
    return duration


def _ratio(body: dict[str, Any]) -> str:
    ratio = body.get("ratio")
    if ratio in (None, ""):
        return _orientation(body)
    if not isinstance(ratio, str) or ratio not in RATIOS:
        raise _Invalid(f"ratio: must be one of {', '.join(RATIOS)}")
    return ratio


def _orientation(body: dict[str, Any]) -> str:
    orientation = body.get("orientation")
    if orientation in (None, ""):
        return RATIOS[0]
    if not isinstance(orientation, str) or orientation not in ORIENTATIONS:
        raise _Invalid("orientation: must be landscape or portrait")
    return ORIENTATIONS[orientation]


def _envelope(data: Any = None, code: str = "20000", msg: str = "ok", status: int = 200) -> web.Response:
    body = json.dumps({"code": code, "msg": msg, "data": data}).encode()
    return web.Response(status=status, body=body, content_type="application/json")


def _unauthorized() -> web.Response:
    return _envelope(None, code="40100", msg="invalid or missing API key", status=401)


def _not_found(msg: str = "task not found") -> web.Response:
    return _envelope(None, code="40400", msg=msg, status=404)


def _status_fault(fault: Fault) -> web.Response:
    status = fault.status or 500
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "emulated error"
    response = _envelope(None, code=fault.code or str(status * 100), msg=fault.msg or phrase, status=status)
    if isinstance(fault.retry_after, str):
        response.headers["Retry-After"] = fault.retry_after
    elif fault.retry_after is not None:
        response.headers["Retry-After"] = str(math.ceil(fault.retry_after))
    return response


def _answer_fault(fault: Fault) -> web.Response:
    if fault.kind == "status":
        return _status_fault(fault)
    if fault.kind == "html":
        page = "<html><head><title>502 Bad Gateway</title></head><body>Bad gateway</body></html>"
        return web.Response(status=200, text=page, content_type="text/html")
    if fault.kind == "envelope":
        return _envelope(None, code=fault.code or "50000", msg=fault.msg or "emulated error")
    raise ValueError(f"not an answer fault: {fault.kind}")


def _abort(request: web.Request, prefix: bytes) -> None:
    """Send ``prefix``, then reset the connection (RST, not an orderly close)."""
    transport = request.transport
    if transport is None:
        return
    transport.write(prefix)
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _video_prefix(size: int) -> bytes:
    """A download's head and the first part of its body: what a reset lets through."""
    head = f"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: {size}\r\n\r\n".encode()
    body = b"".join(itertools.islice(_video_chunks(size), 2))
    return head + body[: min(size // 2, _RESET_VIDEO_BYTES)]


def _video_chunks(size: int) -> Iterator[bytes]:
    """Deterministic bytes of an MP4-looking file, in chunks (never the whole file in memory)."""
    head = _FTYP[:size]
    yield head
    remaining = size - len(head)
    while remaining > 0:
        piece = _PATTERN[: min(_CHUNK, remaining)]
        remaining -= len(piece)
        yield piece


def _read_json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


@dataclass
class _Pending:
    fault: Fault
    left: int


class GrokVideoEmulator:
    """
    The API over HTTP, served in a background thread (``start()``/``stop()``, or a context manager).

    :param host: address to bind.
    :param port: port to bind; 0 picks a free one (``port`` holds the real one once started).
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
        video_bytes: int = DEFAULT_VIDEO_BYTES,
    ) -> None:
        self.host = host
        self.port = port
        self.api_keys = None if api_keys is None else frozenset(api_keys)
        self.queue_seconds = queue_seconds
        self.generation_seconds = generation_seconds
        self.balance = balance
        self.video_bytes = video_bytes
        self._requests: list[RecordedRequest] = []
        self._tasks: dict[str, VideoTask] = {}
        self._rules: list[Rule] = []
        self._faults: list[_Pending] = []
        self._creates = 0
        self._queries = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The emulator's base URL, e.g. ``http://127.0.0.1:8089``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def __enter__(self) -> GrokVideoEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Bind and serve on an event loop in a daemon thread; returns once the port is open."""
        if self._thread is not None:
            raise RuntimeError("the emulator is already running")
        ready = threading.Event()
        failure: list[BaseException] = []
        thread = threading.Thread(
            target=self._run_loop, args=(ready, failure), name="grok-video-emulator", daemon=True
        )
        thread.start()
        ready.wait()
        if failure:
            thread.join()
            raise failure[0]
        self._thread = thread

    def stop(self) -> None:
        """Stop serving (in-flight requests get about a second to finish) and join the thread."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None:
            with contextlib.suppress(RuntimeError):  # the loop may already be closed
                loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
        self._loop = None
        self._thread = None

    def _run_loop(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.open())
        except BaseException as exc:  # handed to the caller of start()
            failure.append(exc)
            loop.close()
            ready.set()
            return
        self._loop = loop
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self.close())
            _cancel_remaining(loop)
            loop.close()

    async def open(self) -> None:
        """Bind and serve on the running event loop (the CLI's way; ``start()`` uses a thread)."""
        runner = web.AppRunner(
            self._application(), access_log=None, handle_signals=False, shutdown_timeout=_SHUTDOWN_SECONDS
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port, backlog=4096).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        if self.port == 0 and runner.addresses:
            self.port = int(runner.addresses[0][1])

    async def close(self) -> None:
        """Stop serving on the running event loop."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    def _application(self) -> web.Application:
        app = web.Application()
        app.router.add_post(CREATE_PATH, self._create)
        app.router.add_get(QUERY_PREFIX + "{task_id}", self._query)
        app.router.add_get(VIDEO_PREFIX + "{task_id}.mp4", self._video)
        app.router.add_get(CONTROL_PREFIX + "requests", self._control_requests)
        app.router.add_get(CONTROL_PREFIX + "stats", self._control_stats)
        app.router.add_post(CONTROL_PREFIX + "reset", self._control_reset)
        app.router.add_post(CONTROL_PREFIX + "rules", self._control_rules)
        app.router.add_post(CONTROL_PREFIX + "faults", self._control_faults)
        app.router.add_post(CONTROL_PREFIX + "config", self._control_config)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        return app

    # -- control from tests ---------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, oldest first (a snapshot; control calls excluded)."""
        with self._lock:
            return list(self._requests)

    @property
    def tasks(self) -> dict[str, VideoTask]:
        """Every accepted task by id (a snapshot)."""
        with self._lock:
            return dict(self._tasks)

    def add_rule(self, rule: Rule) -> None:
        """
        Add a per-task rule matched by prompt (rules are tried in the order added).

        :param rule: the rule.
        """
        with self._lock:
            self._rules.append(rule)

    def clear_rules(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._rules.clear()

    def inject(self, fault: Fault) -> None:
        """
        Queue a fault for the next matching requests (faults apply in FIFO order).

        :param fault: the fault (not modified; the emulator counts its uses itself).
        """
        with self._lock:
            self._faults.append(_Pending(replace(fault), fault.times))

    def reset(self) -> None:
        """Forget tasks, requests, counts, rules and faults (the settings and balance stay)."""
        with self._lock:
            self._tasks.clear()
            self._requests.clear()
            self._rules.clear()
            self._faults.clear()
            self._creates = self._queries = 0

    def count(self, method: str | None = None, path_prefix: str | None = None) -> int:
        """
        Count recorded requests by method and path prefix.

        :param method: only this method (any when ``None``).
        :param path_prefix: only paths starting with this (any when ``None``).
        """
        wanted = None if method is None else method.upper()
        return sum(
            1
            for r in self.requests
            if (wanted is None or r.method == wanted)
            and (path_prefix is None or r.path.startswith(path_prefix))
        )

    @property
    def creates(self) -> int:
        """Create requests received, whatever their outcome."""
        return self._creates

    @property
    def accepted_creates(self) -> int:
        """Tasks created (each one billed)."""
        with self._lock:
            return len(self._tasks)

    def stats(self) -> dict[str, Any]:
        """Counts and task statuses, as ``/_emulator/stats`` serves them."""
        now = time.time()
        with self._lock:
            tasks = {task_id: task.status(now) for task_id, task in self._tasks.items()}
            creates, queries = self._creates, self._queries
        return {"creates": creates, "accepted_creates": len(tasks), "queries": queries, "tasks": tasks}

    def configure(self, settings: dict[str, Any]) -> None:
        """
        Change settings, as ``/_emulator/config`` does; new values apply to tasks created afterwards.

        :param settings: any of ``queue_seconds``, ``generation_seconds`` (numbers >= 0) and
            ``balance`` (an integer >= 0, or ``None`` for unlimited).
        """
        for key, value in settings.items():
            _check_setting(key, value)
        with self._lock:
            for key, value in settings.items():
                setattr(self, key, value)

    # -- bookkeeping ---------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return False
        return key in self.api_keys if self.api_keys is not None else key.startswith("sk_")

    def _record(self, request: web.Request, body: Any, status: int, auth_ok: bool) -> None:
        path = sys.intern(request.path)
        user_agent = sys.intern(request.headers.get("User-Agent", ""))
        entry = RecordedRequest(request.method, path, body, status, auth_ok, time.time(), user_agent)
        with self._lock:
            self._requests.append(entry)
            if request.method == "POST" and path == CREATE_PATH:
                self._creates += 1
            elif request.method == "GET" and path.startswith(QUERY_PREFIX):
                self._queries += 1

    def _take_rule(self, prompt: str) -> Rule | None:
        """The first rule matching ``prompt``, one of its ``times`` used; call with the lock held."""
        for index, rule in enumerate(self._rules):
            if rule.prompt_contains in prompt:
                if rule.times is not None:
                    left = rule.times - 1
                    self._rules[index : index + 1] = [replace(rule, times=left)] if left else []
                return rule
        return None

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for pending in self._faults:
                if pending.fault.matches(method, path):
                    pending.left -= 1
                    if pending.left <= 0:
                        self._faults.remove(pending)
                    return pending.fault
        return None

    def _accept(self, params: _Params) -> VideoTask | None:
        """Store and bill a task, or ``None`` when the balance is spent."""
        with self._lock:
            if self.balance is not None and self.balance <= 0:
                return None
            if self.balance is not None:
                self.balance -= 1
            rule = self._take_rule(params.prompt)
            generation = self.generation_seconds
            if rule is not None and rule.generation_seconds is not None:
                generation = rule.generation_seconds
            task = VideoTask(
                task_id=f"video_{uuid.uuid4().hex}",
                model=params.model,
                prompt=params.prompt,
                image_url=params.image_url,
                duration=params.duration,
                ratio=params.ratio,
                created=time.time(),
                queue_seconds=self.queue_seconds,
                generation_seconds=generation,
                rule=rule,
            )
            self._tasks[task.task_id] = task
        return task

    # -- the API --------------------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.StreamResponse:
        body = _read_json(await request.read())
        auth_ok = self._authorized(request)
        fault = self._take_fault(request.method, request.path)
        if fault is not None and fault.kind != "slow" and not fault.after_accept:
            return self._serve_fault(request, fault, body, auth_ok)
        response = self._create_answer(body, auth_ok)
        if fault is not None and fault.kind != "slow":
            return self._serve_fault(request, fault, body, auth_ok)
        return await self._answer(request, body, response, auth_ok, fault)

    def _create_answer(self, body: Any, auth_ok: bool) -> web.Response:
        if not auth_ok:
            return _unauthorized()
        try:
            params = _parse_create(body)
        except _Invalid as exc:
            return _envelope(None, code="40000", msg=str(exc), status=400)
        task = self._accept(params)
        if task is None:
            return _envelope(None, code="40200", msg="insufficient balance")
        data = {
            "task_id": task.task_id,
            "status": "queued",
            "model": task.model,
            "created_at": int(task.created),
        }
        return _envelope(data)

    async def _query(self, request: web.Request) -> web.StreamResponse:
        auth_ok = self._authorized(request)
        fault = self._take_fault(request.method, request.path)
        if fault is not None and fault.kind != "slow":
            return self._serve_fault(request, fault, None, auth_ok)
        return await self._answer(request, None, self._query_answer(request, auth_ok), auth_ok, fault)

    def _query_answer(self, request: web.Request, auth_ok: bool) -> web.Response:
        if not auth_ok:
            return _unauthorized()
        task = self._tasks.get(request.match_info["task_id"])
        if task is None:
            return _not_found()
        return _envelope(task.view(self.base_url, time.time()))

    async def _answer(
        self, request: web.Request, body: Any, response: web.Response, auth_ok: bool, slow: Fault | None
    ) -> web.Response:
        """Record the request on arrival, then answer (after the delay of a ``slow`` fault)."""
        self._record(request, body, response.status, auth_ok)
        if slow is not None:
            await asyncio.sleep(slow.delay)
        return response

    def _serve_fault(
        self, request: web.Request, fault: Fault, body: Any, auth_ok: bool, prefix: bytes = _RESET_PREFIX
    ) -> web.Response:
        """Answer with a fault; a ``reset`` sends ``prefix`` and drops the connection."""
        if fault.kind == "reset":
            self._record(request, body, 0, auth_ok)
            _abort(request, prefix)
            return web.Response()  # aiohttp finds the transport closed and drops it quietly
        response = _answer_fault(fault)
        self._record(request, body, response.status, auth_ok)
        return response

    async def _video(self, request: web.Request) -> web.StreamResponse:
        fault = self._take_fault(request.method, request.path)
        task = self._tasks.get(request.match_info["task_id"])
        ready = task is not None and task.ready(time.time())
        if fault is not None and fault.kind != "slow":
            prefix = _video_prefix(self.video_bytes) if ready else _RESET_PREFIX
            return self._serve_fault(request, fault, None, True, prefix)
        self._record(request, None, 200 if ready else 404, True)
        if fault is not None:
            await asyncio.sleep(fault.delay)
        if not ready:
            return web.Response(status=404, text="not found")
        return await self._stream_video(request, self.video_bytes)

    async def _stream_video(self, request: web.Request, size: int) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"Content-Type": "video/mp4"})
        response.content_length = size
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        try:
            for chunk in _video_chunks(size):
                await response.write(chunk)
        except ConnectionError:
            pass  # the client went away; aiohttp then drops the connection quietly
        return response

    async def _unknown(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith(CONTROL_PREFIX):
            return web.json_response({"error": "no such control endpoint"}, status=404)
        known = request.path == CREATE_PATH or request.path.startswith(QUERY_PREFIX)
        if known:
            response = _envelope(None, code="40500", msg="method not allowed", status=405)
        else:
            response = _not_found("no such endpoint")
        self._record(request, _read_json(await request.read()), response.status, self._authorized(request))
        return response

    # -- control over HTTP ----------------------------------------------------------------------

    async def _control_requests(self, request: web.Request) -> web.Response:
        return web.json_response([asdict(r) for r in self.requests])

    async def _control_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _control_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    async def _control_rules(self, request: web.Request) -> web.Response:
        return await _control_call(request, lambda fields: self.add_rule(Rule(**fields)))

    async def _control_faults(self, request: web.Request) -> web.Response:
        return await _control_call(request, lambda fields: self.inject(Fault(**fields)))

    async def _control_config(self, request: web.Request) -> web.Response:
        return await _control_call(request, self.configure)


async def _control_call(request: web.Request, apply: Callable[[dict[str, Any]], None]) -> web.Response:
    """Apply a control call's JSON object; 400 with the reason when it is not acceptable."""
    fields = _read_json(await request.read())
    if not isinstance(fields, dict):
        return web.json_response({"error": "the body must be a JSON object"}, status=400)
    try:
        apply(fields)
    except (TypeError, ValueError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response({"ok": True})


def _check_setting(key: str, value: Any) -> None:
    if key in ("queue_seconds", "generation_seconds"):
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"{key}: must be a number >= 0")
    elif key == "balance":
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError("balance: must be an integer >= 0 or null")
    else:
        raise ValueError(f"unknown setting {key}")


def _cancel_remaining(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())


__all__ = ["Fault", "GrokVideoEmulator", "RecordedRequest", "Rule", "VideoTask"]
