"""What the emulator puts on the wire: its paths, the JSON envelope, dropped connections, video bytes."""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import struct
from collections.abc import Iterator
from typing import Any

from aiohttp import web

CREATE_PATH = "/api/open-api/v1/grok/videos"
QUERY_PREFIX = "/api/open-api/v1/videos/"
VIDEO_PREFIX = "/videos/"
CONTROL_PREFIX = "/_emulator/"
DEFAULT_VIDEO_BYTES = 64 * 1024
RESET_PREFIX = b"HTTP/1.1 200 O"  # a status line cut short: no valid HTTP response

_CHUNK = 256 * 1024
_FTYP = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
_PATTERN = (bytes(range(256)) * (_CHUNK // 256))[:_CHUNK]
_RESET_VIDEO_BYTES = 32 * 1024  # a reset download sends its head and at most this much (half) body


def envelope(data: Any = None, code: str = "20000", msg: str = "ok", status: int = 200) -> web.Response:
    """
    An API answer: ``{"code", "msg", "data"}`` as JSON.

    :param data: the ``data``.
    :param code: the envelope's code (``20000`` is success).
    :param msg: the envelope's message.
    :param status: the HTTP status.
    """
    body = json.dumps({"code": code, "msg": msg, "data": data}).encode()
    return web.Response(status=status, body=body, content_type="application/json")


def unauthorized() -> web.Response:
    """The answer to a missing or refused API key."""
    return envelope(None, code="40100", msg="invalid or missing API key", status=401)


def not_found(msg: str = "task not found") -> web.Response:
    """
    The answer to an unknown task or endpoint.

    :param msg: the envelope's message.
    """
    return envelope(None, code="40400", msg=msg, status=404)


def read_json(raw: bytes) -> Any:
    """
    A request body parsed as JSON, or ``None`` when it is empty or not JSON.

    :param raw: the body.
    """
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def abort(request: web.Request, prefix: bytes) -> None:
    """
    Send ``prefix``, then reset the connection (RST, not an orderly close).

    :param request: the request whose connection is dropped.
    :param prefix: the bytes sent first.
    """
    transport = request.transport
    if transport is None:
        return
    transport.write(prefix)
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def video_prefix(size: int, task_id: str = "") -> bytes:
    """
    A download's head and the first part of its body: what a reset lets through.

    :param size: the whole video's size.
    :param task_id: the video task whose bytes these are (see :func:`video_chunks`).
    """
    head = f"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: {size}\r\n\r\n".encode()
    body = b"".join(itertools.islice(video_chunks(size, task_id), 2))
    return head + body[: min(size // 2, _RESET_VIDEO_BYTES)]


def video_chunks(size: int, task_id: str = "") -> Iterator[bytes]:
    """
    Deterministic bytes of an MP4-looking file, in chunks (never the whole file in memory).

    Two video tasks' videos of one size differ: a ``free`` box naming the task follows the
    ``ftyp`` box (the same task always gets the same bytes).

    :param size: the video's size.
    :param task_id: the video task the bytes are for (``""``: the bytes name no task).
    """
    name = task_id.encode()
    head = (_FTYP + struct.pack(">I", 8 + len(name)) + b"free" + name)[:size]
    yield head
    remaining = size - len(head)
    while remaining > 0:
        piece = _PATTERN[: min(_CHUNK, remaining)]
        remaining -= len(piece)
        yield piece
