"""The emulator's HTTP server: its lifecycle, the API's routes, the request record and the control endpoints.

Handlers are cheap and never block: a task's status is computed from the clock on each query
(no background work), and the only sleeps are those of injected ``slow`` faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

from aiohttp import web

from airflow_grok_video.emulator.faults import Fault, PendingFault, fault_answer
from airflow_grok_video.emulator.progress import ProgressModel
from airflow_grok_video.emulator.tasks import EmulatedVideo, Rule
from airflow_grok_video.emulator.validation import CreateParams, InvalidCreate, parse_create
from airflow_grok_video.emulator.wire import (
    CONTROL_PREFIX,
    CREATE_PATH,
    DEFAULT_VIDEO_BYTES,
    QUERY_PREFIX,
    RESET_PREFIX,
    VIDEO_PREFIX,
    abort,
    envelope,
    not_found,
    read_json,
    unauthorized,
    video_chunks,
    video_prefix,
)

# How long stop() lets in-flight requests (a slow fault, a big download) finish before cancelling them.
_SHUTDOWN_SECONDS = 0.5


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
    :param progress_model: how tasks' status and progress follow the clock (a
        :class:`~airflow_grok_video.emulator.progress.ProgressModel` or its spec, e.g.
        ``"shape=ease-out,queue=0.2,origin=created"``); the default queues for ``queue_seconds``, then
        progresses linearly from the processing start. A rule's model takes precedence.
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
        progress_model: ProgressModel | str | dict[str, Any] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.api_keys = None if api_keys is None else frozenset(api_keys)
        self.queue_seconds = queue_seconds
        self.generation_seconds = generation_seconds
        self.balance = balance
        self.video_bytes = video_bytes
        self.progress_model = (
            ProgressModel() if progress_model is None else ProgressModel.parse(progress_model)
        )
        self._requests: list[RecordedRequest] = []
        self._tasks: dict[str, EmulatedVideo] = {}
        self._rules: list[Rule] = []
        self._faults: list[PendingFault] = []
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
    def tasks(self) -> dict[str, EmulatedVideo]:
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
            self._faults.append(PendingFault(replace(fault), fault.times))

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

        :param settings: any of ``queue_seconds``, ``generation_seconds`` (numbers >= 0),
            ``balance`` (an integer >= 0, or ``None`` for unlimited) and ``progress_model`` (a
            :class:`~airflow_grok_video.emulator.progress.ProgressModel`, its spec string or a dict
            of its fields).
        """
        checked = {key: _check_setting(key, value) for key, value in settings.items()}
        with self._lock:
            for key, value in checked.items():
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

    def _accept(self, params: CreateParams) -> EmulatedVideo | None:
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
            progress_model = self.progress_model
            if rule is not None and rule.progress_model is not None:
                progress_model = rule.progress_model
            task = EmulatedVideo(
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
                progress_model=progress_model,
            )
            self._tasks[task.task_id] = task
        return task

    # -- the API --------------------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.StreamResponse:
        body = read_json(await request.read())
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
            return unauthorized()
        try:
            params = parse_create(body)
        except InvalidCreate as exc:
            return envelope(None, code="40000", msg=str(exc), status=400)
        task = self._accept(params)
        if task is None:
            return envelope(None, code="40200", msg="insufficient balance")
        data = {
            "task_id": task.task_id,
            "status": "queued",
            "model": task.model,
            "created_at": int(task.created),
        }
        return envelope(data)

    async def _query(self, request: web.Request) -> web.StreamResponse:
        auth_ok = self._authorized(request)
        fault = self._take_fault(request.method, request.path)
        if fault is not None and fault.kind != "slow":
            return self._serve_fault(request, fault, None, auth_ok)
        return await self._answer(request, None, self._query_answer(request, auth_ok), auth_ok, fault)

    def _query_answer(self, request: web.Request, auth_ok: bool) -> web.Response:
        if not auth_ok:
            return unauthorized()
        task = self._tasks.get(request.match_info["task_id"])
        if task is None:
            return not_found()
        return envelope(task.view(self.base_url, time.time()))

    async def _answer(
        self, request: web.Request, body: Any, response: web.Response, auth_ok: bool, slow: Fault | None
    ) -> web.Response:
        """Record the request on arrival, then answer (after the delay of a ``slow`` fault)."""
        self._record(request, body, response.status, auth_ok)
        if slow is not None:
            await asyncio.sleep(slow.delay)
        return response

    def _serve_fault(
        self, request: web.Request, fault: Fault, body: Any, auth_ok: bool, prefix: bytes = RESET_PREFIX
    ) -> web.Response:
        """Answer with a fault; a ``reset`` sends ``prefix`` and drops the connection."""
        if fault.kind == "reset":
            self._record(request, body, 0, auth_ok)
            abort(request, prefix)
            return web.Response()  # aiohttp finds the transport closed and drops it quietly
        response = fault_answer(fault)
        self._record(request, body, response.status, auth_ok)
        return response

    async def _video(self, request: web.Request) -> web.StreamResponse:
        fault = self._take_fault(request.method, request.path)
        task = self._tasks.get(request.match_info["task_id"])
        ready = task is not None and task.ready(time.time())
        if fault is not None and fault.kind != "slow":
            prefix = RESET_PREFIX
            if task is not None and ready:
                prefix = video_prefix(self.video_bytes, task.task_id)
            return self._serve_fault(request, fault, None, True, prefix)
        self._record(request, None, 200 if ready else 404, True)
        if fault is not None:
            await asyncio.sleep(fault.delay)
        if not ready:
            return web.Response(status=404, text="not found")
        return await self._stream_video(request, self.video_bytes, request.match_info["task_id"])

    async def _stream_video(self, request: web.Request, size: int, task_id: str) -> web.StreamResponse:
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

    async def _unknown(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith(CONTROL_PREFIX):
            return web.json_response({"error": "no such control endpoint"}, status=404)
        known = request.path == CREATE_PATH or request.path.startswith(QUERY_PREFIX)
        if known:
            response = envelope(None, code="40500", msg="method not allowed", status=405)
        else:
            response = not_found("no such endpoint")
        self._record(request, read_json(await request.read()), response.status, self._authorized(request))
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
    fields = read_json(await request.read())
    if not isinstance(fields, dict):
        return web.json_response({"error": "the body must be a JSON object"}, status=400)
    try:
        apply(fields)
    except (TypeError, ValueError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response({"ok": True})


def _check_setting(key: str, value: Any) -> Any:
    """The setting's value as the emulator keeps it; ``ValueError`` when it is not acceptable."""
    if key in ("queue_seconds", "generation_seconds"):
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"{key}: must be a number >= 0")
    elif key == "balance":
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError("balance: must be an integer >= 0 or null")
    elif key == "progress_model":
        return ProgressModel.parse(value)
    else:
        raise ValueError(f"unknown setting {key}")
    return value


def _cancel_remaining(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())


# Fault, Rule and EmulatedVideo live in faults.py and tasks.py; named here too for older imports.
__all__ = ["EmulatedVideo", "Fault", "GrokVideoEmulator", "RecordedRequest", "Rule"]
