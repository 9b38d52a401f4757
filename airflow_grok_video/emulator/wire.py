r"""What the emulator puts on the wire: its paths, the JSON envelope, dropped connections, video bytes.

A video task's file (:class:`VideoFile`) is, by default, MP4-looking bytes of ``video_bytes`` that no
player decodes: an ``ftyp`` box, a ``free`` box naming the task, then a repeating pattern. With the
emulator's ``playable`` setting it is instead ``sample.mp4`` (next to this module) followed by a
``free`` box naming the task: a real H.264 video that browsers play, still each task's own bytes.

``sample.mp4`` (56,139 bytes; 6.00 s, 72 frames at 12 fps, 320x180, H.264 Constrained Baseline,
yuv420p, no audio, ``moov`` before ``mdat``) was made by the ffmpeg bundled with imageio-ffmpeg 0.8.1
(ffmpeg n9.0.2, libx264 core 165; ``FFMPEG`` is ``imageio_ffmpeg.get_ffmpeg_exe()``), installed in a
scratch virtualenv, not a dependency of this package; another ffmpeg or x264 makes other bytes::

    $FFMPEG -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=320x180:rate=12:duration=6 \
        -c:v libx264 -profile:v baseline -preset veryslow -crf 32 -pix_fmt yuv420p -g 24 -threads 1 \
        -an -map_metadata -1 -fflags +bitexact -flags:v +bitexact -movflags +faststart sample.mp4
"""

from __future__ import annotations

import contextlib
import functools
import http
import json
import re
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

CREATE_PATH = "/api/open-api/v1/grok/videos"
QUERY_PREFIX = "/api/open-api/v1/videos/"
VIDEO_PREFIX = "/videos/"
CONTROL_PREFIX = "/_emulator/"
DEFAULT_VIDEO_BYTES = 64 * 1024
RESET_PREFIX = b"HTTP/1.1 200 O"  # a status line cut short: no valid HTTP response

SAMPLE_CLIP = Path(__file__).with_name("sample.mp4")  # a playable video's first part (see above)

