"""The emulator's HTTP server: its lifecycle, its settings, and the record of tasks and requests.

The routes are in :mod:`.routes`, the API's answers in :mod:`.api` and the control endpoints in
:mod:`.control`; they read and write the record kept here, under its lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from airflow_grok_video.emulator.faults import Fault, PendingFault
from airflow_grok_video.emulator.progress import ProgressModel
from airflow_grok_video.emulator.routes import application
from airflow_grok_video.emulator.tasks import EmulatedVideo, Rule
from airflow_grok_video.emulator.validation import CreateParams
from airflow_grok_video.emulator.wire import CREATE_PATH, DEFAULT_VIDEO_BYTES, QUERY_PREFIX, VideoFile

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
    :param video_bytes: size of the video served at ``result.video_url`` (each video task's bytes
        are its own: two videos of one size differ); not used when ``playable``.
    :param playable: serve each video as a real MP4 that players play: the bundled clip (H.264,
        6 seconds, about 55 KB; see :mod:`~airflow_grok_video.emulator.wire`) followed by a ``free``
        box naming the task, so that each video task's bytes are still its own.
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
        playable: bool = False,
        progress_model: ProgressModel | str | dict[str, Any] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.api_keys = None if api_keys is None else frozenset(api_keys)
        self.queue_seconds = queue_seconds
        self.generation_seconds = generation_seconds
        self.balance = balance
        self.video_bytes = video_bytes
        self.playable = playable
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
            application(self), access_log=None, handle_signals=False, shutdown_timeout=_SHUTDOWN_SECONDS
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
            ``balance`` (an integer >= 0, or ``None`` for unlimited), ``progress_model`` (a
            :class:`~airflow_grok_video.emulator.progress.ProgressModel`, its spec string or a dict
            of its fields) and ``playable`` (a boolean; it applies to every download from then on,
            of earlier tasks' videos too).
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

    def _video(self, task_id: str) -> VideoFile:
        """
        The file served for a video task, as the settings make it now.

        :param task_id: the video task.
        """
        return VideoFile(task_id, self.video_bytes, self.playable)

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
    elif key == "playable":
        if not isinstance(value, bool):
            raise ValueError("playable: must be true or false")
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
