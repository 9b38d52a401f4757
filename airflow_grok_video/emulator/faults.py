"""Faults the emulator serves on request: what each one is, and the answers that stand for them."""

from __future__ import annotations

import http
import math
from dataclasses import dataclass
from typing import Literal, get_args

from aiohttp import web

from airflow_grok_video.emulator.wire import envelope

FaultKind = Literal["status", "html", "reset", "slow", "envelope", "redirect"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)


@dataclass
class Fault:
    """
    A fault served instead of (or on top of) the normal answer to the next matching requests.

    :param kind: ``status`` (HTTP ``status`` with an envelope whose code is ``str(status * 100)``),
        ``html`` (a 200 HTML page), ``reset`` (the connection is dropped mid-answer), ``slow``
        (answer normally after ``delay`` seconds), ``envelope`` (HTTP 200 with ``code`` and ``msg``),
        ``redirect`` (HTTP ``status``, a 3xx, with a ``Location`` header and no envelope).
    :param times: how many matching requests it applies to.
    :param method: only requests with this method match (any when ``None``).
    :param path_prefix: only paths starting with this match (any when ``None``).
    :param status: the HTTP status of a ``status`` fault (500 when ``None``) or of a ``redirect``
        fault (302 when ``None``; it must be a 3xx).
    :param retry_after: a ``Retry-After`` header for ``status`` faults: seconds (rounded up), or a
        string sent as is.
    :param delay: seconds a ``slow`` fault waits.
    :param code: the envelope code of an ``envelope`` fault (or overrides a ``status`` fault's).
    :param msg: the envelope msg of an ``envelope`` fault (or overrides a ``status`` fault's).
    :param after_accept: on a create, the task is accepted (and billed) first, then the fault is served.
    :param location: the ``Location`` header of a ``redirect`` fault (required for it), sent as is:
        an absolute URL or a path the client resolves against the request's URL.
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
    location: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"kind: must be one of {', '.join(FAULT_KINDS)}")
        if self.times < 1:
            raise ValueError("times: must be at least 1")
        if self.kind == "redirect":
            if not self.location:
                raise ValueError("location: a redirect fault needs one")
            if self.status is not None and not 300 <= self.status <= 399:
                raise ValueError("status: a redirect fault's status must be a 3xx")

    def matches(self, method: str, path: str) -> bool:
        """
        Whether this fault applies to a request.

        :param method: the request's method.
        :param path: the request's path.
        """
        return (self.method is None or self.method.upper() == method) and (
            self.path_prefix is None or path.startswith(self.path_prefix)
        )


@dataclass
class PendingFault:
    """
    An injected fault waiting in the emulator's queue.

    :param fault: the fault.
    :param left: how many more matching requests it applies to.
    """

    fault: Fault
    left: int


def fault_answer(fault: Fault) -> web.Response:
    """
    The answer that stands for a ``status``, ``html``, ``envelope`` or ``redirect`` fault.

    :param fault: the fault (a ``reset`` or ``slow`` one is no answer of its own: ``ValueError``).
    """
    if fault.kind == "status":
        return _status_answer(fault)
    if fault.kind == "html":
        page = "<html><head><title>502 Bad Gateway</title></head><body>Bad gateway</body></html>"
        return web.Response(status=200, text=page, content_type="text/html")
    if fault.kind == "envelope":
        return envelope(None, code=fault.code or "50000", msg=fault.msg or "emulated error")
    if fault.kind == "redirect":
        return _redirect_answer(fault)
    raise ValueError(f"not an answer fault: {fault.kind}")


def _status_answer(fault: Fault) -> web.Response:
    status = fault.status or 500
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "emulated error"
    response = envelope(None, code=fault.code or str(status * 100), msg=fault.msg or phrase, status=status)
    if isinstance(fault.retry_after, str):
        response.headers["Retry-After"] = fault.retry_after
    elif fault.retry_after is not None:
        response.headers["Retry-After"] = str(math.ceil(fault.retry_after))
    return response


def _redirect_answer(fault: Fault) -> web.Response:
    status = fault.status or 302
    response = web.Response(status=status, text=f"redirected to {fault.location}\n")
    response.headers["Location"] = str(fault.location)
    return response