_CHUNK = 256 * 1024  # a multiple of 256: every full chunk of the pattern starts at its 0
_FTYP = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
_PATTERN = bytes(range(256)) * (_CHUNK // 256)
_RANGE = re.compile(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", re.IGNORECASE)
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


@functools.cache
def sample_clip() -> bytes:
    """The bytes of ``sample.mp4``, the playable clip (read once)."""
    return SAMPLE_CLIP.read_bytes()


def free_box(task_id: str) -> bytes:
    """
    An MP4 ``free`` box (which players skip) holding a task id: what makes each task's video its own.

    :param task_id: the video task it names (``""``: a box naming no task).
    """
    name = task_id.encode()
    return struct.pack(">I", 8 + len(name)) + b"free" + name


@dataclass(frozen=True, slots=True)
class VideoFile:
    """
    The bytes of one video task's file: the one place that says what ``/videos/<task_id>.mp4`` holds.

    The same task always gets the same bytes; two tasks' files differ (a ``free`` box names the task).

    :param task_id: the video task.
    :param video_bytes: the file's size when not ``playable``.
    :param playable: the file is :func:`sample_clip` followed by a ``free`` box naming the task, a
        real MP4 whose size is its own (``video_bytes`` does not apply); otherwise it is
        ``video_bytes`` of MP4-looking bytes: ``ftyp`` and ``free`` boxes, then a repeating pattern.
    """

    task_id: str
    video_bytes: int
    playable: bool = False

    @property
    def size(self) -> int:
        """The file's size in bytes."""
        if self.playable:
            return len(sample_clip()) + len(free_box(self.task_id))
        return self.video_bytes

    def chunks(self, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        """
        The file's bytes from ``start`` up to ``stop``, in chunks (never the whole of a large file).

        :param start: the first byte's offset.
        :param stop: the offset after the last byte (the file's end when ``None`` or past it).
        """
        head = self._head()
        size = self.size
        stop = size if stop is None else min(stop, size)
        for offset in range(start, min(stop, len(head)), _CHUNK):
            yield head[offset : min(offset + _CHUNK, stop)]
        # What follows the head (never in a playable file) is the pattern, counted from its end.
        offset = max(start, len(head)) - len(head)
        left = stop - len(head) - offset
        if left > 0 and offset % 256:
            first = min(256 - offset % 256, left)
            yield _PATTERN[offset % 256 : offset % 256 + first]
            left -= first
        while left > 0:
            piece = _PATTERN[: min(_CHUNK, left)]  # the whole pattern itself, not a copy, when full
            left -= len(piece)
            yield piece

    def _head(self) -> bytes:
        """The bytes the file starts with; only the pattern follows them."""
        if self.playable:
            return sample_clip() + free_box(self.task_id)
        return (_FTYP + free_box(self.task_id))[: self.video_bytes]


class RangeNotSatisfiable(ValueError):
    """A ``Range`` header that no byte of the file satisfies (HTTP 416)."""


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """
    The bytes ``(start, stop)`` that a ``Range`` header asks of a file, as a CDN answers it.

    One range is served (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``, its end cut to the file's);
    anything else (several ranges, another unit, a malformed header) is ignored, as HTTP allows: the
    answer is then the whole file.

    :param header: the ``Range`` header's value.
    :param size: the file's size.
    :raises RangeNotSatisfiable: the range starts past the file's end, or is an empty suffix.
    """
    match = _RANGE.fullmatch(header)
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.groups()
    if first == "":  # the last n bytes
        if int(last) == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return max(0, size - int(last)), size
    if last != "" and int(last) < int(first):
        return None  # not a valid range: ignored
    if int(first) >= size:
        raise RangeNotSatisfiable(header)
    return int(first), size if last == "" else min(int(last) + 1, size)


@dataclass(frozen=True, slots=True)
class VideoAnswer:
    """
    The answer to one download of a video: its status, its headers and the file's bytes it carries.

    :param video: the file.
    :param status: 200 (the whole file), 206 (a range of it) or 416 (no byte of it).
    :param start: the offset of the first byte sent.
    :param stop: the offset after the last byte sent.
    """

    video: VideoFile
    status: int
    start: int
    stop: int

    @classmethod
    def asked(cls, video: VideoFile, range_header: str | None) -> VideoAnswer:
        """
        The answer to a download of ``video`` with that ``Range`` header.

        :param video: the file.
        :param range_header: the request's ``Range`` header (``None``: the whole file is asked for).
        """
        size = video.size
        try:
            wanted = None if range_header is None else byte_range(range_header, size)
        except RangeNotSatisfiable:
            return cls(video, 416, 0, 0)
        if wanted is None:
            return cls(video, 200, 0, size)
        return cls(video, 206, *wanted)

    @property
    def headers(self) -> dict[str, str]:
        """The answer's headers, but for ``Content-Length`` (``stop - start``)."""
        if self.status == 416:
            return {"Content-Range": f"bytes */{self.video.size}"}
        headers = {"Content-Type": "video/mp4", "Accept-Ranges": "bytes"}
        if self.status == 206:
            headers["Content-Range"] = f"bytes {self.start}-{self.stop - 1}/{self.video.size}"
        return headers

    def chunks(self) -> Iterator[bytes]:
        """The body's bytes, in chunks."""
        return self.video.chunks(self.start, self.stop)

    def prefix(self) -> bytes:
        """The answer's head and the first part (at most half) of its body: what a reset lets through."""
        lines = [f"HTTP/1.1 {self.status} {http.HTTPStatus(self.status).phrase}"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        lines.append(f"Content-Length: {self.stop - self.start}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        length = min((self.stop - self.start) // 2, _RESET_VIDEO_BYTES)
        return head + b"".join(self.video.chunks(self.start, self.start + length))
